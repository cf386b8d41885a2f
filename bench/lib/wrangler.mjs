// The bench's `wrangler dev`: the one test/e2e/wrangler-dev.ts starts for the e2e tests (a free
// port, a fresh --persist-to directory migrated first, its own secrets, its own process group),
// imported as TypeScript (Node 22.18+ strips the types), plus workerd's CPU time from /proc.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { freePort, sleep, startWranglerDev as startDev } from "../../test/e2e/wrangler-dev.ts";

export { freePort, sleep };

export const ROOT = path.resolve(import.meta.dirname, "../..");

/**
 * @param {import("../../test/e2e/wrangler-dev.ts").WranglerDevOptions} options
 *   `label` names it, `config` picks a bench worker, `migrate: false` for one without D1, `args`
 *   adds `wrangler dev` arguments.
 */
export async function startWranglerDev(options) {
  const dev = await startDev(options);
  const group = () => dev.pid();
  return {
    ...dev,
    /**
     * CPU time (user + system, ms) its workerd processes have used so far; null off Linux. Time of a
     * workerd that exited meanwhile (wrangler restarts it when a source file changes) is gone from
     * the sum: workerdCpuByPid shows that.
     */
    workerdCpuMs: () => (group() === undefined ? null : groupCpuMs(group(), "workerd")),
    /** The same, per process id. */
    workerdCpuByPid: () => (group() === undefined ? null : groupCpuByPid(group(), "workerd")),
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
