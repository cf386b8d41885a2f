// The bench's settings, read once from the environment (see BENCHMARKS.md), its goals, and its log.
import os from "node:os";

const number = (name, fallback) => Number(process.env[name] ?? fallback);

export const SETTINGS = {
  SECONDS: number("BENCH_SECONDS", 10),
  ROUNDS: number("BENCH_ROUNDS", 3),
  CONNECTIONS: number("BENCH_CONNECTIONS", 10),
  NETWORKS: number("BENCH_NETWORKS", 40),
  E2E_POSTBACKS: number("BENCH_E2E_POSTBACKS", 300),
  E2E_RATE: number("BENCH_E2E_RATE", 20),
  // (8): postbacks per phase (the healthy partner alone, then beside the failing one), at E2E_RATE.
  ISOLATION_POSTBACKS: number("BENCH_ISOLATION_POSTBACKS", 100),
  // New-conversion requests signed per round; more than any round can send on this kind of machine.
  NEW_POOL: number("BENCH_NEW_POOL", 30_000),
  CPU_REPEATS: number("BENCH_CPU_REPEATS", 5),
  CPU_TARGET_MS: number("BENCH_CPU_TARGET_MS", 200),
  ONLY: parseOnly(process.env.BENCH_ONLY),
};

export const WARMUP_SECONDS = 2;

/**
 * A run must last this many steps of the runtime's clock (1 ms locally), so that rounding at its
 * two ends stays under 4 %; calibration aims 8 times higher, so only a wildly noisy machine trips it.
 */
export const CPU_MIN_CLOCK_STEPS = 25;

/** The goals each scenario is judged by; the tables print them from here. */
export const GOALS = {
  edge_vs_health: 0.6,
  click_vs_health: 0.8,
  ingest_new_vs_floor: 0.8,
  ingest_duplicate_vs_health: 0.8,
  e2e_p50_ms: 2000,
  rows_per_d1_batch: 20,
  /** (8): the healthy partner's p50 beside a failing partner, over its p50 alone, at most. */
  healthy_beside_failing_vs_alone: 1.2,
};

/**
 * BENCH_ONLY, e.g. "6" or "1,6"; every scenario when unset. Scenarios 1 to 5 and 7 share one hub and
 * run together; 6 and 8 each start their own.
 */
export function parseOnly(value) {
  const only = value ? new Set(value.split(",").map((n) => Number(n.trim()))) : new Set([1, 2, 3, 4, 5, 6, 7, 8]);
  for (const n of only)
    if (!(Number.isInteger(n) && n >= 1 && n <= 8)) throw new Error("BENCH_ONLY lists scenarios 1 to 8");
  return only;
}

export const started = new Date();

export const log = (line) =>
  console.log(`[${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)}s] ${line}`);

export const machine = () => ({
  cpus: os.cpus().length,
  model: os.cpus()[0]?.model,
  node: process.version,
  platform: process.platform,
});
