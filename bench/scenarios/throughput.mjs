// Scenarios (1) to (5) share one hub (`wrangler dev`, migrated temp state), the cost-floor worker
// and a partner: this module starts them, creates the networks, runs the scenarios in their order
// ((5) first on a quiet hub, then (1)+(2), (3), (4)) and prints their two tables.
import path from "node:path";
import { startPartnerServer } from "../../test/e2e/partner-server.ts";
import { admin, postbackBody, queueWatcher } from "../lib/hub.mjs";
import { load } from "../lib/load.mjs";
import { GOALS, log, SETTINGS, WARMUP_SECONDS } from "../lib/settings.mjs";
import { signedPostback, signer } from "../lib/sign.mjs";
import { median } from "../lib/stats.mjs";
import { fmt, met, printTable } from "../lib/table.mjs";
import { ROOT, startWranglerDev } from "../lib/wrangler.mjs";
import { clicksPool, runClicks } from "./clicks.mjs";
import { duplicatesPool, runDuplicates } from "./duplicates.mjs";
import { edgePool, HEALTH_POOL, runEdge } from "./edge.mjs";
import { checkEndToEnd, runEndToEnd } from "./end-to-end.mjs";
import { floorPool, newConversionsPool, queuedFloorPool, runIngestNew } from "./ingest-new.mjs";

/** Fills `report.e2e` and `report.scenarios.{edge, ingest_new, duplicate}`. */
export async function runThroughput(report) {
  const stops = [];
  try {
    const { hub, floor, partner, queue, networks, e2eNetwork, clickTarget } = await setUp(stops);

    report.e2e = await runEndToEnd({ hub, partner, queue, network: e2eNetwork });
    checkEndToEnd(report.e2e);

    const floorRequests = floorPool();
    const pools = {
      health: HEALTH_POOL,
      edge: edgePool(networks),
      floor: floorRequests,
      queuedFloor: queuedFloorPool(floorRequests),
      newConversions: (round) => newConversionsPool(networks, round),
      clicks: clicksPool(clickTarget.offerId, clickTarget.partnerIds),
    };
    log("warming up every target");
    await load(hub.baseUrl, pools.health, WARMUP_SECONDS);
    await load(hub.baseUrl, pools.edge, WARMUP_SECONDS);
    await load(floor.baseUrl, pools.floor, WARMUP_SECONDS);
    await load(floor.baseUrl, pools.queuedFloor, WARMUP_SECONDS);
    await load(hub.baseUrl, pools.newConversions("w"), WARMUP_SECONDS);
    await load(hub.baseUrl, pools.clicks, WARMUP_SECONDS);

    const edge = await runEdge({ hub, pools });
    const clicks = await runClicks({ hub, pools });
    const { ingestNew, accepted } = await runIngestNew({ hub, floor, queue, pools });
    const duplicate = await runDuplicates({ hub, pools: { ...pools, duplicates: duplicatesPool(networks, accepted) } });
    Object.assign(report.scenarios, { edge, clicks, ingest_new: ingestNew, duplicate });
  } finally {
    log("stopping the hub, the floor worker and the partner");
    for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  }
}

/** The hub, the floor worker, the partner and the networks; each stop goes on `stops` as it starts. */
async function setUp(stops) {
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
  for (let i = 0; i < SETTINGS.NETWORKS; i++) {
    const id = `bench-${String(i).padStart(3, "0")}`;
    const created = await admin(hub, "POST", "/v1/networks", { id, name: `Bench ${i}` });
    networks.push({ id, sign: signer(created.secret) });
  }
  const e2eCreated = await admin(hub, "POST", "/v1/networks", { id: "bench-e2e", name: "E2E" });
  const e2eNetwork = { id: "bench-e2e", sign: signer(e2eCreated.secret) };
  await admin(hub, "POST", "/v1/partners", {
    name: "Bench partner",
    url_template: `${partner.origin}/pb?tx={transaction_id}&status={status}`,
    filters: { networks: ["bench-e2e"] },
  });
  // (7)'s tracking links: one offer of the e2e network, promoted by three attributed partners.
  const partnerIds = [];
  for (let i = 0; i < 3; i++) {
    const created = await admin(hub, "POST", "/v1/partners", {
      name: `Bench affiliate ${i}`,
      url_template: `${partner.origin}/aff${i}?tx={transaction_id}&payout={payout}&s1={sub1}`,
      routing: "attributed",
    });
    partnerIds.push(created.id);
  }
  const offer = await admin(hub, "POST", "/v1/offers", {
    network_id: "bench-e2e",
    name: "Bench offer",
    landing_url: "https://shop.example/landing?cid={click_id}&s1={sub1}",
    payouts: { default: [{ fixed: { amount: "2.50", currency: "USD" } }] },
  });
  const clickTarget = { offerId: offer.id, partnerIds };
  log(`created ${SETTINGS.NETWORKS + 1} networks, a partner at ${partner.origin}, and an offer with 3 affiliates`);
  for (const network of [...networks, e2eNetwork]) {
    const request = signedPostback(network, postbackBody(`warm-${network.id}`));
    const response = await fetch(`${hub.baseUrl}${request.path}`, request);
    const text = await response.text();
    if (response.status !== 200) throw new Error(`warm-up postback: ${response.status} ${text}`);
  }
  return { hub, floor, partner, queue, networks, e2eNetwork, clickTarget };
}

const atLeast = (goal) => `≥ ${fmt(goal, 2)}`;

/**
 * The rows of the throughput table, as data: a label, the load runs it summarises (one per round),
 * the ratio's text, and the goal with whether it was met.
 */
export function throughputRows(scenarios) {
  const { edge, clicks, ingest_new: ingest, duplicate } = scenarios;
  const runs = (rounds, key) => rounds.map((round) => round[key]);
  return [
    { label: "(1) GET /health", runs: runs(edge.rounds, "health"), ratio: "1" },
    {
      label: "(2) edge checks (422)",
      runs: runs(edge.rounds, "edge"),
      ratio: `${fmt(edge.ratio_median, 2)} of (1)`,
      goal: atLeast(GOALS.edge_vs_health),
      met: edge.ratio_median >= GOALS.edge_vs_health,
    },
    {
      label: "(7) click redirect (302)",
      runs: runs(clicks.rounds, "clicks"),
      ratio: `${fmt(clicks.ratio_median, 2)} of (1)`,
      goal: atLeast(GOALS.click_vs_health),
      met: clicks.ratio_median >= GOALS.click_vs_health,
    },
    { label: "    floor (new DO + row)", runs: runs(ingest.rounds, "floor") },
    {
      label: "    floor + queue hop",
      runs: runs(ingest.rounds, "floor_queued"),
      ratio: `(3) is ${fmt(ingest.ratio_floor_queued_median, 2)} of it`,
    },
    {
      label: "(3) ingest new",
      runs: runs(ingest.rounds, "ingest"),
      ratio: `${fmt(ingest.ratio_floor_median, 2)} of floor, ${fmt(ingest.ratio_health_median, 2)} of (1)`,
      goal: `${atLeast(GOALS.ingest_new_vs_floor)} of floor`,
      met: ingest.ratio_floor_median >= GOALS.ingest_new_vs_floor,
    },
    {
      label: "(4) ingest duplicates",
      runs: runs(duplicate.rounds, "duplicate"),
      ratio: `${fmt(duplicate.ratio_median, 2)} of (1)`,
      goal: atLeast(GOALS.ingest_duplicate_vs_health),
      met: duplicate.ratio_median >= GOALS.ingest_duplicate_vs_health,
    },
  ];
}

const medianOfRuns = (key) => (row) => fmt(median(row.runs.map((run) => run[key])));

export const THROUGHPUT_COLUMNS = [
  { header: "scenario", cell: (row) => row.label },
  { header: "req/s", cell: medianOfRuns("rps") },
  { header: "p50 ms", cell: medianOfRuns("p50_ms") },
  { header: "p99 ms", cell: medianOfRuns("p99_ms") },
  { header: "ratio", cell: (row) => row.ratio },
  { header: "goal", cell: (row) => row.goal },
  { header: "met", cell: (row) => met(row.met) },
];

/** The rows of the end-to-end table: (5)'s latencies, and the events consumer's batches in (5) and (3). */
export function endToEndRows(e2e, underLoad) {
  const batches = e2e.events_batches;
  return [
    {
      measure: `(5) 2xx → partner p50 (${e2e.delivered}/${e2e.acknowledged} delivered)`,
      value: `${fmt(e2e.p50_ms)} ms`,
      goal: `< ${GOALS.e2e_p50_ms} ms`,
      met: e2e.p50_ms < GOALS.e2e_p50_ms,
    },
    { measure: "(5) 2xx → partner p99", value: `${fmt(e2e.p99_ms)} ms` },
    {
      measure: `(5) events per D1 batch at ${SETTINGS.E2E_RATE}/s (${batches.batches} batches)`,
      value: `mean ${fmt(batches.mean, 1)}`,
    },
    {
      measure: `(5) events per D1 batch under load (${underLoad.batches} batches, ${underLoad.messages} events)`,
      value: `mean ${fmt(underLoad.mean, 1)}, median ${fmt(underLoad.median)}, max ${fmt(underLoad.max)}`,
      goal: `≥ ${GOALS.rows_per_d1_batch}`,
      met: underLoad.mean >= GOALS.rows_per_d1_batch,
    },
  ];
}

export const END_TO_END_COLUMNS = [
  { header: "measure", cell: (row) => row.measure },
  { header: "value", cell: (row) => row.value },
  { header: "goal", cell: (row) => row.goal },
  { header: "met", cell: (row) => met(row.met) },
];

export function printThroughput(report) {
  console.log("\nThroughput (median of rounds; ratios are per round, then the median)");
  printTable(THROUGHPUT_COLUMNS, throughputRows(report.scenarios));
  console.log("\nEnd to end and the events consumer");
  printTable(END_TO_END_COLUMNS, endToEndRows(report.e2e, report.scenarios.ingest_new.events_batches_under_load));
}
