// scripts/deploy.mjs end to end, from an empty account to a running hub, against the fake
// Cloudflare API (test/tooling/support/fake-cloudflare-api.ts) through the real wrangler: what it
// creates, in which order, that it refuses to start without the secrets, and that a second deploy
// creates and migrates nothing.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseArgs } from "../../scripts/deploy.mjs";
import { type FakeCloudflareApi, startFakeCloudflareApi } from "./support/fake-cloudflare-api";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "node_modules", ".bin");
const MIGRATIONS = readdirSync(path.join(ROOT, "migrations")).filter((f) => f.endsWith(".sql"));
const TOP_QUEUES = ["events", "deliveries", "requests", "clicks"].flatMap((q) => [
  `postback-${q}`,
  `postback-${q}-dlq`,
]);
const PRODUCTION_QUEUES = ["events", "deliveries", "requests", "clicks"].flatMap((q) => [
  `postback-${q}-production`,
  `postback-${q}-production-dlq`,
]);

// The API reference's bundle, which /docs loads from the Worker's static assets (public/).
const SCALAR_BUNDLE = "/assets/scalar/standalone.js";

let api: FakeCloudflareApi;

/** The bytes the account serves at `file` beside the Worker `script`, if any. */
const servedAsset = (script: string, file: string) => {
  const hash = api.scripts.get(script)?.assets.get(file);
  return hash === undefined ? undefined : api.assetFiles.get(hash);
};

/** Runs a command with the fake account's credentials; never blocks the fake's event loop. */
function run(command: string, args: string[], input?: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: {
        ...process.env,
        PATH: `${BIN}${path.delimiter}${process.env.PATH ?? ""}`,
        CLOUDFLARE_API_TOKEN: "fake-token",
        CLOUDFLARE_ACCOUNT_ID: api.accountId,
        CLOUDFLARE_API_BASE_URL: api.baseUrl,
        CLOUDFLARE_ENV: "",
        WRANGLER_SEND_METRICS: "false",
        CI: "true",
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr.on("data", (chunk) => {
      output += chunk;
    });
    child.stdin.end(input ?? "");
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

const deploy = (...args: string[]) => run(process.execPath, [path.join(ROOT, "scripts/deploy.mjs"), ...args]);
const putSecret = (name: string, value: string, ...args: string[]) =>
  run(path.join(BIN, "wrangler"), ["secret", "put", name, ...args], value);

/** The calls made by the step `during`, and what they created. */
async function callsDuring(during: () => Promise<unknown>) {
  const start = api.calls.length;
  await during();
  return api.calls.slice(start);
}

const migrationsApplied = (name: string) => {
  const db = [...api.databases.values()].find((d) => d.name === name);
  return db?.sqlite
    .prepare("SELECT name FROM d1_migrations ORDER BY id")
    .all()
    .map((row) => row.name);
};

beforeAll(async () => {
  api = await startFakeCloudflareApi();
});

afterAll(async () => {
  await api?.close();
});

// Each step runs wrangler a few times (about 2 s of CPU each), on a machine that may be busy.
describe("npm run deploy on an empty account", { timeout: 300_000 }, () => {
  it("refuses before creating anything while the secrets are not set, and says how to set them", async () => {
    const calls = await callsDuring(async () => {
      const { code, output } = await deploy();
      expect(code, output).toBe(1);
      expect(output).toContain("lacks the secrets ADMIN_TOKEN, ENCRYPTION_KEY");
      expect(output).toContain("npx wrangler secret put ADMIN_TOKEN");
    });
    expect(calls.filter((call) => call.startsWith("POST") || call.startsWith("PUT"))).toEqual([]);
  });

  it("creates the queues and the database, migrates, then deploys, once the secrets are set", async () => {
    for (const [name, value] of [
      ["ADMIN_TOKEN", "fake-admin-token"],
      ["ENCRYPTION_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="],
    ] as const) {
      const { code, output } = await putSecret(name, value);
      expect(code, output).toBe(0);
    }
    const calls = await callsDuring(async () => {
      const { code, output } = await deploy();
      expect(code, output).toBe(0);
    });

    expect([...api.queues.keys()].sort()).toEqual([...TOP_QUEUES].sort());
    expect([...api.buckets.keys()]).toEqual(["postback-hub-archive"]);
    expect(migrationsApplied("postback-hub")).toEqual(MIGRATIONS);
    const created = calls.filter((call) => call === "POST /queues" || call === "POST /d1/database");
    // The dead-letter queues by the script, the producers' queues and the database by wrangler deploy.
    expect(created).toHaveLength(TOP_QUEUES.length + 1);
    // Everything exists and is migrated before the code is uploaded.
    const upload = calls.findIndex((call) => call.startsWith("PUT /workers/scripts/postback-hub"));
    const lastQuery = calls.findLastIndex((call) => call.endsWith("/query"));
    expect(upload).toBeGreaterThan(lastQuery);
    const script = api.scripts.get("postback-hub");
    const db = [...api.databases.values()].find((d) => d.name === "postback-hub");
    expect(script?.bindings).toContainEqual(expect.objectContaining({ type: "d1", name: "DB", id: db?.uuid }));
    expect(script?.bindings).toContainEqual(
      expect.objectContaining({ type: "r2_bucket", name: "ARCHIVE", bucket_name: "postback-hub-archive" }),
    );
    for (const queue of TOP_QUEUES) {
      expect(
        api.queues.get(queue)?.consumers.map((c) => c.script),
        queue,
      ).toEqual(["postback-hub"]);
    }
    // The docs page's bundle went up with the Worker, byte for byte.
    expect(calls).toContain("POST /workers/assets/upload");
    expect(
      servedAsset("postback-hub", SCALAR_BUNDLE)?.equals(readFileSync(path.join(ROOT, "public", SCALAR_BUNDLE))),
    ).toBe(true);
    expect(api.unhandled).toEqual([]);
  });

  it("creates and migrates nothing on the next deploy", async () => {
    const calls = await callsDuring(async () => {
      const { code, output } = await deploy();
      expect(code, output).toBe(0);
    });
    expect(
      calls.filter((call) => call === "POST /queues" || call === "POST /d1/database" || call === "POST /r2/buckets"),
    ).toEqual([]);
    expect(migrationsApplied("postback-hub")).toEqual(MIGRATIONS);
    expect(calls.some((call) => call.startsWith("PUT /workers/scripts/postback-hub"))).toBe(true);
    // The account already holds every asset: none is sent again, and the Worker still serves them.
    expect(calls).not.toContain("POST /workers/assets/upload");
    expect(servedAsset("postback-hub", SCALAR_BUNDLE)).toBeDefined();
    expect(api.unhandled).toEqual([]);
  });

  it("prepares, then deploys [env.production] beside it with its own secrets, queues and database", async () => {
    const refused = await deploy("--env", "production");
    expect(refused.code, refused.output).toBe(1);
    expect(refused.output).toContain("npx wrangler secret put ADMIN_TOKEN --env production");
    for (const name of ["ADMIN_TOKEN", "ENCRYPTION_KEY"]) {
      const { code, output } = await putSecret(
        name,
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "--env",
        "production",
      );
      expect(code, output).toBe(0);
    }
    // As the workflow's deploy job does it: the script prepares, then cloudflare/wrangler-action deploys.
    const prepared = await deploy("--env", "production", "--prepare-only");
    expect(prepared.code, prepared.output).toBe(0);
    expect(migrationsApplied("postback-hub-production")).toEqual(MIGRATIONS);
    expect([...api.buckets.keys()].sort()).toEqual(["postback-hub-archive", "postback-hub-archive-production"]);
    expect(api.scripts.get("postback-hub-production")?.bindings, "only secret put's placeholder yet").toEqual([]);
    const { code, output } = await run(path.join(BIN, "wrangler"), ["deploy", "--env", "production"]);
    expect(code, output).toBe(0);
    expect(api.scripts.get("postback-hub-production")?.bindings).toContainEqual(
      expect.objectContaining({ type: "d1", name: "DB" }),
    );
    for (const queue of PRODUCTION_QUEUES) {
      expect(
        api.queues.get(queue)?.consumers.map((c) => c.script),
        queue,
      ).toEqual(["postback-hub-production"]);
    }
    for (const queue of TOP_QUEUES) {
      expect(
        api.queues.get(queue)?.consumers.map((c) => c.script),
        queue,
      ).toEqual(["postback-hub"]);
    }
    expect(servedAsset("postback-hub-production", SCALAR_BUNDLE)).toBeDefined();
    expect(api.unhandled).toEqual([]);
  });
});

describe("the deploy script's arguments", () => {
  it("takes the environment from --env, -e or CLOUDFLARE_ENV and passes the rest to wrangler deploy", () => {
    expect(parseArgs(["--env", "production", "--minify"], {})).toMatchObject({ env: "production", rest: ["--minify"] });
    expect(parseArgs(["-e=production"], {})).toMatchObject({ env: "production", rest: [] });
    expect(parseArgs([], { CLOUDFLARE_ENV: "production" })).toMatchObject({ env: "production" });
    expect(parseArgs(["--dry-run"], {})).toMatchObject({ env: "", dryRun: true });
    expect(parseArgs(["--secrets-file", ".secrets"], {})).toMatchObject({ secretsFile: true });
    expect(parseArgs(["--prepare-only", "--env", "production"], {})).toMatchObject({
      env: "production",
      prepareOnly: true,
      rest: [],
    });
  });
});
