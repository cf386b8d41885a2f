#!/usr/bin/env node
// Puts the browser bundle of Scalar's API reference, which /docs loads, where Workers Static Assets
// serve it (public/assets/scalar/, the [assets] directory of wrangler.toml), so the page needs no
// CDN and works offline. The bundle is copied from node_modules rather than committed: it is 4.8 MB
// of generated code that must match the installed @scalar/api-reference, and package-lock.json
// already pins it. Run by `npm install` (postinstall), `npm run dev`, the test configurations, every
// start of wrangler dev by the tests, `npm run check` and `npm run deploy`; it copies only when the
// installed bundle differs from the one in place, so running it again costs a file comparison.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const source = path.join(root, "node_modules", "@scalar", "api-reference");
const target = path.join(root, "public", "assets", "scalar");

const files = [
  // The single-file (UMD) build: one nonced <script src>, no chunks loaded by import(), so the
  // page's script-src can stay a bare nonce (src/routes/docs.ts).
  ["dist/browser/standalone.js", "standalone.js"],
  // The MIT licence travels with the copy. The package has none of its own; its siblings carry Scalar's.
  ["../api-client/LICENSE", "LICENSE.txt"],
];

if (!existsSync(source)) {
  console.error("✗ node_modules/@scalar/api-reference is missing: run npm install first");
  process.exit(1);
}
mkdirSync(target, { recursive: true });
let copied = 0;
for (const [from, to] of files) {
  const src = path.join(source, from);
  const dst = path.join(target, to);
  if (existsSync(dst) && readFileSync(src).equals(readFileSync(dst))) continue;
  copyFileSync(src, dst);
  copied += 1;
}
if (copied > 0) console.log(`• copied Scalar's API reference bundle to ${path.relative(root, target)}/`);
