#!/usr/bin/env node
// Writes the OpenAPI document as the hub serves it (GET /openapi.json of a real `wrangler dev`,
// offline, with its own state and secrets) to a file, for the linter in `npm run check` and for
// client generators: `node scripts/openapi.mjs [file]`, dist/openapi.json by default.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { startWranglerDev } from "../test/e2e/wrangler-dev.ts";

const root = path.resolve(import.meta.dirname, "..");
const file = path.resolve(root, process.argv[2] ?? "dist/openapi.json");

const hub = await startWranglerDev({ label: "openapi" });
try {
  const response = await fetch(`${hub.baseUrl}/openapi.json`);
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /openapi.json answered ${response.status}: ${text}`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(JSON.parse(text), null, 2)}\n`);
  console.log(`• wrote the OpenAPI document to ${path.relative(root, file)}`);
} finally {
  await hub.stop();
}
