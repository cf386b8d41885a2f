// Reliability scenarios: plain Node against a real `wrangler dev` that each file starts.
// RELIABILITY_SCALE (default 1) multiplies the load; see test/e2e/reliability/harness.ts.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/reliability/**/*.reliability.ts"],
    environment: "node",
    // One wrangler dev at a time, tests in order: the machine has 2 shared cores.
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 900_000,
    hookTimeout: 180_000,
  },
});
