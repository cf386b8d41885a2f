// End-to-end tests: plain Node, talking over HTTP to a real `wrangler dev` that each file starts.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.e2e.test.ts"],
    // Each file starts its own wrangler dev (workerd, esbuild); one at a time keeps a small machine responsive.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
