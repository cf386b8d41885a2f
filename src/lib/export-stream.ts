/**
 * Exports of a list as CSV or NDJSON (docs/reports.md#exports), streamed page by page: a
 * `ReadableStream` that asks its page source for the next page only when the reader wants more, so
 * a file of any size never sits in memory and a slow reader never makes the Worker buffer ahead.
 * Plain functions over plain data and an async page source; the HTTP part is reports/export-file.ts
 * (with routes/export.ts for the API's lists).
 *
 * CSV cells are written by csv-stringify (RFC 4180 quoting; its browser build, because its Node
 * build touches `Buffer` when it loads and the Worker runs without nodejs_compat). Before a string
 * reaches it, the formula guard below defends whoever opens the file in a spreadsheet.
 */
import { stringify } from "csv-stringify/browser/esm/sync";

export const EXPORT_FORMATS = ["json", "csv", "ndjson"] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
/** A format that streams every matching row (json is the paged list). */
export type StreamedFormat = Exclude<ExportFormat, "json">;

export const EXPORT_MEDIA_TYPES = {
  csv: "text/csv; charset=utf-8; header=present",
  ndjson: "application/x-ndjson",
} as const satisfies Record<StreamedFormat, string>;

/** Media types a client may name in `Accept`, and the format each asks for. */
const ACCEPTED_MEDIA_TYPES: Record<string, ExportFormat> = {
  "application/json": "json",
  "application/*": "json",
  "*/*": "json",
  "text/csv": "csv",
  "application/x-ndjson": "ndjson",
  "application/ndjson": "ndjson",
  "application/jsonl": "ndjson",
};

/**
 * The format of a list's answer: `format` in the query wins; else the type the `Accept` header
 * prefers (highest q, the first listed on a tie); else json, as before exports existed (an
 * `Accept` naming only types the list cannot give, such as a browser's text/html, still gets it).
 */
export function negotiateFormat(query: ExportFormat | undefined, accept: string | null | undefined): ExportFormat {
  if (query !== undefined) return query;
  let best: { format: ExportFormat; q: number } | null = null;
  for (const range of (accept ?? "").split(",")) {
    const [type = "", ...params] = range.split(";").map((part) => part.trim().toLowerCase());
    const format = ACCEPTED_MEDIA_TYPES[type];
    if (format === undefined) continue;
    const qParam = params.find((param) => param.startsWith("q="));
    const q = qParam === undefined ? 1 : Number(qParam.slice(2));
    if (!(q > 0)) continue;
    if (best === null || q > best.q) best = { format, q };
  }
  return best?.format ?? "json";
}

/** One value of a CSV row: a string, a number, a boolean, or null (an empty cell). */
export type Cell = string | number | boolean | null;

/** A CSV column: its header and how to read its cell from an exported item. */
export interface ExportColumn<Item> {
  name: string;
  value: (item: Item) => Cell;
}

/**
 * What a spreadsheet reads as the start of a formula (OWASP's CSV injection list and the full-width
 * forms some spreadsheets normalise), and the guard's own apostrophe, so that the rule can be undone.
 */
const FORMULA_START = /^['=+\-@\t\r\n\uFF1D\uFF0B\uFF0D\uFF20]/;

/**
 * Networks and partners choose transaction ids, meta values and error texts: a cell that starts a
 * formula would run when an operator opens the file. Such a string gets one leading apostrophe
 * (shown as text, never evaluated). A string that already starts with an apostrophe gets one too,
 * so the rule is reversible: a machine reading the CSV back removes one leading apostrophe from
 * every cell that has one and has the exact value. Numbers, booleans, amounts and times never start
 * with these characters, so only strings are looked at.
 */
export function guardFormula(value: string): string {
  return FORMULA_START.test(value) ? `'${value}` : value;
}

/** The reverse of `guardFormula`, for a reader of the CSV (and the tests). */
export function unguardFormula(cell: string): string {
  return cell.startsWith("'") ? cell.slice(1) : cell;
}

function cellText(cell: Cell): string {
  if (cell === null) return "";
  if (typeof cell === "string") return guardFormula(cell);
  return String(cell);
}

// CRLF as RFC 4180 (text/csv) has it; a value holding a line break, a comma or a quote is quoted.
const CSV_OPTIONS = { record_delimiter: "windows", eof: true } as const;

export function csvHeader(columns: readonly ExportColumn<never>[]): string {
  return stringify([columns.map((column) => column.name)], CSV_OPTIONS);
}

export function csvRows<Item>(columns: readonly ExportColumn<Item>[], items: readonly Item[]): string {
  if (items.length === 0) return "";
  return stringify(
    items.map((item) => columns.map((column) => cellText(column.value(item)))),
    CSV_OPTIONS,
  );
}

/** One JSON object per line; JSON.stringify escapes line breaks inside strings, so a line is a record. */
export function ndjsonRows(items: readonly unknown[]): string {
  let text = "";
  for (const item of items) text += `${JSON.stringify(item)}\n`;
  return text;
}

/**
 * Keyset pages of a list, in the order the list sorts them: each page starts after the last row of
 * the one before, so rows added or changed while the export runs never shift a page (no row twice,
 * none skipped among those that were there). `pageRows(index)` sizes each page (small first pages
 * answer fast, larger later ones spend fewer queries); stops after a short page.
 */
export async function* keysetPages<Row, Key>(
  fetchPage: (after: Key | null, limit: number) => Promise<Row[]>,
  keyOf: (row: Row) => Key,
  pageRows: (index: number) => number,
  start: Key | null = null,
): AsyncGenerator<Row[], void, undefined> {
  let after = start;
  for (let index = 0; ; index += 1) {
    const limit = pageRows(index);
    const rows = await fetchPage(after, limit);
    if (rows.length > 0) yield rows;
    const last = rows[rows.length - 1];
    if (rows.length < limit || last === undefined) return;
    after = keyOf(last);
  }
}

/** Each page of `pages` through `toItem` (a row as the list shows it). */
export async function* mapPages<Row, Item>(
  pages: AsyncIterable<readonly Row[]>,
  toItem: (row: Row) => Item,
): AsyncGenerator<Item[], void, undefined> {
  for await (const rows of pages) yield rows.map(toItem);
}

export interface ExportStreamOptions<Item> {
  format: StreamedFormat;
  columns: readonly ExportColumn<Item>[];
  /** The items, a page at a time (already shaped as the JSON list shows them). */
  pages: AsyncIterable<readonly Item[]>;
  /** Called once at the end: the count of rows and pages written, and the error that cut it, if any. */
  onEnd?: (outcome: { rows: number; pages: number; error: unknown }) => void;
}

/**
 * The export's body. The first page is read before this returns, so that a failure at the start
 * (storage down) is still an ordinary error answer rather than a 200 with a broken body; every later
 * page is read only when the reader pulls (highWaterMark 0). A page that fails after the answer
 * started errors the stream: the transfer breaks (no final chunk), so no client can take a cut file
 * for a complete one. A reader that cancels stops the page source.
 */
export async function exportStream<Item>(options: ExportStreamOptions<Item>): Promise<ReadableStream<Uint8Array>> {
  const { format, columns, onEnd } = options;
  const iterator = options.pages[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  let rows = 0;
  let pages = 0;
  let ended = false;
  const end = (error: unknown) => {
    if (ended) return;
    ended = true;
    onEnd?.({ rows, pages, error });
  };
  const encode = (items: readonly Item[]) => {
    rows += items.length;
    pages += 1;
    return encoder.encode(format === "csv" ? csvRows(columns, items) : ndjsonRows(items));
  };

  const first = await iterator.next();
  let opening: Uint8Array | null = encoder.encode(format === "csv" ? csvHeader(columns) : "");
  if (!first.done) {
    const body = encode(first.value);
    const joined = new Uint8Array(opening.length + body.length);
    joined.set(opening);
    joined.set(body, opening.length);
    opening = joined;
  }
  let finished = first.done === true;

  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (opening !== null) {
          const chunk = opening;
          opening = null;
          if (chunk.length > 0) {
            controller.enqueue(chunk);
            return;
          }
        }
        if (finished) {
          end(null);
          controller.close();
          return;
        }
        try {
          let next = await iterator.next();
          while (!next.done && next.value.length === 0) next = await iterator.next();
          if (next.done) {
            finished = true;
            end(null);
            controller.close();
            return;
          }
          controller.enqueue(encode(next.value));
        } catch (error) {
          end(error);
          controller.error(error);
        }
      },
      async cancel(reason) {
        end(reason ?? new Error("the reader cancelled the export"));
        await iterator.return?.();
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A field's value as one cell; an object has no place in a flat row, so a field that becomes one
 * (a schema change without its own columns) fails the export loudly instead of writing [object Object].
 */
export function scalarCell(name: string, value: unknown): Cell {
  if (value === null || value === undefined) return null;
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
  throw new Error(`export column ${name} is not a scalar (${typeof value}): give it columns of its own`);
}
