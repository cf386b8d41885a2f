/**
 * Starts the real `wrangler dev` for end-to-end tests, the reliability suite and the bench, isolated
 * from the developer's setup: a free port, a fresh state directory (migrated first: a copy of one
 * that wrangler migrated once, see copyMigratedState) and its own secrets, so that it never reads
 * or writes .wrangler/state or .dev.vars in the repo. The bench (plain Node) imports this file as it
 * is: Node 22.18+ strips the types.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { cp, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify, stripVTControlCharacters } from "node:util";

const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "node_modules", ".bin");
const WRANGLER = path.join(BIN, "wrangler");
const MIGRATIONS = path.join(ROOT, "migrations");
/** Migrated state directories to copy (see copyMigratedState); node_modules/.cache goes with `npm ci`. */
const TEMPLATES = path.join(ROOT, "node_modules", ".cache", "postback-hub-e2e");
const START_TIMEOUT_MS = 90_000;
const STOP_TIMEOUT_MS = 10_000;
const INTERRUPTS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

export interface WranglerDev {
  baseUrl: string;
  /** Its --persist-to directory (local D1, Durable Objects, queues): the bench seeds D1 there. */
  stateDir: string;
  adminToken: string;
  /** Everything wrangler printed so far, stdout and stderr interleaved. */
  log(): string;
  /** Kills wrangler and every workerd it started (SIGKILL by default: a crash), keeping the state. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts wrangler dev again on the same port and state directory. */
  restart(): Promise<void>;
  /** Stops wrangler and every workerd it started, then deletes the state directory. */
  stop(): Promise<void>;
  /** Runs the Worker's scheduled handler for `cron`, as the deployed cron trigger would (wrangler dev never does). */
  runCron(cron: string): Promise<void>;
  /** The process group of the running wrangler (and its workerd); it changes with a restart. */
  pid(): number | undefined;
  /** Calls `listener(text)` for everything wrangler prints from now on; returns the unsubscribe. */
  onOutput(listener: (text: string) => void): () => void;
}

export interface WranglerDevOptions {
  /** Vars to override, e.g. shorter timers for a test that cannot wait minutes. */
  vars?: Record<string, string>;
  /** Another wrangler configuration (the bench's workers); the hub's wrangler.toml by default. */
  config?: string;
  /** Applies the D1 migrations first (default); a configuration without D1 has none to apply. */
  migrate?: boolean;
  /** More `wrangler dev` arguments, e.g. `["--inspector-port", "9230"]`. */
  args?: string[];
  /** Names the state directory and the errors (default "e2e"). */
  label?: string;
}

export async function startWranglerDev(options: WranglerDevOptions = {}): Promise<WranglerDev> {
  const secrets = {
    ADMIN_TOKEN: `e2e-admin-${randomBytes(16).toString("hex")}`,
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
  };
  // As .dev.vars.example sets it: the e2e partner is a server on 127.0.0.1 over http.
  const vars = { ALLOW_INSECURE_PARTNER_URLS: "true", ...options.vars };
  const label = options.label ?? "e2e";
  const configArgs = options.config ? ["--config", options.config] : [];
  const stateDir = await mkdtemp(path.join(tmpdir(), `postback-hub-${label}-`));
  const envFile = path.join(stateDir, "e2e.env");
  const settings = { ...secrets, ...vars };
  await writeFile(
    envFile,
    Object.entries(settings)
      .map(([name, value]) => `${name}=${value}\n`)
      .join(""),
  );
  // Wrangler prefers values from its own process.env over the env file (the config declares
  // [secrets]), so the test's settings go in both: the file keeps .dev.vars out, the environment
  // wins over anything a developer exported in their shell.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...settings,
    // node_modules/.bin/wrangler runs `#!/usr/bin/env node`; the project's Node 22 must win over the system's.
    PATH: `${BIN}${path.delimiter}${process.env.PATH ?? ""}`,
    CI: "true",
    WRANGLER_SEND_METRICS: "false",
    // When false, wrangler ignores --env-file altogether and starts without the secrets.
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
  };
  // Would select a deploy environment with other bindings and queue names.
  delete env.CLOUDFLARE_ENV;

  // The hub's [assets] directory holds /docs's bundle, copied from node_modules (a no-op when in place).
  await promisify(execFile)(process.execPath, [path.join(ROOT, "scripts", "docs-assets.mjs")]);

  if (options.migrate ?? true) {
    try {
      if (options.config === undefined) await copyMigratedState(stateDir, env);
      else await applyMigrations(stateDir, configArgs, env);
    } catch (error) {
      await rm(stateDir, { recursive: true, force: true });
      throw new Error(`${label}: applying the D1 migrations failed: ${describeExecError(error)}`);
    }
  }

  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const args = [
    "dev",
    ...configArgs,
    "--ip",
    "127.0.0.1",
    "--port",
    String(port),
    "--persist-to",
    stateDir,
    "--env-file",
    envFile,
    "--show-interactive-dev-session=false",
    ...(options.args ?? []),
  ];
  let output = "";
  const listeners = new Set<(text: string) => void>();
  // Wrangler colours some messages whatever FORCE_COLOR or NO_COLOR say; error messages read better without.
  const capture = (chunk: Buffer) => {
    const text = stripVTControlCharacters(chunk.toString("utf8"));
    output += text;
    for (const listener of listeners) listener(text);
  };
  let child: ChildProcess | undefined;
  let forgetOnInterrupt = () => {};

  const launch = async () => {
    // Detached: wrangler gets its own process group, so that one signal reaches the workerd it spawns.
    const started = spawn(WRANGLER, args, { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    started.stdout?.on("data", capture);
    started.stderr?.on("data", capture);
    forgetOnInterrupt = killOnInterrupt(started.pid);
    await waitForHealth(label, baseUrl, started, () => output);
  };
  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    forgetOnInterrupt();
    await killGroup(child?.pid, signal);
    child = undefined;
  };
  const stop = async () => {
    await kill("SIGTERM");
    await rm(stateDir, { recursive: true, force: true });
  };

  try {
    await launch();
  } catch (error) {
    await stop();
    throw error;
  }
  const runCron = async (cron: string) => {
    const response = await fetch(`${baseUrl}/cdn-cgi/local/scheduled?cron=${encodeURIComponent(cron)}`, {
      signal: AbortSignal.timeout(30_000),
    });
    const body = await response.text();
    if (response.status !== 200)
      throw new Error(`the scheduled handler for "${cron}" failed: ${response.status} ${body}`);
  };
  return {
    baseUrl,
    stateDir,
    adminToken: secrets.ADMIN_TOKEN,
    log: () => output,
    kill,
    restart: launch,
    stop,
    runCron,
    pid: () => child?.pid,
    onOutput(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

function applyMigrations(stateDir: string, configArgs: string[], env: NodeJS.ProcessEnv): Promise<unknown> {
  return promisify(execFile)(
    WRANGLER,
    ["d1", "migrations", "apply", "DB", "--local", "--persist-to", stateDir, ...configArgs],
    { cwd: ROOT, env },
  );
}

/**
 * `wrangler d1 migrations apply` is a whole wrangler and Miniflare start (about 8 s on a 2-core
 * machine) and makes the same state directory every time. So wrangler applies the migrations once
 * per set of migrations, wrangler.toml and wrangler version, into a template under
 * node_modules/.cache that each hub's fresh state directory is then copied from (milliseconds).
 * A template is complete or absent: it is made aside and renamed into place, so that two processes
 * making it at once both end up with one of the two.
 */
async function copyMigratedState(stateDir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const template = path.join(TEMPLATES, await templateKey());
  if (!existsSync(template)) {
    await mkdir(TEMPLATES, { recursive: true });
    const fresh = await mkdtemp(`${template}.tmp-`);
    try {
      await applyMigrations(fresh, [], env);
      await rename(fresh, template);
    } catch (error) {
      await rm(fresh, { recursive: true, force: true });
      if (!existsSync(template)) throw error; // otherwise another process renamed its template first
    }
  }
  await cp(template, stateDir, { recursive: true });
}

/** Whatever decides what the migrated state holds: the migrations, the hub's config, wrangler's version. */
async function templateKey(): Promise<string> {
  const hash = createHash("sha256");
  const wrangler = JSON.parse(await readFile(path.join(ROOT, "node_modules", "wrangler", "package.json"), "utf8"));
  hash.update(`wrangler ${String(wrangler.version)}\0`);
  hash.update(await readFile(path.join(ROOT, "wrangler.toml")));
  for (const name of (await readdir(MIGRATIONS)).sort()) {
    hash.update(`\0${name}\0`);
    hash.update(await readFile(path.join(MIGRATIONS, name)));
  }
  return `migrated-${hash.digest("hex").slice(0, 16)}`;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("could not read the free port");
  return address.port;
}

async function waitForHealth(label: string, baseUrl: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(
        `wrangler dev (${label}) exited (${child.exitCode ?? child.signalCode}) before it was healthy:\n${log()}`,
      );
    }
    try {
      const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
      const body = await response.text();
      if (response.status === 200) return;
      last = `${response.status} ${body}`;
    } catch (error) {
      last = String(error);
    }
    await sleep(200);
  }
  throw new Error(`wrangler dev (${label}) was not healthy within ${START_TIMEOUT_MS} ms (last: ${last}):\n${log()}`);
}

/**
 * A detached group outlives an interrupted run (Ctrl-C reaches only the foreground group, and a
 * signal skips afterAll), so it is killed on the way out, and the signal raised again. Its state
 * directory stays behind in the OS temp dir: the dying workerd may still be writing to it.
 */
function killOnInterrupt(pid: number | undefined): () => void {
  if (pid === undefined) return () => {};
  const onExit = () => signalGroup(pid, "SIGKILL");
  const onSignal = (signal: NodeJS.Signals) => {
    onExit();
    process.kill(process.pid, signal);
  };
  process.once("exit", onExit);
  for (const signal of INTERRUPTS) process.once(signal, onSignal);
  return () => {
    process.off("exit", onExit);
    for (const signal of INTERRUPTS) process.off(signal, onSignal);
  };
}

/** `signal` to the whole group, SIGKILL if it lingers; returns once no process of the group is left. */
async function killGroup(pid: number | undefined, signal: NodeJS.Signals): Promise<void> {
  if (pid === undefined) return;
  signalGroup(pid, signal);
  if (await groupGone(pid)) return;
  signalGroup(pid, "SIGKILL");
  if (!(await groupGone(pid))) throw new Error(`wrangler dev's process group ${pid} survived SIGKILL`);
}

/** Polls with signal 0, which only checks that some process of the group (workerd included) is alive. */
async function groupGone(pid: number): Promise<boolean> {
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (signalGroup(pid, 0)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

function signalGroup(pid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false; // ESRCH: the group is empty
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describeExecError(error: unknown): string {
  if (error && typeof error === "object" && "stderr" in error && "stdout" in error) {
    return `${String(error)}\n${String(error.stdout)}\n${String(error.stderr)}`;
  }
  return String(error);
}
