// End-to-end tests: plain Node, talking over HTTP to a real `wrangler dev`: the one the global setup
// starts and most files share (test/e2e/shared-hub.ts), or a file's own (test/e2e/README.md).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/e2e/**/*.e2e.test.ts"],
    globalSetup: ["test/e2e/shared-hub.global-setup.ts"],
    // One file at a time: the files on the shared hub count what reaches their partners, and the
    // machine has 2 shared cores.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
