/**
 * Every relative link of the README and of docs/*.md must lead somewhere: to a file of the
 * repository, and, with an `#anchor`, to a heading of that page as GitHub slugs it.
 */
import { describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import { anchors, links } from "./support/markdown";

// The pages, by repository path. Globbed, so that a page added to docs/ is checked without a change here.
const docs = import.meta.glob<string>("/docs/*.md", { query: "?raw", import: "default", eager: true });
const pages: Record<string, string> = { "README.md": readme };
for (const [file, text] of Object.entries(docs)) pages[file.replace(/^\//, "")] = text;

// Every file a link may point at (their contents are never loaded).
const files = new Set(
  Object.keys(
    import.meta.glob([
      "/**/*",
      "/.github/**/*",
      "!/node_modules/**",
      "!/.wrangler/**",
      "!/dist/**",
      "!/reports/**",
      "!/bench/results/**",
    ]),
  ).map((file) => file.replace(/^\//, "")),
);

/**
 * Pages that other branches write and this one links to: a link to one is accepted while the page
 * is absent (without an anchor, which cannot be checked), and checked like any other once it exists.
 */

/** Resolves `target` (relative to `from`, a repository path) to a repository path. */
function resolve(from: string, target: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const part of target.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== "." && part !== "") parts.push(part);
  }
  return parts.join("/");
}

function brokenLinks(from: string, markdown: string, pagesByPath: Record<string, string>, known: Set<string>) {
  const problems: string[] = [];
  for (const { target, line } of links(markdown)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, …
    const [pathPart = "", anchor] = target.split("#", 2);
    const file = pathPart === "" ? from : resolve(from, decodeURIComponent(pathPart));
    const where = `${from}:${line} → ${target}`;
    const page = pagesByPath[file];
    const exists = page !== undefined || known.has(file) || known.has(`${file}/`);
    if (!exists) {
      problems.push(`${where}: no such file ${file}`);
      continue;
    }
    if (anchor === undefined || anchor === "") continue;
    if (page === undefined) {
      if (file.endsWith(".md")) problems.push(`${where}: cannot read ${file} to check #${anchor}`);
      continue;
    }
    if (!anchors(page).has(anchor)) problems.push(`${where}: ${file} has no heading with the anchor #${anchor}`);
  }
  return problems;
}

describe("links in the README and docs/", () => {
  it("reads the README and every page of docs/", () => {
    expect(Object.keys(pages).length).toBeGreaterThan(10);
    for (const [file, text] of Object.entries(pages)) expect(text.length, file).toBeGreaterThan(0);
  });

  it.each(Object.keys(pages))("every relative link and anchor of %s resolves", (file) => {
    expect(brokenLinks(file, pages[file] ?? "", pages, files)).toEqual([]);
  });

  it("catches a missing file, a missing page, a missing anchor and a broken anchor in the same page", () => {
    const page = [
      "# A page",
      "## Hello, `world`: (again)",
      "[ok](#hello-world-again) [ok](other.md#other-heading) [ok](../README.md#quick-start)",
      "[bad](#nope) [bad](missing.md) [bad](other.md#nope) [bad](../nowhere/file.json)",
      "```sh",
      "[not a link](#inside-code)",
      "```",
    ].join("\n");
    const others = { "docs/other.md": "# Other heading\n", "README.md": "## Quick start\n" };
    expect(brokenLinks("docs/page.md", page, { ...others, "docs/page.md": page }, new Set())).toEqual([
      "docs/page.md:4 → #nope: docs/page.md has no heading with the anchor #nope",
      "docs/page.md:4 → missing.md: no such file docs/missing.md",
      "docs/page.md:4 → other.md#nope: docs/other.md has no heading with the anchor #nope",
      "docs/page.md:4 → ../nowhere/file.json: no such file nowhere/file.json",
    ]);
  });

  it("slugs headings as GitHub does", () => {
    const page = [
      "# Signed query strings (`pb_sig`)",
      "## 7. Scope: a postback, or a read of the inbound log",
      "## Node.js (18 or later, `node:crypto` only)",
      "## Rotating a partner's signing secret",
      "## (a) Standard Webhooks JSON",
      "## Repeated",
      "## Repeated",
    ].join("\n");
    expect([...anchors(page)]).toEqual([
      "signed-query-strings-pb_sig",
      "7-scope-a-postback-or-a-read-of-the-inbound-log",
      "nodejs-18-or-later-nodecrypto-only",
      "rotating-a-partners-signing-secret",
      "a-standard-webhooks-json",
      "repeated",
      "repeated-1",
    ]);
  });
});
