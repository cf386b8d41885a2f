#!/usr/bin/env node
// `npm run bench`: drives the hub under `wrangler dev` with autocannon, each scenario alternating
// with its baseline in the same run so that ratios hold on a noisy machine. See BENCHMARKS.md.
// Settings (env): BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_CONNECTIONS (10), BENCH_NETWORKS (40),
// BENCH_E2E_POSTBACKS (300), BENCH_E2E_RATE (20 per second), BENCH_CPU_REPEATS (5),
// BENCH_CPU_TARGET_MS (200), BENCH_ISOLATION_POSTBACKS (100), BENCH_ONLY (e.g. "6"; scenarios 1–5 and 7
// share one hub and run together, 6 and 8 each have their own).
// The scenarios are in bench/scenarios/, the settings, statistics and tables in bench/lib/.
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { GOALS, log, machine, SETTINGS, started } from "./lib/settings.mjs";
import { ROOT } from "./lib/wrangler.mjs";
import { cpuHeadline, printCpu, runCpu } from "./scenarios/cpu.mjs";
import { printPartnerIsolation, runPartnerIsolation } from "./scenarios/isolation.mjs";
import { printThroughput, runThroughput } from "./scenarios/throughput.mjs";

const { ONLY } = SETTINGS;
const RUN_THROUGHPUT = [1, 2, 3, 4, 5, 7].some((n) => ONLY.has(n));
const RUN_CPU = ONLY.has(6);
const RUN_ISOLATION = ONLY.has(8);

async function main() {
  const s = SETTINGS;
  log(
    `settings: scenarios ${[...ONLY].sort().join(", ")}; ${s.ROUNDS} rounds × ${s.SECONDS} s, ${s.CONNECTIONS} connections, ${s.NETWORKS} networks; CPU ${s.CPU_REPEATS} × ~${s.CPU_TARGET_MS} ms per case; ${os.cpus().length} CPUs`,
  );
  const report = {
    started_at: started.toISOString(),
    command: process.env.BENCH_ONLY ? `BENCH_ONLY=${process.env.BENCH_ONLY} npm run bench` : "npm run bench",
    settings: { ...SETTINGS, ONLY: [...ONLY].sort() },
    machine: machine(),
    goals: GOALS,
    scenarios: {},
  };
  try {
    // (6) first, alone on the machine as far as this bench goes: no hub or queue consumer running yet.
    if (RUN_CPU) {
      report.scenarios.cpu_in_runtime = await runCpu();
      printCpu(report.scenarios.cpu_in_runtime);
    }
    if (RUN_THROUGHPUT) {
      await runThroughput(report);
      printThroughput(report);
      if (RUN_CPU) console.log(`${cpuHeadline(report.scenarios.cpu_in_runtime)} (table above)`);
    }
    // (8) last, on its own hub once the others are stopped: its failing partner retries all along.
    if (RUN_ISOLATION) {
      report.scenarios.partner_isolation = await runPartnerIsolation();
      printPartnerIsolation(report.scenarios.partner_isolation);
    }
  } catch (error) {
    // What was measured before the failure is still written down.
    report.failed = error instanceof Error ? error.message : String(error);
    throw error;
  } finally {
    const file = path.join(ROOT, "bench/results", `${started.toISOString().replace(/[:.]/g, "-")}.json`);
    await mkdir(path.dirname(file), { recursive: true });
    report.finished_at = new Date().toISOString();
    await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
    log(`report written to ${path.relative(ROOT, file)}`);
  }
}

main().catch((error) => {
  console.error(`bench failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
});
