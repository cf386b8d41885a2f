// The load generator: autocannon over loopback, fed from a pool of prepared requests.
import autocannon from "autocannon";
import { SETTINGS } from "./settings.mjs";
import { sum } from "./stats.mjs";

/** Runs autocannon; `pool` requests are handed out in order, wrapping (and counting wraps) when exhausted. */
export async function load(baseUrl, pool, seconds = SETTINGS.SECONDS) {
  let next = 0;
  const result = await autocannon({
    url: baseUrl,
    connections: SETTINGS.CONNECTIONS,
    duration: seconds,
    requests: [
      {
        setupRequest: (request) => {
          const chosen = pool[next % pool.length];
          next += 1;
          return { ...request, ...chosen };
        },
      },
    ],
  });
  return {
    rps: result.requests.average,
    total: result.requests.total,
    sent: next,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    errors: result.errors,
    timeouts: result.timeouts,
    statuses: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, s]) => [code, s.count])),
    wrapped: next > pool.length,
  };
}

/** A run whose answers are not ≥ 99 % `expected` measured something else: the harness fails. */
export function checkStatuses(label, run, expected) {
  const good = run.statuses[String(expected)] ?? 0;
  const all = sum(Object.values(run.statuses)) + run.errors;
  if (all === 0 || good / all < 0.99) {
    throw new Error(
      `${label}: expected ${expected} for ≥ 99% of responses, got ${JSON.stringify(run.statuses)}, ${run.errors} errors`,
    );
  }
}

/** `load`, then `checkStatuses`. */
export async function loadExpecting(label, baseUrl, pool, expected) {
  const run = await load(baseUrl, pool);
  checkStatuses(label, run, expected);
  return run;
}
