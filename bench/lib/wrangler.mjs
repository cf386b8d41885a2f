// Starts a real `wrangler dev` for the bench, as test/e2e/wrangler-dev.ts does for the e2e tests:
// a free port, a fresh --persist-to directory (D1 migrated first when asked), secrets in an
// --env-file, and its own process group so that one signal stops wrangler and its workerd.
import { execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify, stripVTControlCharacters } from "node:util";

export const ROOT = path.resolve(import.meta.dirname, "../..");
const BIN = path.join(ROOT, "node_modules", ".bin");
const WRANGLER = path.join(BIN, "wrangler");
const START_TIMEOUT_MS = 90_000;

const groups = new Set();
process.once("exit", () => {
  for (const pid of groups) signalGroup(pid, "SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.once(signal, () => {
    for (const pid of groups) signalGroup(pid, "SIGKILL");
    process.exit(130);
  });
}

/**
 * @param {{ label: string, config?: string, migrate?: boolean, settings?: Record<string, string>, args?: string[] }} options
 *   `args`: more `wrangler dev` arguments, e.g. `["--inspector-port", "9230"]`.
 */
export async function startWranglerDev({ label, config, migrate = false, settings = {}, args: extraArgs = [] }) {
  const stateDir = await mkdtemp(path.join(tmpdir(), `postback-hub-bench-${label}-`));
  const envFile = path.join(stateDir, "bench.env");
  await writeFile(
    envFile,
    Object.entries(settings)
      .map(([name, value]) => `${name}=${value}\n`)
      .join(""),
  );
  const env = {
    ...process.env,
    ...settings,
    PATH: `${BIN}${path.delimiter}${process.env.PATH ?? ""}`,
    CI: "true",
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_LOAD_DEV_VARS_FROM_DOT_ENV: "true",
  };
  delete env.CLOUDFLARE_ENV;
  const configArgs = config ? ["--config", config] : [];
  if (migrate) {
    await promisify(execFile)(
      WRANGLER,
      ["d1", "migrations", "apply", "DB", "--local", "--persist-to", stateDir, ...configArgs],
      { cwd: ROOT, env },
    );
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
    ...extraArgs,
  ];
  const child = spawn(WRANGLER, args, { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  if (child.pid !== undefined) groups.add(child.pid);
  let output = "";
  const listeners = new Set();
  const capture = (chunk) => {
    const text = stripVTControlCharacters(chunk.toString("utf8"));
    output += text;
    for (const listener of listeners) listener(text);
  };
  child.stdout.on("data", capture);
  child.stderr.on("data", capture);

  const stop = async () => {
    if (child.pid !== undefined) {
      await killGroup(child.pid);
      groups.delete(child.pid);
    }
    await rm(stateDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`wrangler dev (${label}) exited before it was healthy:\n${output}`);
    }
    try {
      const response = await fetch(`${baseUrl}/health`, { signal: AbortSignal.timeout(5_000) });
      await response.text();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`wrangler dev (${label}) was not healthy within ${START_TIMEOUT_MS} ms:\n${output}`);
    }
    await sleep(250);
  }
  return {
    baseUrl,
    stateDir,
    pid: child.pid,
    log: () => output,
    /**
     * CPU time (user + system, ms) its workerd processes have used so far; null off Linux. Time of a
     * workerd that exited meanwhile (wrangler restarts it when a source file changes) is gone from
     * the sum: workerdCpuByPid shows that.
     */
    workerdCpuMs: () => (child.pid === undefined ? null : groupCpuMs(child.pid, "workerd")),
    /** The same, per process id. */
    workerdCpuByPid: () => (child.pid === undefined ? null : groupCpuByPid(child.pid, "workerd")),
    /** Calls `listener(text)` for everything wrangler prints from now on; returns the unsubscribe. */
    onOutput(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    stop,
  };
}

export function newSecrets() {
  return {
    ADMIN_TOKEN: `bench-admin-${randomBytes(16).toString("hex")}`,
    ENCRYPTION_KEY: randomBytes(32).toString("base64"),
  };
}

let clockTicksPerSecond;

/**
 * The CPU time (user + system, ms) of each process in process group `pgid` named `command`, by
 * pid, from /proc/<pid>/stat, in clock ticks (usually 10 ms each); null where there is no /proc.
 */
export function groupCpuByPid(pgid, command) {
  if (process.platform !== "linux") return null;
  clockTicksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  const byPid = new Map();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // "pid (comm) state ppid pgrp … utime stime …": comm may hold spaces, so split after its ")".
    const close = stat.lastIndexOf(")");
    const comm = stat.slice(stat.indexOf("(") + 1, close);
    const fields = stat.slice(close + 2).split(" ");
    if (Number(fields[2]) !== pgid || comm !== command) continue;
    byPid.set(Number(entry), ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicksPerSecond);
  }
  return byPid;
}

/** groupCpuByPid summed over the processes. */
export function groupCpuMs(pgid, command) {
  const byPid = groupCpuByPid(pgid, command);
  return byPid === null ? null : [...byPid.values()].reduce((sum, ms) => sum + ms, 0);
}

export async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  await once(server, "close");
  if (address === null || typeof address === "string") throw new Error("could not read a free port");
  return address.port;
}

async function killGroup(pid) {
  signalGroup(pid, "SIGTERM");
  if (await groupGone(pid, 10_000)) return;
  signalGroup(pid, "SIGKILL");
  if (!(await groupGone(pid, 10_000))) throw new Error(`process group ${pid} survived SIGKILL`);
}

async function groupGone(pid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (signalGroup(pid, 0)) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
