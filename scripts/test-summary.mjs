#!/usr/bin/env node
// Prints one closing line, "N passed, N failed", summed over the vitest JSON reports of this run.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
let passed = 0;
let failed = 0;
let skipped = 0;
for (const name of ["tooling.json", "workers.json", "e2e.json", "reliability.json"]) {
  const file = path.join(root, "reports", name);
  if (!existsSync(file)) continue;
  const report = JSON.parse(readFileSync(file, "utf8"));
  passed += report.numPassedTests ?? 0;
  // A file that fails to load fails no test by itself; count it so the line never hides it.
  failed += Math.max(report.numFailedTests ?? 0, report.numFailedTestSuites ?? 0);
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
