/**
 * Just enough Markdown for the documentation checks: headings and their GitHub anchors, links,
 * tables and the fenced blocks of a marked example. No imports, so that `scripts/docs-tables.mjs`
 * can load it in Node as well as the tests in workerd.
 */

/** The lines of `markdown`, with the lines of fenced code blocks (fences included) blanked out. */
export function proseLines(markdown: string): string[] {
  let fence: string | null = null;
  return markdown.split("\n").map((line) => {
    const opener = /^\s*(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === null && opener) {
      fence = opener;
      return "";
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence) && line.trim().replace(/[`~]/g, "") === "") fence = null;
      return "";
    }
    return line;
  });
}

/** The text GitHub shows for inline Markdown: link text instead of links, no code or emphasis marks. */
export function plainText(inline: string): string {
  return inline
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/<[^>]+>/g, "")
    .replace(/`/g, "")
    .replace(/\*\*|__|\*/g, "")
    .trim();
}

/**
 * GitHub's heading anchor (github-slugger): lower case, punctuation and symbols removed, each space
 * a hyphen. Letters, digits, marks, `-` and `_` stay.
 */
export function githubSlug(heading: string): string {
  return plainText(heading)
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\-_ ]/gu, "")
    .replace(/ /g, "-");
}

export interface Heading {
  level: number;
  text: string;
  /** The anchor GitHub gives it, `-1`, `-2` … appended to repeats. */
  slug: string;
}

export function headings(markdown: string): Heading[] {
  const seen = new Map<string, number>();
  const found: Heading[] = [];
  for (const line of proseLines(markdown)) {
    const match = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const base = githubSlug(match[2]);
    const count = seen.get(base) ?? 0;
    seen.set(base, count + 1);
    found.push({ level: match[1].length, text: plainText(match[2]), slug: count === 0 ? base : `${base}-${count}` });
  }
  return found;
}

/** Every anchor a page offers: its headings' slugs and any explicit `id`/`name` attributes. */
export function anchors(markdown: string): Set<string> {
  const ids = new Set(headings(markdown).map((heading) => heading.slug));
  for (const line of proseLines(markdown)) {
    for (const match of line.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) if (match[1]) ids.add(match[1]);
  }
  return ids;
}

export interface Link {
  target: string;
  line: number;
}

/** Inline links and images outside code: `[text](target)`, with an optional title dropped. */
export function links(markdown: string): Link[] {
  const found: Link[] = [];
  proseLines(markdown).forEach((line, index) => {
    const withoutCode = line.replace(/`[^`]*`/g, "");
    for (const match of withoutCode.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
      if (match[1]) found.push({ target: match[1], line: index + 1 });
    }
  });
  return found;
}

/** The cells of a table row, trimmed; `\|` stays inside its cell. */
export function cells(row: string): string[] {
  const inner = row.trim().replace(/^\|/, "").replace(/\|$/, "");
  return inner.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

export interface Table {
  header: string[];
  rows: string[][];
  /** Index of the header line and one past the last row, in `markdown.split("\n")`. */
  start: number;
  end: number;
}

export function tables(markdown: string): Table[] {
  const lines = proseLines(markdown);
  const found: Table[] = [];
  for (let i = 0; i + 1 < lines.length; i++) {
    const header = lines[i] ?? "";
    const rule = lines[i + 1] ?? "";
    if (!header.trim().startsWith("|") || !/^\s*\|(\s*:?-+:?\s*\|)+\s*$/.test(rule)) continue;
    let end = i + 2;
    while (end < lines.length && (lines[end] ?? "").trim().startsWith("|")) end++;
    found.push({
      header: cells(header),
      rows: lines.slice(i + 2, end).map(cells),
      start: i,
      end,
    });
    i = end - 1;
  }
  return found;
}

/** The one table whose header is exactly `header`; throws when there is none or several. */
export function tableWithHeader(markdown: string, header: readonly string[]): Table {
  const matching = tables(markdown).filter((table) => table.header.join("|") === header.join("|"));
  if (matching.length !== 1) {
    throw new Error(`expected one table headed ${header.join(" | ")}, found ${matching.length}`);
  }
  return matching[0] as Table;
}

/** A code span's text: "`x`" → "x"; anything else unchanged. */
export function unquote(cell: string): string {
  const match = /^`([^`]*)`$/.exec(cell);
  return match?.[1] ?? cell;
}

export interface FencedBlock {
  lang: string;
  text: string;
}

/**
 * The fenced blocks of an example marked `<!-- example: name -->`: those that follow the marker,
 * up to the next heading or marker.
 */
export function example(markdown: string, name: string): FencedBlock[] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line.trim() === `<!-- example: ${name} -->`);
  if (start < 0) throw new Error(`no <!-- example: ${name} --> in the page`);
  const blocks: FencedBlock[] = [];
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i] ?? "";
    if (/^#{1,6}\s/.test(line) || line.trim().startsWith("<!-- example:")) break;
    const opener = /^(`{3,})(\S*)\s*$/.exec(line);
    if (!opener?.[1]) continue;
    const body: string[] = [];
    for (i++; i < lines.length && (lines[i] ?? "").trim() !== opener[1]; i++) body.push(lines[i] ?? "");
    blocks.push({ lang: opener[2] ?? "", text: body.join("\n") });
  }
  return blocks;
}

/** Every `<!-- example: name -->` marker of a page. */
export function exampleNames(markdown: string): string[] {
  return [...markdown.matchAll(/^<!-- example: (\S+) -->$/gm)].map((match) => match[1] ?? "");
}
