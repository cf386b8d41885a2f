#!/usr/bin/env node
// `npm run deploy` (`npm run deploy -- --env production`): everything a deploy needs, in order,
// and nothing twice. Each step asks the account first, so a later deploy only migrates and deploys.
//   1. the required secrets are set (wrangler refuses to deploy a Worker without them, and cannot
//      set them on a Worker that does not exist yet: `wrangler secret put` creates it);
//   2. every queue that is only consumed (the dead-letter queues) exists: wrangler 4 creates a
//      producer binding's queue itself during the deploy, but refuses to deploy a consumer of a
//      queue that does not exist and has no producer in the configuration;
//   3. every D1 database exists (wrangler deploy would create it too, but after the migrations
//      that step 4 must apply first);
//   4. the remote D1 migrations are applied, before code that reads the new schema goes live;
//   5. every R2 bucket exists (the archive, docs/archive.md): a binding to a missing bucket fails the
//      deploy, and the cron would fail to write to it;
//   6. `wrangler deploy`, which finds the database, queues and buckets by name (no ids in wrangler.toml).
// Any other argument goes on to `wrangler deploy`; with `--dry-run`, only step 6 runs (no account);
// with `--prepare-only`, steps 1 to 5 (CI runs them before cloudflare/wrangler-action deploys).
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "smol-toml";

const ROOT = path.resolve(import.meta.dirname, "..");
const WRANGLER = process.env.WRANGLER_BIN ?? path.join(ROOT, "node_modules", ".bin", "wrangler");

/** Splits this script's arguments into the environment (`--env`, `-e`, or CLOUDFLARE_ENV) and the rest. */
export function parseArgs(argv, environment = process.env) {
  let env = environment.CLOUDFLARE_ENV ?? "";
  let prepareOnly = false;
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const inline = /^(?:--env|-e)=(.*)$/.exec(arg);
    if (inline) env = inline[1] ?? "";
    else if (arg === "--env" || arg === "-e") env = argv[++i] ?? "";
    else if (arg === "--prepare-only") prepareOnly = true;
    else rest.push(arg);
  }
  return {
    env,
    rest,
    prepareOnly,
    dryRun: rest.includes("--dry-run"),
    secretsFile: rest.some((a) => a === "--secrets-file" || a.startsWith("--secrets-file=")),
  };
}

/** The configuration block wrangler deploys for `env` ("" for the top level). */
export function blockFor(config, env) {
  if (env === "") return config;
  const block = config.env?.[env];
  if (block === undefined) throw new Error(`wrangler.toml has no [env.${env}]`);
  return block;
}

/**
 * What the block needs on the account before `wrangler deploy`: the queues wrangler will not create
 * (consumed or dead-letter queues without a producer binding), its D1 databases, its R2 buckets,
 * its secrets.
 */
export function resourcesOf(block) {
  const produced = new Set((block.queues?.producers ?? []).map((producer) => producer.queue));
  const queues = new Set();
  for (const consumer of block.queues?.consumers ?? []) {
    queues.add(consumer.queue);
    if (consumer.dead_letter_queue) queues.add(consumer.dead_letter_queue);
  }
  return {
    queues: [...queues].filter((queue) => !produced.has(queue)),
    databases: (block.d1_databases ?? []).map((d) => ({
      binding: d.binding,
      name: d.database_name,
      jurisdiction: d.jurisdiction,
      migrates: d.migrations_dir !== undefined,
    })),
    buckets: (block.r2_buckets ?? []).map((bucket) => ({
      name: bucket.bucket_name,
      jurisdiction: bucket.jurisdiction,
    })),
    secrets: block.secrets?.required ?? [],
  };
}

/** Runs wrangler; answers its exit code and output. `show` streams the output instead of collecting it. */
function wrangler(args, { show = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(WRANGLER, args, {
      cwd: ROOT,
      stdio: show ? "inherit" : ["ignore", "pipe", "pipe"],
      env: { ...process.env, PATH: `${path.dirname(WRANGLER)}${path.delimiter}${process.env.PATH ?? ""}` },
    });
    let output = "";
    child.stdout?.on("data", (chunk) => {
      output += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      output += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? 1, output }));
  });
}

async function mustSucceed(what, args) {
  const { code, output } = await wrangler(args);
  if (code !== 0) throw new Error(`${what} failed (wrangler ${args.join(" ")}):\n${output}`);
  return output;
}

/** The JSON a wrangler command printed (after any banner or warning lines). */
function jsonIn(output) {
  const start = output.search(/^[[{]/m);
  if (start < 0) throw new Error(`no JSON in wrangler's output:\n${output}`);
  return JSON.parse(output.slice(start));
}

const envArgs = (env) => (env === "" ? [] : ["--env", env]);
const log = (line) => console.log(`• ${line}`);

/** The required secrets the deployed Worker lacks; all of them when the Worker does not exist. */
async function missingSecrets(required, env) {
  if (required.length === 0) return [];
  const { code, output } = await wrangler(["secret", "list", "--format", "json", ...envArgs(env)]);
  if (code !== 0) {
    if (/10007|not found|does not exist/i.test(output)) return required;
    throw new Error(`listing the Worker's secrets failed:\n${output}`);
  }
  const have = new Set(jsonIn(output).map((secret) => secret.name));
  return required.filter((name) => !have.has(name));
}

async function queueExists(name, env) {
  const { code, output } = await wrangler(["queues", "info", name, ...envArgs(env)]);
  if (code === 0) return true;
  if (output.includes(`Queue "${name}" does not exist`)) return false;
  throw new Error(`looking up queue "${name}" failed:\n${output}`);
}

/** The R2 buckets the account holds in `jurisdiction` (default: none), by name. */
async function bucketNames(jurisdiction, env) {
  const where = jurisdiction ? ["--jurisdiction", jurisdiction] : [];
  // `r2 bucket list`, not `info`: one call for them all, and `info` also asks GraphQL for metrics.
  const output = await mustSucceed("listing the R2 buckets", ["r2", "bucket", "list", ...where, ...envArgs(env)]);
  return [...output.matchAll(/^name:\s+(\S+)\s*$/gm)].map((match) => match[1]);
}

export async function deploy(argv) {
  const { env, rest, dryRun, secretsFile, prepareOnly } = parseArgs(argv);
  const target = env === "" ? "the top-level configuration" : `[env.${env}]`;
  // `--env=` names the top level explicitly, which is what wrangler asks for when environments exist.
  const deployArgs = ["deploy", env === "" ? "--env=" : `--env=${env}`, ...rest];
  if (dryRun) return (await wrangler(deployArgs, { show: true })).code;

  const config = parse(readFileSync(path.join(ROOT, "wrangler.toml"), "utf8"));
  const block = blockFor(config, env);
  const { queues, databases, buckets, secrets } = resourcesOf(block);
  const workerName = block.name ?? config.name;
  log(`deploying ${target} as the Worker "${workerName}"`);

  const [missing, queueStates, existingDatabases, existingBuckets] = await Promise.all([
    secretsFile ? [] : missingSecrets(secrets, env),
    Promise.all(queues.map((name) => queueExists(name, env))),
    databases.length === 0
      ? []
      : mustSucceed("listing the D1 databases", ["d1", "list", "--json", ...envArgs(env)]).then((output) =>
          jsonIn(output).map((db) => db.name),
        ),
    Promise.all(
      [...new Set(buckets.map((bucket) => bucket.jurisdiction ?? ""))].map(async (jurisdiction) =>
        (await bucketNames(jurisdiction, env)).map((name) => `${jurisdiction}/${name}`),
      ),
    ).then((lists) => new Set(lists.flat())),
  ]);

  if (missing.length > 0) {
    const flag = env === "" ? "" : ` --env ${env}`;
    console.error(
      `✗ the Worker "${workerName}" lacks the secret${missing.length === 1 ? "" : "s"} ${missing.join(", ")}; set ${missing.length === 1 ? "it" : "each"} first (this also creates the Worker on a first deploy), then run this again:\n` +
        missing.map((name) => `    npx wrangler secret put ${name}${flag}`).join("\n") +
        "\n  (see docs/deploying.md: ADMIN_TOKEN from `openssl rand -hex 32`, ENCRYPTION_KEY from `openssl rand -base64 32`, kept safe)",
    );
    return 1;
  }

  for (const [i, name] of queues.entries()) {
    if (queueStates[i]) continue;
    log(`creating the queue "${name}"`);
    await mustSucceed(`creating the queue "${name}"`, ["queues", "create", name, ...envArgs(env)]);
  }
  for (const db of databases) {
    if (existingDatabases.includes(db.name)) continue;
    log(`creating the D1 database "${db.name}"`);
    const where = db.jurisdiction ? ["--jurisdiction", db.jurisdiction] : [];
    await mustSucceed(`creating the D1 database "${db.name}"`, ["d1", "create", db.name, ...where, ...envArgs(env)]);
  }
  for (const db of databases.filter((d) => d.migrates)) {
    log(`applying the D1 migrations to "${db.name}" (remote)`);
    const { code } = await wrangler(["d1", "migrations", "apply", db.binding, "--remote", ...envArgs(env)], {
      show: true,
    });
    if (code !== 0) {
      console.error(`✗ the migrations of "${db.name}" failed; nothing was deployed`);
      return code;
    }
  }
  for (const bucket of buckets) {
    if (existingBuckets.has(`${bucket.jurisdiction ?? ""}/${bucket.name}`)) continue;
    log(`creating the R2 bucket "${bucket.name}"`);
    const where = bucket.jurisdiction ? ["--jurisdiction", bucket.jurisdiction] : [];
    await mustSucceed(`creating the R2 bucket "${bucket.name}"`, [
      "r2",
      "bucket",
      "create",
      bucket.name,
      ...where,
      ...envArgs(env),
    ]);
  }
  if (prepareOnly) {
    log(`${target} is ready for \`wrangler deploy${env === "" ? "" : ` --env ${env}`}\``);
    return 0;
  }
  log(`wrangler ${deployArgs.join(" ")}`);
  return (await wrangler(deployArgs, { show: true })).code;
}

if (import.meta.main) {
  deploy(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      console.error(`✗ ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = 1;
    },
  );
}
