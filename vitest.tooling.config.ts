// Tests of the project's tooling (scripts/, bench/lib/, the CI workflow): plain Node, no workerd.
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/tooling/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
