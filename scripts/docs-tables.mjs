#!/usr/bin/env node
// `npm run docs:tables`: rewrites the generated columns of two tables in docs/ from their sources,
// keeping the columns written by hand:
//   docs/api.md            the error codes: Status, `code` and Title from the error module's PROBLEM_CODES
//                          (When is kept per code);
//   docs/configuration.md  the vars: Var and Default from wrangler.toml's [vars] (Accepted and Meaning kept
//                          per var).
// A new code or var gets empty hand-written cells, which test/docs.tables.test.ts refuses until they are
// written. Then Biome formats the two pages. `--check` writes nothing and exits 1 when a table differs.
// Node loads the TypeScript sources directly (type stripping, Node 22.18 and later).
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { PROBLEM_CODES } from "../src/errors.ts";
import { tableWithHeader } from "../test/support/markdown.ts";
import { vars } from "../test/support/wrangler-toml.ts";

const root = path.resolve(import.meta.dirname, "..");
const check = process.argv.includes("--check");

export const ERRORS_HEADER = ["Status", "`code`", "Title", "When"];
export const VARS_HEADER = ["Var", "Default", "Accepted", "Meaning"];

const row = (cells) => `| ${cells.map((cell) => cell.replaceAll("|", "\\|")).join(" | ")} |`;

/** Replaces the table headed `header` in `file` with `rows`, built from the old rows by `build`. */
function regenerate(file, header, build) {
  const page = readFileSync(path.join(root, file), "utf8");
  const table = tableWithHeader(page, header);
  const rows = build(table.rows);
  const same = JSON.stringify(rows) === JSON.stringify(table.rows);
  if (same) return { file, changed: false };
  if (check) {
    console.error(
      `✗ ${file}: the table headed "${header.join(" | ")}" differs from its source; run npm run docs:tables`,
    );
    return { file, changed: true };
  }
  const lines = page.split("\n");
  lines.splice(table.start, table.end - table.start, row(header), row(header.map(() => "---")), ...rows.map(row));
  writeFileSync(path.join(root, file), lines.join("\n"));
  console.log(`• rewrote the table headed "${header.join(" | ")}" in ${file}`);
  return { file, changed: true };
}

const results = [
  regenerate("docs/api.md", ERRORS_HEADER, (old) => {
    const when = new Map(old.map((cells) => [cells[1], cells[3] ?? ""]));
    return Object.entries(PROBLEM_CODES).map(([code, { status, title }]) => [
      String(status),
      `\`${code}\``,
      title,
      when.get(`\`${code}\``) ?? "",
    ]);
  }),
  regenerate("docs/configuration.md", VARS_HEADER, (old) => {
    const written = new Map(old.map((cells) => [cells[0], cells.slice(2)]));
    const toml = readFileSync(path.join(root, "wrangler.toml"), "utf8");
    return vars(toml).map(([name, value]) => [
      `\`${name}\``,
      value === "" ? "empty" : `\`${value}\``,
      ...(written.get(`\`${name}\``) ?? ["", ""]),
    ]);
  }),
];

const changed = results.filter((result) => result.changed).map((result) => result.file);
if (check) process.exit(changed.length > 0 ? 1 : 0);
if (changed.length > 0) {
  const biome = spawnSync(path.join(root, "node_modules", ".bin", "biome"), ["format", "--write", ...changed], {
    cwd: root,
    stdio: "inherit",
  });
  process.exit(biome.status ?? 1);
}
console.log("• the tables already match their sources");
