import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          // Test-only credentials; real ones are secrets (wrangler secret put).
          ADMIN_TOKEN: "test-admin-token-0123456789abcdef",
          ENCRYPTION_KEY: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
          TEST_MIGRATIONS: migrations,
        },
        // A database without migrations, to prove /health notices.
        d1Databases: { UNMIGRATED_DB: "unmigrated" },
        // Any outbound request a test did not arrange fails loudly.
        outboundService: (request: Request) =>
          new Response(`unexpected outbound request in a test: ${request.method} ${request.url}`, { status: 599 }),
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**"],
    setupFiles: ["./test/setup/apply-migrations.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
