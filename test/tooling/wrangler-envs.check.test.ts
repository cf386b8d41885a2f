// scripts/check-wrangler-envs.mjs: the repository's wrangler.toml passes; a production block that
// lost a var, a secret or any kind of binding fails, and so does one that shares a resource.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse, stringify } from "smol-toml";
import { describe, expect, it } from "vitest";
import { checkEnvironments } from "../../scripts/check-wrangler-envs.mjs";

const ROOT = path.resolve(import.meta.dirname, "../..");
const SCRIPT = path.join(ROOT, "scripts/check-wrangler-envs.mjs");
const CONFIG_TEXT = readFileSync(path.join(ROOT, "wrangler.toml"), "utf8");

// biome-ignore lint/suspicious/noExplicitAny: a parsed TOML document, mutated freely by each case.
type Config = Record<string, any>;

/** The repository's configuration, parsed afresh, after `change` edits it. */
function configWith(change: (config: Config) => void = () => {}): Config {
  const config = parse(CONFIG_TEXT) as Config;
  change(config);
  return config;
}

/** Removes the first item of `list` that `match` picks, failing the test if there is none. */
function removeFrom<T>(list: T[], match: (item: T) => boolean): void {
  const index = list.findIndex(match);
  expect(index, "the item to remove is in the configuration").toBeGreaterThanOrEqual(0);
  list.splice(index, 1);
}

const errorsOf = (config: Config) => checkEnvironments(config).errors;

describe("the repository's wrangler.toml", () => {
  it("has an [env.production] that repeats every var, secret and binding, with its own resources", () => {
    const { errors, warnings, environments } = checkEnvironments(configWith());
    expect(environments).toEqual(["production"]);
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it("passes the script as `npm run check` runs it", () => {
    const run = spawnSync(process.execPath, [SCRIPT], { cwd: ROOT, encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain("[env.production]");
  });
});

describe("a production block missing something the top level has", () => {
  const cases: [string, (config: Config) => void, RegExp][] = [
    ["a var", (c) => delete c.env.production.vars.ALERT_URL, /env\.production\.vars\.ALERT_URL: missing/],
    [
      "a required secret",
      (c) => {
        c.env.production.secrets.required = ["ADMIN_TOKEN"];
      },
      /secrets\.required: "ENCRYPTION_KEY" missing/,
    ],
    [
      "a queue producer",
      (c) => removeFrom(c.env.production.queues.producers, (p: Config) => p.binding === "DELIVERIES"),
      /queues\.producers binding = "DELIVERIES": missing/,
    ],
    [
      "a queue consumer",
      (c) => removeFrom(c.env.production.queues.consumers, (q: Config) => q.queue === "postback-events-production"),
      /missing a consumer of "postback-events-production"/,
    ],
    [
      "a dead-letter queue's consumer",
      (c) =>
        removeFrom(c.env.production.queues.consumers, (q: Config) => q.queue === "postback-requests-production-dlq"),
      /missing a consumer of "postback-requests-production-dlq"/,
    ],
    [
      "a consumer's dead_letter_queue",
      (c) => {
        const consumer = c.env.production.queues.consumers.find(
          (q: Config) => q.queue === "postback-deliveries-production",
        );
        delete consumer.dead_letter_queue;
      },
      /queue = "postback-deliveries-production": no dead_letter_queue/,
    ],
    [
      "a rate limit",
      (c) => removeFrom(c.env.production.ratelimits, (r: Config) => r.name === "INBOUND_LOG_LIMITER"),
      /ratelimits name = "INBOUND_LOG_LIMITER": missing/,
    ],
    [
      "the D1 database",
      (c) => {
        c.env.production.d1_databases = [];
      },
      /d1_databases binding = "DB": missing/,
    ],
    [
      "the Durable Object binding",
      (c) => {
        delete c.env.production.durable_objects;
      },
      /durable_objects\.bindings name = "CONVERSIONS": missing/,
    ],
  ];

  for (const [what, change, message] of cases) {
    it(`fails on ${what}`, () => {
      const errors = errorsOf(configWith(change));
      expect(errors.join("\n")).toMatch(message);
    });
  }

  it("fails on a var or a binding that only the environment has", () => {
    const errors = errorsOf(
      configWith((c) => {
        c.env.production.vars.ONLY_HERE = "1";
        c.env.production.kv_namespaces = [{ binding: "CACHE", id: "abc" }];
      }),
    );
    expect(errors.join("\n")).toMatch(/vars\.ONLY_HERE: not at the top level/);
    expect(errors.join("\n")).toMatch(/kv_namespaces binding = "CACHE": not at the top level/);
  });
});

describe("a production block sharing a resource with the top level", () => {
  it("fails on a shared queue", () => {
    const errors = errorsOf(
      configWith((c) => {
        const producer = c.env.production.queues.producers.find((p: Config) => p.binding === "EVENTS");
        producer.queue = "postback-events";
      }),
    );
    expect(errors.join("\n")).toMatch(/queue "postback-events": named by the top level .* and env\.production/);
  });

  it("fails on a shared rate limit namespace, even under another binding's name", () => {
    const errors = errorsOf(
      configWith((c) => {
        const limiter = c.env.production.ratelimits.find((r: Config) => r.name === "INBOUND_LOG_LIMITER");
        limiter.namespace_id = c.ratelimits.find((r: Config) => r.name === "INGEST_RATE_LIMITER").namespace_id;
      }),
    );
    expect(errors.join("\n")).toMatch(
      /ratelimits namespace_id "1001": named by the top level \(name INGEST_RATE_LIMITER\) and env\.production \(name INBOUND_LOG_LIMITER\)/,
    );
  });

  it("fails on a shared D1 database", () => {
    const errors = errorsOf(
      configWith((c) => {
        c.env.production.d1_databases[0].database_name = c.d1_databases[0].database_name;
      }),
    );
    expect(errors.join("\n")).toMatch(/d1_databases database_name "postback-hub": named by the top level/);
  });

  it("fails on a queue-name var that names another environment's queue", () => {
    const errors = errorsOf(
      configWith((c) => {
        c.env.production.vars.DELIVERIES_DLQ_NAME = "postback-deliveries-dlq";
      }),
    );
    expect(errors.join("\n")).toMatch(
      /vars\.DELIVERIES_DLQ_NAME: "postback-deliveries-dlq", but this environment's counterpart .* is "postback-deliveries-production-dlq"/,
    );
  });
});

describe("settings that drifted apart", () => {
  it("warns, without failing, on a consumer's or a limiter's settings", () => {
    const { errors, warnings } = checkEnvironments(
      configWith((c) => {
        c.env.production.queues.consumers[0].max_retries = 5;
        c.env.production.ratelimits[0].simple = { limit: 100, period: 60 };
      }),
    );
    expect(errors).toEqual([]);
    expect(warnings.join("\n")).toMatch(/max_retries is 5, the top level's is 20/);
    expect(warnings.join("\n")).toMatch(/INGEST_RATE_LIMITER": simple is/);
  });
});

describe("the script on a broken file", () => {
  it("exits 1 and names each problem", () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), "wrangler-envs-")), "wrangler.toml");
    writeFileSync(
      file,
      stringify(
        configWith((c) => {
          delete c.env.production.vars.MAX_BODY_BYTES;
          c.env.production.queues.producers = [];
        }),
      ),
    );
    const run = spawnSync(process.execPath, [SCRIPT, file], { encoding: "utf8" });
    expect(run.status, run.stdout).toBe(1);
    expect(run.stderr).toContain("env.production.vars.MAX_BODY_BYTES: missing");
    expect(run.stderr).toContain('queues.producers binding = "EVENTS": missing');
    expect(run.stderr).toMatch(/\d+ problems in \[env\.\*\]/);
  });
});
