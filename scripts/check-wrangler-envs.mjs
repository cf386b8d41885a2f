#!/usr/bin/env node
// `npm run check:wrangler-envs` (part of `npm run check`): every var, secret and binding of
// wrangler.toml's top level must exist in each [env.*] block, because wrangler does not inherit
// them into environments: a var left out is undefined in production and the hub refuses to start,
// a queue consumer left out means its messages are never processed. And what names an account
// resource (a queue, a D1 database, a KV namespace, an R2 bucket, a rate limit's namespace) must
// differ between the top level and each environment, or the two would share it. Settings that
// differ (batch sizes, retries, limits, a Durable Object's class) are printed as warnings: they may
// be deliberate, but usually one block was edited and the other forgotten.
//
// Usage: node scripts/check-wrangler-envs.mjs [path/to/wrangler.toml]   (exit 1 on any error)
import { readFileSync } from "node:fs";
import path from "node:path";
import { parse } from "smol-toml";

/**
 * The binding lists wrangler does not inherit, each keyed by the field that names a binding:
 * `distinct` fields name account resources, which no two environments may share; `same` fields are
 * settings expected to match (a difference is a warning).
 */
export const BINDING_LISTS = [
  { path: "durable_objects.bindings", key: "name", same: ["class_name", "script_name"] },
  { path: "d1_databases", key: "binding", distinct: ["database_name", "database_id"], same: ["migrations_dir"] },
  { path: "kv_namespaces", key: "binding", distinct: ["id"] },
  { path: "r2_buckets", key: "binding", distinct: ["bucket_name"] },
  { path: "queues.producers", key: "binding", distinct: ["queue"], same: ["delivery_delay"] },
  { path: "ratelimits", key: "name", distinct: ["namespace_id"], same: ["simple"] },
  { path: "services", key: "binding", same: ["service", "entrypoint"] },
  { path: "analytics_engine_datasets", key: "binding" },
  { path: "hyperdrive", key: "binding" },
  { path: "vectorize", key: "binding" },
  { path: "workflows", key: "binding", same: ["class_name"] },
  { path: "send_email", key: "name" },
  { path: "mtls_certificates", key: "binding" },
  { path: "dispatch_namespaces", key: "binding" },
  { path: "secrets_store_secrets", key: "binding" },
];

/** Single-binding tables wrangler does not inherit. */
export const SINGLE_BINDINGS = ["ai", "browser", "images", "version_metadata"];

/** A queue consumer's settings; they describe how the hub copes with trouble, so they should match. */
const CONSUMER_SETTINGS = ["max_batch_size", "max_batch_timeout", "max_retries", "max_concurrency", "retry_delay"];

const at = (object, dotted) => dotted.split(".").reduce((value, part) => value?.[part], object);
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const show = (value) => JSON.stringify(value);

/**
 * Checks every [env.*] of a parsed wrangler configuration against its top level.
 * @returns {{ errors: string[], warnings: string[], environments: string[] }}
 */
export function checkEnvironments(config) {
  const errors = [];
  const warnings = [];
  const environments = Object.keys(config.env ?? {});
  for (const name of environments) {
    const env = config.env[name];
    const where = `env.${name}`;
    checkNames(config, env, where, errors);
    checkVars(config, env, where, errors);
    checkSecrets(config, env, where, errors);
    for (const list of BINDING_LISTS) checkBindingList(config, env, where, list, errors, warnings);
    for (const field of SINGLE_BINDINGS) checkSingleBinding(config, env, where, field, errors);
    checkQueues(config, env, where, errors, warnings);
  }
  checkResourcesApart(config, environments, errors);
  return { errors, warnings, environments };
}

/** The account resources a block names: [what, value, by], e.g. ["queue", "postback-events", "producer EVENTS"]. */
function resourcesOf(block) {
  const resources = [];
  for (const list of BINDING_LISTS) {
    for (const item of at(block, list.path) ?? []) {
      for (const field of list.distinct ?? []) {
        if (item[field] === undefined) continue;
        // A queue is one resource whichever list names it.
        const what = list.path.startsWith("queues.") ? "queue" : `${list.path} ${field}`;
        resources.push([what, item[field], `${list.key} ${item[list.key]}`]);
      }
    }
  }
  for (const consumer of block.queues?.consumers ?? []) {
    resources.push(["queue", consumer.queue, "a consumer"]);
    if (consumer.dead_letter_queue !== undefined) {
      resources.push(["queue", consumer.dead_letter_queue, `the dead_letter_queue of ${consumer.queue}`]);
    }
  }
  return resources;
}

/**
 * No resource named by two blocks: two environments on one queue would steal each other's
 * messages (a queue has one Worker consumer), on one database or bucket would mix their data, and on
 * one rate limit namespace would share its counters. Within a block, sharing is allowed.
 */
function checkResourcesApart(config, environments, errors) {
  const users = new Map();
  const blocks = [["the top level", config], ...environments.map((name) => [`env.${name}`, config.env[name]])];
  for (const [where, block] of blocks) {
    for (const [what, value, by] of resourcesOf(block)) {
      const key = `${what} ${show(value)}`;
      if (!users.has(key)) users.set(key, new Map());
      const byBlock = users.get(key);
      if (!byBlock.has(where)) byBlock.set(where, by);
    }
  }
  for (const [key, byBlock] of users) {
    if (byBlock.size < 2) continue;
    const named = [...byBlock].map(([where, by]) => `${where} (${by})`).join(" and ");
    errors.push(`${key}: named by ${named}; each environment needs its own`);
  }
}

function checkNames(config, env, where, errors) {
  if (env.name !== undefined && env.name === config.name) {
    errors.push(`${where}.name: "${env.name}" is the top level's Worker name; each environment deploys its own Worker`);
  }
}

function checkVars(config, env, where, errors) {
  const top = config.vars ?? {};
  const own = env.vars ?? {};
  for (const key of Object.keys(top)) {
    if (!(key in own)) errors.push(`${where}.vars.${key}: missing (the top level sets ${show(top[key])})`);
  }
  for (const key of Object.keys(own)) {
    if (!(key in top)) {
      errors.push(
        `${where}.vars.${key}: not at the top level, so wrangler dev, the tests and the Env type never see it`,
      );
    }
  }
}

function checkSecrets(config, env, where, errors) {
  const top = config.secrets?.required ?? [];
  const own = env.secrets?.required ?? [];
  for (const secret of top) {
    if (!own.includes(secret))
      errors.push(`${where}.secrets.required: "${secret}" missing (the top level requires it)`);
  }
  for (const secret of own) {
    if (!top.includes(secret)) errors.push(`${where}.secrets.required: "${secret}" is not required at the top level`);
  }
}

function checkBindingList(config, env, where, list, errors, warnings) {
  const top = at(config, list.path) ?? [];
  const own = at(env, list.path) ?? [];
  const byName = new Map(own.map((item) => [item[list.key], item]));
  for (const item of top) {
    const name = item[list.key];
    const label = `${where}.${list.path} ${list.key} = "${name}"`;
    const counterpart = byName.get(name);
    if (counterpart === undefined) {
      errors.push(`${label}: missing (the top level binds it)`);
      continue;
    }
    for (const field of list.same ?? []) {
      if (!same(item[field], counterpart[field])) {
        warnings.push(`${label}: ${field} is ${show(counterpart[field])}, the top level's is ${show(item[field])}`);
      }
    }
  }
  const topNames = new Set(top.map((item) => item[list.key]));
  for (const item of own) {
    if (!topNames.has(item[list.key])) {
      errors.push(`${where}.${list.path} ${list.key} = "${item[list.key]}": not at the top level`);
    }
  }
}

function checkSingleBinding(config, env, where, field, errors) {
  if (config[field] !== undefined && env[field] === undefined) errors.push(`${where}.${field}: missing`);
  if (config[field] === undefined && env[field] !== undefined) errors.push(`${where}.${field}: not at the top level`);
}

/**
 * Queue consumers have no binding name, so each top-level queue is matched to its environment's
 * counterpart through the producers (same binding) and then the dead-letter queues of matched
 * consumers. Every top-level consumer needs a consumer of the counterpart queue, with the matching
 * dead-letter queue; and every var whose value is a top-level queue's name (the queue handler tells
 * batches apart by them) must name the counterpart.
 */
function checkQueues(config, env, where, errors, warnings) {
  const topConsumers = config.queues?.consumers ?? [];
  const ownConsumers = env.queues?.consumers ?? [];
  const counterpart = new Map();
  const ownProducers = new Map((env.queues?.producers ?? []).map((p) => [p.binding, p.queue]));
  for (const producer of config.queues?.producers ?? []) {
    const queue = ownProducers.get(producer.binding);
    if (queue !== undefined) counterpart.set(producer.queue, queue);
  }
  const ownByQueue = new Map(ownConsumers.map((c) => [c.queue, c]));
  // Dead-letter queues chain (a DLQ's consumer may have its own DLQ): follow links until none is new.
  for (let grew = true; grew; ) {
    grew = false;
    for (const consumer of topConsumers) {
      const own = ownByQueue.get(counterpart.get(consumer.queue));
      const dlq = consumer.dead_letter_queue;
      if (own?.dead_letter_queue !== undefined && dlq !== undefined && !counterpart.has(dlq)) {
        counterpart.set(dlq, own.dead_letter_queue);
        grew = true;
      }
    }
  }

  const matched = new Set();
  for (const consumer of topConsumers) {
    const label = `${where}.queues.consumers`;
    const queue = counterpart.get(consumer.queue);
    if (queue === undefined) {
      errors.push(
        `${label}: no counterpart of the top level's consumer of "${consumer.queue}" (no producer with the same binding, and no matching consumer names it as its dead_letter_queue)`,
      );
      continue;
    }
    const own = ownByQueue.get(queue);
    if (own === undefined) {
      errors.push(`${label}: missing a consumer of "${queue}" (the top level consumes "${consumer.queue}")`);
      continue;
    }
    matched.add(queue);
    if (consumer.dead_letter_queue !== undefined && own.dead_letter_queue === undefined) {
      errors.push(
        `${label} queue = "${queue}": no dead_letter_queue (the top level's goes to "${consumer.dead_letter_queue}")`,
      );
    }
    for (const field of CONSUMER_SETTINGS) {
      if (!same(consumer[field], own[field])) {
        warnings.push(
          `${label} queue = "${queue}": ${field} is ${show(own[field])}, the top level's is ${show(consumer[field])}`,
        );
      }
    }
  }
  for (const own of ownConsumers) {
    if (!matched.has(own.queue)) {
      errors.push(`${where}.queues.consumers queue = "${own.queue}": no counterpart at the top level`);
    }
  }

  for (const [key, value] of Object.entries(config.vars ?? {})) {
    const queue = counterpart.get(value);
    const own = env.vars?.[key];
    if (queue !== undefined && own !== undefined && own !== queue) {
      errors.push(`${where}.vars.${key}: ${show(own)}, but this environment's counterpart of "${value}" is "${queue}"`);
    }
  }
}

/** Reads and checks a wrangler.toml; prints the outcome. Answers the process's exit code. */
export function main(configPath) {
  const config = parse(readFileSync(configPath, "utf8"));
  const { errors, warnings, environments } = checkEnvironments(config);
  const file = path.relative(process.cwd(), configPath) || configPath;
  for (const warning of warnings) console.warn(`⚠ ${file}: ${warning}`);
  for (const error of errors) console.error(`✗ ${file}: ${error}`);
  if (errors.length > 0) {
    console.error(
      `✗ ${file}: ${errors.length} problem${errors.length === 1 ? "" : "s"} in [env.*]; bindings and vars do not inherit into environments, so each block repeats them`,
    );
    return 1;
  }
  const envs = environments.length ? environments.map((e) => `[env.${e}]`).join(", ") : "no [env.*] blocks";
  console.log(`✓ ${file}: ${envs} repeat every var, secret and binding of the top level, with their own resources`);
  return 0;
}

if (import.meta.main) {
  const root = path.resolve(import.meta.dirname, "..");
  process.exitCode = main(path.resolve(process.argv[2] ?? path.join(root, "wrangler.toml")));
}
