#!/usr/bin/env node
// `npm run bench`: drives the hub under `wrangler dev` with autocannon, each scenario alternating
// with its baseline in the same run so that ratios hold on a noisy machine. See BENCHMARKS.md.
// Settings (env): BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_CONNECTIONS (10), BENCH_NETWORKS (40),
// BENCH_E2E_POSTBACKS (300), BENCH_E2E_RATE (20 per second), BENCH_CPU_REPEATS (5),
// BENCH_CPU_TARGET_MS (200), BENCH_ONLY (e.g. "6"; scenarios 1–5 share one hub and run together).
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import autocannon from "autocannon";
import { startPartnerServer } from "../test/e2e/partner-server.ts";
import { messageId, signedPostback, signer } from "./lib/sign.mjs";
import { ROOT, sleep, startWranglerDev } from "./lib/wrangler.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10);
const NETWORKS = Number(process.env.BENCH_NETWORKS ?? 40);
const E2E_POSTBACKS = Number(process.env.BENCH_E2E_POSTBACKS ?? 300);
const E2E_RATE = Number(process.env.BENCH_E2E_RATE ?? 20);
const WARMUP_SECONDS = 2;
// New-conversion requests signed per round; more than any round can send on this kind of machine.
const NEW_POOL = Number(process.env.BENCH_NEW_POOL ?? 30_000);
const CPU_REPEATS = Number(process.env.BENCH_CPU_REPEATS ?? 5);
const CPU_TARGET_MS = Number(process.env.BENCH_CPU_TARGET_MS ?? 200);
// A run must last this many steps of the runtime's clock (1 ms locally), so that rounding at its
// two ends stays under 4 %; calibration aims 8 times higher, so only a wildly noisy machine trips it.
const CPU_MIN_CLOCK_STEPS = 25;
const ONLY = process.env.BENCH_ONLY
  ? new Set(process.env.BENCH_ONLY.split(",").map((n) => Number(n.trim())))
  : new Set([1, 2, 3, 4, 5, 6]);
for (const n of ONLY)
  if (!(Number.isInteger(n) && n >= 1 && n <= 6)) throw new Error("BENCH_ONLY lists scenarios 1 to 6");
const RUN_THROUGHPUT = [1, 2, 3, 4, 5].some((n) => ONLY.has(n));
const RUN_CPU = ONLY.has(6);

const GOALS = {
  edge_vs_health: 0.6,
  ingest_new_vs_floor: 0.8,
  ingest_duplicate_vs_health: 0.4,
  e2e_p50_ms: 2000,
  rows_per_d1_batch: 20,
};

const started = new Date();
const log = (line) => console.log(`[${((Date.now() - started.getTime()) / 1000).toFixed(0).padStart(4)}s] ${line}`);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
};
const percentile = (values, p) => {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};

function body(transactionId, amount = "29.90") {
  return JSON.stringify({
    transaction_id: transactionId,
    status: "approved",
    amount,
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-bench",
    click_id: `clk-${transactionId}`,
    platform: "web",
  });
}

/** Runs autocannon; `pool` requests are handed out in order, wrapping (and counting wraps) when exhausted. */
async function load(baseUrl, pool, seconds = SECONDS) {
  let next = 0;
  const result = await autocannon({
    url: baseUrl,
    connections: CONNECTIONS,
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

function checkStatuses(label, run, expected) {
  const good = run.statuses[String(expected)] ?? 0;
  const all = Object.values(run.statuses).reduce((a, b) => a + b, 0) + run.errors;
  if (all === 0 || good / all < 0.99) {
    throw new Error(
      `${label}: expected ${expected} for ≥ 99% of responses, got ${JSON.stringify(run.statuses)}, ${run.errors} errors`,
    );
  }
}

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join("  ");
  console.log(line(headers));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows) console.log(line(row));
}

async function admin(hub, token, method, route, payload) {
  const response = await fetch(`${hub.baseUrl}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** When the partner first received each transaction, by the `tx` parameter of its URL template. */
function firstReceipts(partner) {
  const first = new Map();
  for (const request of partner.requests) {
    const tx = new URL(request.url, partner.origin).searchParams.get("tx") ?? "";
    if (!first.has(tx)) first.set(tx, request.receivedAtMs);
  }
  return first;
}

/** Collects the events consumer's batch sizes from wrangler's `QUEUE postback-events n/m` lines. */
function queueWatcher(hub) {
  let buffer = "";
  let sizes = [];
  hub.onOutput((text) => {
    buffer += text;
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      const match = /QUEUE postback-events (\d+)\/(\d+)/.exec(line);
      if (match) sizes.push(Number(match[2]));
    }
  });
  return {
    take() {
      const taken = sizes;
      sizes = [];
      return taken;
    },
  };
}

const batchSummary = (sizes) => ({
  batches: sizes.length,
  messages: sizes.reduce((a, b) => a + b, 0),
  mean: sizes.length ? sizes.reduce((a, b) => a + b, 0) / sizes.length : Number.NaN,
  median: median(sizes),
  max: sizes.length ? Math.max(...sizes) : Number.NaN,
});

async function main() {
  log(
    `settings: scenarios ${[...ONLY].sort().join(", ")}; ${ROUNDS} rounds × ${SECONDS} s, ${CONNECTIONS} connections, ${NETWORKS} networks; CPU ${CPU_REPEATS} × ~${CPU_TARGET_MS} ms per case; ${os.cpus().length} CPUs`,
  );
  const report = {
    started_at: started.toISOString(),
    command: process.env.BENCH_ONLY ? `BENCH_ONLY=${process.env.BENCH_ONLY} npm run bench` : "npm run bench",
    settings: {
      SECONDS,
      ROUNDS,
      CONNECTIONS,
      NETWORKS,
      E2E_POSTBACKS,
      E2E_RATE,
      NEW_POOL,
      CPU_REPEATS,
      CPU_TARGET_MS,
      ONLY: [...ONLY].sort(),
    },
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, platform: process.platform },
    goals: GOALS,
    scenarios: {},
  };
  try {
    // (6) first, alone on the machine as far as this bench goes: no hub or queue consumer running yet.
    if (RUN_CPU) {
      report.scenarios.cpu_in_runtime = await cpuInRuntime();
      printCpu(report.scenarios.cpu_in_runtime);
    }
    if (RUN_THROUGHPUT) {
      await throughput(report);
      printThroughput(report);
      if (RUN_CPU) console.log(`${cpuHeadline(report.scenarios.cpu_in_runtime)} (table above)`);
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

/** Scenarios (1) to (5): one hub, the floor worker and a partner; fills `report.e2e` and `report.scenarios`. */
async function throughput(report) {
  const stops = [];
  try {
    log("starting the hub (wrangler dev, migrated temp state)");
    // Its own admin token and key; partner URLs on 127.0.0.1 allowed, as .dev.vars.example does.
    const hub = await startWranglerDev({ label: "bench-hub" });
    stops.push(hub.stop);
    const queue = queueWatcher(hub);
    log(`hub on ${hub.baseUrl}; starting the cost-floor worker`);
    const floor = await startWranglerDev({
      label: "bench-floor",
      config: path.join(ROOT, "bench/floor/wrangler.toml"),
      migrate: false,
    });
    stops.push(floor.stop);
    log(`floor on ${floor.baseUrl}; starting the partner`);
    const partner = await startPartnerServer(() => ({ status: 200, body: "OK" }));
    stops.push(partner.close);

    // Networks: the per-network rate limit (6000/min) would cap one network, so the load is spread.
    const networks = [];
    for (let i = 0; i < NETWORKS; i++) {
      const id = `bench-${String(i).padStart(3, "0")}`;
      const created = await admin(hub, hub.adminToken, "POST", "/v1/networks", { id, name: `Bench ${i}` });
      networks.push({ id, sign: signer(created.secret) });
    }
    const e2eCreated = await admin(hub, hub.adminToken, "POST", "/v1/networks", { id: "bench-e2e", name: "E2E" });
    const e2eNetwork = { id: "bench-e2e", sign: signer(e2eCreated.secret) };
    await admin(hub, hub.adminToken, "POST", "/v1/partners", {
      name: "Bench partner",
      url_template: `${partner.origin}/pb?tx={transaction_id}&status={status}`,
      filters: { networks: ["bench-e2e"] },
    });
    log(`created ${NETWORKS + 1} networks and a partner at ${partner.origin}`);
    for (const network of [...networks, e2eNetwork]) {
      const request = signedPostback(network, body(`warm-${network.id}`));
      const response = await fetch(`${hub.baseUrl}${request.path}`, request);
      const text = await response.text();
      if (response.status !== 200) throw new Error(`warm-up postback: ${response.status} ${text}`);
    }

    // (5) End to end first, on a quiet hub: 2xx → receipt at the partner.
    await sleep(3000);
    queue.take();
    log(`(5) end to end: ${E2E_POSTBACKS} postbacks at ${E2E_RATE}/s`);
    const e2eRequests = Array.from({ length: E2E_POSTBACKS }, (_, i) => ({
      tx: `e2e-${i}`,
      request: signedPostback(e2eNetwork, body(`e2e-${i}`)),
    }));
    const acknowledged = new Map();
    const e2eStart = Date.now();
    const inflight = [];
    for (const [i, { tx, request }] of e2eRequests.entries()) {
      const due = e2eStart + (i * 1000) / E2E_RATE;
      if (due > Date.now()) await sleep(due - Date.now());
      inflight.push(
        fetch(`${hub.baseUrl}${request.path}`, request).then(async (response) => {
          await response.text();
          if (response.status === 200) acknowledged.set(tx, Date.now());
        }),
      );
    }
    await Promise.all(inflight);
    const waitUntil = Date.now() + 60_000;
    while (firstReceipts(partner).size < acknowledged.size && Date.now() < waitUntil) await sleep(100);
    const received = firstReceipts(partner);
    const e2eLatencies = [...acknowledged].flatMap(([tx, at]) => (received.has(tx) ? [received.get(tx) - at] : []));
    await sleep(2000);
    report.e2e = {
      sent: E2E_POSTBACKS,
      acknowledged: acknowledged.size,
      delivered: e2eLatencies.length,
      partner_requests: partner.requests.length,
      p50_ms: percentile(e2eLatencies, 50),
      p99_ms: percentile(e2eLatencies, 99),
      max_ms: Math.max(...e2eLatencies),
      events_batches: batchSummary(queue.take()),
    };
    if (acknowledged.size !== E2E_POSTBACKS)
      throw new Error(`end to end: only ${acknowledged.size} postbacks got a 200`);
    log(
      `(5) delivered ${report.e2e.delivered}/${acknowledged.size}; p50 ${report.e2e.p50_ms} ms, p99 ${report.e2e.p99_ms} ms`,
    );

    // Request pools.
    const healthPool = [{ method: "GET", path: "/health" }];
    const edgePool = Array.from({ length: 5000 }, (_, i) =>
      signedPostback(networks[i % NETWORKS], body(`edge-${i}`, "-1.00")),
    );
    const floorPool = Array.from({ length: 1000 }, (_, i) => ({
      method: "POST",
      path: "/ingest",
      headers: { "content-type": "application/json" },
      body: body(`floor-${i}`),
    }));
    // The same floor plus the outbox's queue hop (bench/floor/index.js): explains (3), not its goal.
    const queuedFloorPool = floorPool.map((request) => ({ ...request, path: "/ingest-queued" }));
    const newPool = (round) =>
      Array.from({ length: NEW_POOL }, (_, i) => signedPostback(networks[i % NETWORKS], body(`new-r${round}-${i}`)));

    log("warming up every target");
    await load(hub.baseUrl, healthPool, WARMUP_SECONDS);
    await load(hub.baseUrl, edgePool, WARMUP_SECONDS);
    await load(floor.baseUrl, floorPool, WARMUP_SECONDS);
    await load(floor.baseUrl, queuedFloorPool, WARMUP_SECONDS);
    await load(hub.baseUrl, newPool("w"), WARMUP_SECONDS);

    // (2) edge checks vs health.
    const rounds = { edge: [], ingest: [], duplicate: [] };
    for (let r = 1; r <= ROUNDS; r++) {
      const health = await load(hub.baseUrl, healthPool);
      checkStatuses("health", health, 200);
      const edge = await load(hub.baseUrl, edgePool);
      checkStatuses("edge checks (422)", edge, 422);
      rounds.edge.push({ health, edge, ratio: edge.rps / health.rps });
      log(
        `(2) round ${r}: health ${fmt(health.rps)} rps, edge ${fmt(edge.rps)} rps, ratio ${fmt(edge.rps / health.rps, 2)}`,
      );
    }

    // (3) new conversions vs health and the floor.
    queue.take();
    const accepted = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const health = await load(hub.baseUrl, healthPool);
      checkStatuses("health", health, 200);
      const floorRun = await load(floor.baseUrl, floorPool);
      checkStatuses("floor", floorRun, 200);
      const queuedFloorRun = await load(floor.baseUrl, queuedFloorPool);
      checkStatuses("floor with a queue hop", queuedFloorRun, 200);
      const pool = newPool(r);
      const ingest = await load(hub.baseUrl, pool);
      checkStatuses("ingest new", ingest, 200);
      if (ingest.wrapped) log(`(3) round ${r}: the pool of ${NEW_POOL} ran out; some requests were duplicates`);
      accepted.push(...pool.slice(0, Math.min(ingest.total, 5000)));
      rounds.ingest.push({
        health,
        floor: floorRun,
        floor_queued: queuedFloorRun,
        ingest,
        ratio_health: ingest.rps / health.rps,
        ratio_floor: ingest.rps / floorRun.rps,
        ratio_floor_queued: ingest.rps / queuedFloorRun.rps,
      });
      log(
        `(3) round ${r}: health ${fmt(health.rps)}, floor ${fmt(floorRun.rps)}, floor + queue ${fmt(queuedFloorRun.rps)}, ingest ${fmt(ingest.rps)} rps (p50 ${ingest.p50_ms} ms, p99 ${ingest.p99_ms} ms)`,
      );
    }
    await sleep(3000);
    const ingestBatches = queue.take();

    // (4) duplicates: already-accepted postbacks re-sent with the same webhook-id, a fresh timestamp.
    const duplicatePool = accepted.map((request) => {
      const network = networks.find((n) => request.path.endsWith(`/${n.id}`));
      return signedPostback(network, request.body, request.headers["webhook-id"] ?? messageId());
    });
    const spot = await fetch(`${hub.baseUrl}${duplicatePool[0].path}`, duplicatePool[0]);
    const spotBody = await spot.json();
    if (spotBody.status !== "duplicate") throw new Error(`duplicate spot check: ${JSON.stringify(spotBody)}`);
    for (let r = 1; r <= ROUNDS; r++) {
      const health = await load(hub.baseUrl, healthPool);
      checkStatuses("health", health, 200);
      const duplicate = await load(hub.baseUrl, duplicatePool);
      checkStatuses("duplicates", duplicate, 200);
      rounds.duplicate.push({ health, duplicate, ratio: duplicate.rps / health.rps });
      log(
        `(4) round ${r}: health ${fmt(health.rps)}, duplicates ${fmt(duplicate.rps)} rps, ratio ${fmt(duplicate.rps / health.rps, 2)}`,
      );
    }

    Object.assign(report.scenarios, {
      edge: { rounds: rounds.edge, ratio_median: median(rounds.edge.map((x) => x.ratio)) },
      ingest_new: {
        rounds: rounds.ingest,
        ratio_health_median: median(rounds.ingest.map((x) => x.ratio_health)),
        ratio_floor_median: median(rounds.ingest.map((x) => x.ratio_floor)),
        ratio_floor_queued_median: median(rounds.ingest.map((x) => x.ratio_floor_queued)),
        events_batches_under_load: batchSummary(ingestBatches),
      },
      duplicate: { rounds: rounds.duplicate, ratio_median: median(rounds.duplicate.map((x) => x.ratio)) },
    });
  } finally {
    log("stopping the hub, the floor worker and the partner");
    for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  }
}

function printThroughput(report) {
  const s = report.scenarios;
  const m = (runs, key) => median(runs.map((x) => x[key].rps));
  const mp = (runs, key, p) => median(runs.map((x) => x[key][p]));
  console.log("\nThroughput (median of rounds; ratios are per round, then the median)");
  table(
    ["scenario", "req/s", "p50 ms", "p99 ms", "ratio", "goal", "met"],
    [
      [
        "(1) GET /health",
        fmt(m(s.edge.rounds, "health")),
        fmt(mp(s.edge.rounds, "health", "p50_ms")),
        fmt(mp(s.edge.rounds, "health", "p99_ms")),
        "1",
        "",
        "",
      ],
      [
        "(2) edge checks (422)",
        fmt(m(s.edge.rounds, "edge")),
        fmt(mp(s.edge.rounds, "edge", "p50_ms")),
        fmt(mp(s.edge.rounds, "edge", "p99_ms")),
        `${fmt(s.edge.ratio_median, 2)} of (1)`,
        "≥ 0.60",
        s.edge.ratio_median >= GOALS.edge_vs_health ? "yes" : "NO",
      ],
      [
        "    floor (new DO + row)",
        fmt(m(s.ingest_new.rounds, "floor")),
        fmt(mp(s.ingest_new.rounds, "floor", "p50_ms")),
        fmt(mp(s.ingest_new.rounds, "floor", "p99_ms")),
        "",
        "",
        "",
      ],
      [
        "    floor + queue hop",
        fmt(m(s.ingest_new.rounds, "floor_queued")),
        fmt(mp(s.ingest_new.rounds, "floor_queued", "p50_ms")),
        fmt(mp(s.ingest_new.rounds, "floor_queued", "p99_ms")),
        `(3) is ${fmt(s.ingest_new.ratio_floor_queued_median, 2)} of it`,
        "",
        "",
      ],
      [
        "(3) ingest new",
        fmt(m(s.ingest_new.rounds, "ingest")),
        fmt(mp(s.ingest_new.rounds, "ingest", "p50_ms")),
        fmt(mp(s.ingest_new.rounds, "ingest", "p99_ms")),
        `${fmt(s.ingest_new.ratio_floor_median, 2)} of floor, ${fmt(s.ingest_new.ratio_health_median, 2)} of (1)`,
        "≥ 0.80 of floor",
        s.ingest_new.ratio_floor_median >= GOALS.ingest_new_vs_floor ? "yes" : "NO",
      ],
      [
        "(4) ingest duplicates",
        fmt(m(s.duplicate.rounds, "duplicate")),
        fmt(mp(s.duplicate.rounds, "duplicate", "p50_ms")),
        fmt(mp(s.duplicate.rounds, "duplicate", "p99_ms")),
        `${fmt(s.duplicate.ratio_median, 2)} of (1)`,
        "≥ 0.40",
        s.duplicate.ratio_median >= GOALS.ingest_duplicate_vs_health ? "yes" : "NO",
      ],
    ],
  );
  const e = report.e2e;
  const b = s.ingest_new.events_batches_under_load;
  console.log("\nEnd to end and the events consumer");
  table(
    ["measure", "value", "goal", "met"],
    [
      [
        `(5) 2xx → partner p50 (${e.delivered}/${e.acknowledged} delivered)`,
        `${fmt(e.p50_ms)} ms`,
        "< 2000 ms",
        e.p50_ms < GOALS.e2e_p50_ms ? "yes" : "NO",
      ],
      ["(5) 2xx → partner p99", `${fmt(e.p99_ms)} ms`, "", ""],
      [
        `(5) events per D1 batch at ${E2E_RATE}/s (${e.events_batches.batches} batches)`,
        `mean ${fmt(e.events_batches.mean, 1)}`,
        "",
        "",
      ],
      [
        `(5) events per D1 batch under load (${b.batches} batches, ${b.messages} events)`,
        `mean ${fmt(b.mean, 1)}, median ${fmt(b.median)}, max ${fmt(b.max)}`,
        "≥ 20",
        b.mean >= GOALS.rows_per_d1_batch ? "yes" : "NO",
      ],
    ],
  );
}

// --- (6) CPU inside workerd -----------------------------------------------------------------

/** The cases bench/cpu/index.ts times, each over the hub's own functions. */
const CPU_CASES = [
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
    iterations[name] = Math.ceil((iterations[name] * CPU_TARGET_MS) / Math.max(run.elapsed_ms, 1));
    log(`(6) ${name}: a run lasted only ${run.elapsed_ms} ms; n raised to ${iterations[name]}`);
  }
}

/**
 * (6): each case is calibrated once (which also warms it up) to run about CPU_TARGET_MS, then run
 * CPU_REPEATS times, the cases interleaved so that a noisy moment hits all of them alike.
 */
async function cpuInRuntime() {
  log("(6) starting the CPU worker (bench/cpu)");
  const worker = await startWranglerDev({
    label: "bench-cpu",
    config: path.join(ROOT, "bench/cpu/wrangler.toml"),
    migrate: false,
  });
  try {
    const iterations = {};
    for (const [name] of CPU_CASES) {
      iterations[name] = (await cpuRun(worker, { case: name, ms: String(CPU_TARGET_MS) })).n;
    }
    log(`(6) calibrated: ${CPU_CASES.map(([name]) => `${name} n=${iterations[name]}`).join(", ")}`);
    const runs = Object.fromEntries(CPU_CASES.map(([name]) => [name, []]));
    for (let r = 1; r <= CPU_REPEATS; r++) {
      for (const [name] of CPU_CASES) {
        runs[name].push(await cpuRunLongEnough(worker, name, iterations));
      }
      log(
        `(6) repeat ${r}: ${CPU_CASES.map(([name]) => `${name} ${fmt(runs[name].at(-1).us_per_op, 2)} µs`).join(", ")}`,
      );
    }
    const emptyUs = median(runs.empty.map((x) => x.us_per_op));
    const cases = Object.fromEntries(
      CPU_CASES.map(([name, what]) => {
        const perOp = runs[name].map((x) => x.us_per_op);
        const cpu = runs[name].map((x) => x.process_cpu_ms);
        const totalN = runs[name].reduce((sum, x) => sum + x.n, 0);
        const us = median(perOp);
        return [
          name,
          {
            what,
            n: iterations[name],
            us_per_op_median: us,
            us_per_op_min: Math.min(...perOp),
            us_per_op_max: Math.max(...perOp),
            us_per_op_minus_empty: us - emptyUs,
            process_cpu_us_per_op: cpu.includes(null) ? null : (cpu.reduce((a, b) => a + b, 0) * 1000) / totalN,
            runs: runs[name].map(({ elapsed_ms, us_per_op, process_cpu_ms }) => ({
              elapsed_ms,
              us_per_op,
              process_cpu_ms,
            })),
          },
        ];
      }),
    );
    const first = runs.verify_validate[0];
    return {
      unit: "µs per operation: the time workerd's own clock shows across a loop of n operations, divided by n",
      clock: first.clock,
      clock_step_ms: first.clock_step_ms,
      body_bytes: first.body_bytes,
      repeats: CPU_REPEATS,
      target_ms: CPU_TARGET_MS,
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

function printCpu(cpu) {
  console.log(
    `\n(6) CPU per operation inside workerd: median of ${cpu.repeats} runs of ~${cpu.target_ms} ms each; ` +
      `${cpu.body_bytes}-byte signed JSON postback; clock ${cpu.clock}, step ${cpu.clock_step_ms ?? "n/a"} ms`,
  );
  table(
    ["case", "what", "n", "µs/op", "min–max", "minus empty", "workerd CPU µs/op (/proc, mean)"],
    Object.entries(cpu.cases).map(([name, c]) => [
      name,
      c.what,
      c.n,
      fmt(c.us_per_op_median, 2),
      `${fmt(c.us_per_op_min, 2)}–${fmt(c.us_per_op_max, 2)}`,
      fmt(c.us_per_op_minus_empty, 2),
      c.process_cpu_us_per_op === null ? "n/a" : fmt(c.process_cpu_us_per_op, 2),
    ]),
  );
  console.log(cpuHeadline(cpu));
}

const cpuHeadline = (cpu) =>
  `(6) verify-and-validate: ${fmt(cpu.verify_validate_us, 1)} µs per postback in workerd; of which the zod schema ` +
  `≈ ${fmt(cpu.derived.schema_us, 1)} µs, the exact-money reviver ≈ ${fmt(cpu.derived.exact_money_parse_over_json_parse_us, 1)} µs over a plain JSON.parse`;

main().catch((error) => {
  console.error(`bench failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
});
