import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import path from "node:path";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { fakePartner } from "./test/setup/fake-partner";

const migrations = await readD1Migrations(path.join(import.meta.dirname, "migrations"));
// The tests' own Apple-format signing key (test/fixtures/apple-test-key.json), trusted as an operator's added key.
const appleTestKey = JSON.parse(
  readFileSync(path.join(import.meta.dirname, "test", "fixtures", "apple-test-key.json"), "utf8"),
) as { kid: string; public_jwk: object; public_spki_base64: string };
// wrangler.toml's [assets] directory must hold /docs's bundle before the Worker starts, however vitest was run.
execFileSync(process.execPath, [path.join(import.meta.dirname, "scripts", "docs-assets.mjs")], { stdio: "inherit" });

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
          // Production's rule, whatever a developer's .dev.vars says (it allows http and loopback).
          ALLOW_INSECURE_PARTNER_URLS: "false",
          APPLE_POSTBACK_KEYS: JSON.stringify({
            skadnetwork: [appleTestKey.public_spki_base64],
            adattributionkit: { [appleTestKey.kid]: appleTestKey.public_jwk },
          }),
        },
        // A database without migrations, to prove /health notices; ones a test migrates step by step,
        // to prove a migration keeps the rows written before it (one per migration tested: once
        // migrated past a step, a database cannot be taken back before it).
        d1Databases: {
          UNMIGRATED_DB: "unmigrated",
          MIGRATION_DB: "migration-steps",
          MONEY_LIMBS_MIGRATION_DB: "migration-steps-money-limbs",
          DELIVERY_ROWS_MIGRATION_DB: "migration-steps-delivery-rows",
        },
        // A limiter small enough to exhaust in a test; test/postbacks.inbound.test.ts swaps it in for
        // INGEST_RATE_LIMITER (whose production limit no test could reach) so the real local limiter counts.
        ratelimits: { TEST_RATE_LIMITER: { namespace_id: "9001", simple: { limit: 3, period: 60 } } },
        // wrangler.toml's consumers, with batches flushed after 50 ms instead of 1-5 s: most tests
        // wait for an event to reach D1 or a partner, and the batch timeout was most of the suite's
        // time. Batch sizes, retries and dead-letter queues stay as deployed.
        queueConsumers: {
          "postback-events": {
            maxBatchSize: 100,
            maxBatchTimeout: 0.05,
            maxRetries: 20,
            deadLetterQueue: "postback-events-dlq",
          },
          "postback-events-dlq": { maxBatchSize: 100, maxBatchTimeout: 0.05, maxRetries: 100 },
          "postback-deliveries": {
            maxBatchSize: 10,
            maxBatchTimeout: 0.05,
            maxRetries: 100,
            deadLetterQueue: "postback-deliveries-dlq",
          },
          "postback-deliveries-dlq": { maxBatchSize: 100, maxBatchTimeout: 0.05, maxRetries: 100 },
          "postback-requests": {
            maxBatchSize: 10,
            maxBatchTimeout: 0.05,
            maxRetries: 10,
            deadLetterQueue: "postback-requests-dlq",
          },
          "postback-requests-dlq": { maxBatchSize: 10, maxBatchTimeout: 0.05, maxRetries: 100 },
          "postback-clicks": {
            maxBatchSize: 10,
            maxBatchTimeout: 0.05,
            maxRetries: 20,
            deadLetterQueue: "postback-clicks-dlq",
          },
          "postback-clicks-dlq": { maxBatchSize: 10, maxBatchTimeout: 0.05, maxRetries: 100 },
        },
        // The fake partner at https://partner.test; any other outbound request fails loudly (599).
        outboundService: fakePartner,
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    // test/e2e runs against wrangler dev, test/tooling in plain Node (their own vitest configs).
    exclude: ["test/e2e/**", "test/tooling/**"],
    setupFiles: ["./test/setup/apply-migrations.ts"],
    // The hub's routine lines (one per request and per queue batch, src/lib/log.ts) would bury the
    // lines a failing test needs; tests that check them spy on console inside workerd instead.
    onConsoleLog: (log) => !/"message":"(request|queue batch)"/.test(log),
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Vitest's default is one worker fewer than the CPUs: a single one on a 2-core machine, which then
    // sits a third of the time waiting on workerd (queues, alarms). Two there took the suite from
    // 317 s to 206 s; three were no faster (211 s).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
