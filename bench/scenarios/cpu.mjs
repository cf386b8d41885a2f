// (6) CPU inside workerd: bench/cpu/ times the hub's own verify-and-validate functions (and the
// chain hash) in a loop, by workerd's own clock; this module calibrates, repeats and summarises.
import path from "node:path";
import { CPU_MIN_CLOCK_STEPS, log, SETTINGS } from "../lib/settings.mjs";
import { median, sum } from "../lib/stats.mjs";
import { fmt, printTable } from "../lib/table.mjs";
import { ROOT, startWranglerDev } from "../lib/wrangler.mjs";

/** The cases bench/cpu/index.ts times, each over the hub's own functions. */
export const CPU_CASES = [
  ["empty", "the loop alone (an awaited no-op)"],
  ["json_parse", "plain decode + JSON.parse, no reviver"],
  ["parse", "parseJson: strict UTF-8, exact-money reviver"],
  ["validate", "parseJson + zod PostbackSchema"],
  ["verify", "authenticateRequest: Standard Webhooks HMAC"],
  ["verify_validate", "verify, then parse + validate (ingest order)"],
  ["chain_canonical", "RFC 8785 text of one event's chain content"],
  ["chain_hash", "chainHash: RFC 8785 + SHA-256 (@noble/hashes), as record does"],
  ["chain_hash_webcrypto", "the same digest with crypto.subtle (async)"],
];

/**
 * One request to the CPU worker, with the workerd processes' CPU time (from /proc) around it;
 * `restarted` when the set of workerd processes changed meanwhile (wrangler dev reloads the worker
 * when a source file it bundles changes, e.g. someone editing src/ during the bench).
 */
async function cpuRun(worker, query) {
  const cpuBefore = worker.workerdCpuByPid();
  const response = await fetch(`${worker.baseUrl}/cpu?${new URLSearchParams(query)}`);
  const text = await response.text();
  const cpuAfter = worker.workerdCpuByPid();
  let result;
  try {
    result = JSON.parse(text);
  } catch {
    result = { error: text };
  }
  if (!response.ok) throw new Error(`(6) ${query.case}: ${response.status} ${result.error}`);
  if (cpuBefore === null || cpuAfter === null) return { ...result, process_cpu_ms: null, restarted: false };
  const restarted = cpuBefore.size !== cpuAfter.size || [...cpuBefore.keys()].some((pid) => !cpuAfter.has(pid));
  let processCpuMs = 0;
  for (const [pid, ms] of cpuAfter) processCpuMs += ms - (cpuBefore.get(pid) ?? 0);
  return { ...result, process_cpu_ms: restarted ? null : processCpuMs, restarted };
}

/**
 * A timed run of `iterations[name]`, redone (a few times at most) when workerd restarted during it,
 * or when it was too short for the clock's step (the calibration was made in a slow moment: n is
 * raised for this and later runs).
 */
async function cpuRunLongEnough(worker, name, iterations) {
  for (let attempt = 1; ; attempt++) {
    const run = await cpuRun(worker, { case: name, n: String(iterations[name]) });
    if (run.restarted) {
      if (attempt === 3) throw new Error(`(6) ${name}: workerd restarted during three runs in a row`);
      log(`(6) ${name}: workerd restarted during the run (a source file changed?); running it again`);
      continue;
    }
    // A clock that never moved while JavaScript ran has an unknown step: assume the 1 ms of Date.now().
    const minimumMs = CPU_MIN_CLOCK_STEPS * (run.clock_step_ms ?? 1);
    if (run.elapsed_ms >= minimumMs) return run;
    if (attempt === 3) {
      throw new Error(
        `(6) ${name}: a run lasted ${run.elapsed_ms} ms, under the ${minimumMs} ms that a ${run.clock_step_ms ?? "?"} ms clock needs (${JSON.stringify(run)})`,
      );
    }
    iterations[name] = Math.ceil((iterations[name] * SETTINGS.CPU_TARGET_MS) / Math.max(run.elapsed_ms, 1));
    log(`(6) ${name}: a run lasted only ${run.elapsed_ms} ms; n raised to ${iterations[name]}`);
  }
}

/** One case's runs summarised: median, range, minus the empty loop, and workerd's /proc CPU. */
function summariseCase(what, n, runs, emptyUs) {
  const perOp = runs.map((x) => x.us_per_op);
  const cpu = runs.map((x) => x.process_cpu_ms);
  const us = median(perOp);
  return {
    what,
    n,
    us_per_op_median: us,
    us_per_op_min: Math.min(...perOp),
    us_per_op_max: Math.max(...perOp),
    us_per_op_minus_empty: us - emptyUs,
    process_cpu_us_per_op: cpu.includes(null) ? null : (sum(cpu) * 1000) / sum(runs.map((x) => x.n)),
    runs: runs.map(({ elapsed_ms, us_per_op, process_cpu_ms }) => ({ elapsed_ms, us_per_op, process_cpu_ms })),
  };
}

/**
 * (6): each case is calibrated once (which also warms it up) to run about CPU_TARGET_MS, then run
 * CPU_REPEATS times, the cases interleaved so that a noisy moment hits all of them alike. Answers
 * `report.scenarios.cpu_in_runtime`.
 */
export async function runCpu() {
  log("(6) starting the CPU worker (bench/cpu)");
  const worker = await startWranglerDev({
    label: "bench-cpu",
    config: path.join(ROOT, "bench/cpu/wrangler.toml"),
    migrate: false,
  });
  try {
    const iterations = {};
    for (const [name] of CPU_CASES) {
      iterations[name] = (await cpuRun(worker, { case: name, ms: String(SETTINGS.CPU_TARGET_MS) })).n;
    }
    log(`(6) calibrated: ${CPU_CASES.map(([name]) => `${name} n=${iterations[name]}`).join(", ")}`);
    const runs = Object.fromEntries(CPU_CASES.map(([name]) => [name, []]));
    for (let r = 1; r <= SETTINGS.CPU_REPEATS; r++) {
      for (const [name] of CPU_CASES) {
        runs[name].push(await cpuRunLongEnough(worker, name, iterations));
      }
      log(
        `(6) repeat ${r}: ${CPU_CASES.map(([name]) => `${name} ${fmt(runs[name].at(-1).us_per_op, 2)} µs`).join(", ")}`,
      );
    }
    const emptyUs = median(runs.empty.map((x) => x.us_per_op));
    const cases = Object.fromEntries(
      CPU_CASES.map(([name, what]) => [name, summariseCase(what, iterations[name], runs[name], emptyUs)]),
    );
    const first = runs.verify_validate[0];
    return {
      unit: "µs per operation: the time workerd's own clock shows across a loop of n operations, divided by n",
      clock: first.clock,
      clock_step_ms: first.clock_step_ms,
      body_bytes: first.body_bytes,
      repeats: SETTINGS.CPU_REPEATS,
      target_ms: SETTINGS.CPU_TARGET_MS,
      verify_validate_us: cases.verify_validate.us_per_op_minus_empty,
      derived: {
        schema_us: cases.validate.us_per_op_median - cases.parse.us_per_op_median,
        exact_money_parse_over_json_parse_us: cases.parse.us_per_op_median - cases.json_parse.us_per_op_median,
      },
      cases,
    };
  } finally {
    await worker.stop().catch((error) => console.error(error));
  }
}

export const CPU_COLUMNS = [
  { header: "case", cell: ([name]) => name },
  { header: "what", cell: ([, c]) => c.what },
  { header: "n", cell: ([, c]) => c.n },
  { header: "µs/op", cell: ([, c]) => fmt(c.us_per_op_median, 2) },
  { header: "min–max", cell: ([, c]) => `${fmt(c.us_per_op_min, 2)}–${fmt(c.us_per_op_max, 2)}` },
  { header: "minus empty", cell: ([, c]) => fmt(c.us_per_op_minus_empty, 2) },
  {
    header: "workerd CPU µs/op (/proc, mean)",
    cell: ([, c]) => (c.process_cpu_us_per_op === null ? "n/a" : fmt(c.process_cpu_us_per_op, 2)),
  },
];

export const cpuHeadline = (cpu) =>
  `(6) verify-and-validate: ${fmt(cpu.verify_validate_us, 1)} µs per postback in workerd; of which the zod schema ` +
  `≈ ${fmt(cpu.derived.schema_us, 1)} µs, the exact-money reviver ≈ ${fmt(cpu.derived.exact_money_parse_over_json_parse_us, 1)} µs over a plain JSON.parse`;

export function printCpu(cpu) {
  console.log(
    `\n(6) CPU per operation inside workerd: median of ${cpu.repeats} runs of ~${cpu.target_ms} ms each; ` +
      `${cpu.body_bytes}-byte signed JSON postback; clock ${cpu.clock}, step ${cpu.clock_step_ms ?? "n/a"} ms`,
  );
  printTable(CPU_COLUMNS, Object.entries(cpu.cases));
  console.log(cpuHeadline(cpu));
}
