#!/usr/bin/env node
// `npm run bench:bundle`: what the Worker's bundle is made of, per package, raw and gzip. Builds it
// as `wrangler deploy` would (`wrangler deploy --dry-run --env= --outdir`, source map included) or
// reads `--dir <outdir>` (one built earlier, e.g. from another commit), then splits the bundle's text
// by the package each character's source belongs to (bench/lib/bundle.mjs) and gzips each share
// alone (a share compresses a little worse alone than inside the whole file). `--top N` (20).
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { slicesByPackage } from "./lib/bundle.mjs";
import { fmt, printTable } from "./lib/table.mjs";
import { ROOT } from "./lib/wrangler.mjs";

const args = process.argv.slice(2);
const option = (name) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? undefined : args[i + 1];
};
const TOP = Number(option("top") ?? 20);

let dir = option("dir");
const built = dir === undefined;
if (built) {
  dir = await mkdtemp(path.join(os.tmpdir(), "bench-bundle-"));
  await promisify(execFile)(
    path.join(ROOT, "node_modules/.bin/wrangler"),
    ["deploy", "--dry-run", "--env=", "--outdir", dir],
    { cwd: ROOT, env: { ...process.env, CI: "true" }, maxBuffer: 16 * 1024 * 1024 },
  );
}
try {
  const code = await readFile(path.join(dir, "index.js"), "utf8");
  const map = JSON.parse(await readFile(path.join(dir, "index.js.map"), "utf8"));
  const kib = (text) => Buffer.byteLength(text) / 1024;
  const gzipKib = (text) => gzipSync(text).length / 1024;
  const rows = Object.entries(slicesByPackage(code, map))
    .map(([name, text]) => ({ name, raw: kib(text), gzip: gzipKib(text) }))
    .sort((a, b) => b.raw - a.raw);
  const total = { name: "whole bundle", raw: kib(code), gzip: gzipKib(code) };
  const shown = rows.slice(0, TOP);
  const rest = rows.slice(TOP);
  if (rest.length) {
    const text = rest.map((r) => r.name).join(", ");
    shown.push({ name: `${rest.length} more (${text.slice(0, 60)}…)`, raw: rest.reduce((s, r) => s + r.raw, 0) });
  }
  console.log(`\n${built ? "this tree's" : dir} Worker bundle, per package (KiB; gzip of each share alone):\n`);
  printTable(
    [
      { header: "package", cell: (r) => r.name },
      { header: "KiB", cell: (r) => fmt(r.raw, 1) },
      { header: "gzip KiB", cell: (r) => fmt(r.gzip, 1) },
      { header: "share", cell: (r) => `${fmt((100 * r.raw) / total.raw, 1)} %` },
    ],
    [...shown, total],
  );
} finally {
  if (built) await rm(dir, { recursive: true, force: true });
}
