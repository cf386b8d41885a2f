// (8) A failing partner beside a healthy one: the healthy partner's 2xx → receipt p50 while a second
// partner receives the same postbacks and fails every request (a 500, then an answer held past its
// timeout, and so on, its breaker kept from opening so that it fails all along: the worst case),
// as a ratio to the same without it. Each round posts to the healthy partner alone, then creates
// the failing partner, posts again, and deletes it; the ratio is taken per round. Its own hub, so
// that the failing partner's retries touch no other scenario.
import { startPartnerServer } from "../../test/e2e/partner-server.ts";
import { admin, firstReceipts, postbackBody } from "../lib/hub.mjs";
import { GOALS, log, SETTINGS } from "../lib/settings.mjs";
import { signedPostback, signer } from "../lib/sign.mjs";
import { medianOf, percentile } from "../lib/stats.mjs";
import { fmt, met, printTable } from "../lib/table.mjs";
import { sleep, startWranglerDev } from "../lib/wrangler.mjs";

const DELIVERY_WAIT_MS = 60_000;
const FAILING_TIMEOUT_MS = 1_000;
const HOLD_MS = 3_000;
const FAILING_RETRY_SCHEDULE_SECONDS = Array.from({ length: 20 }, () => 1);
/** The breaker would open after 10 failures and leave the failing partner idle: here it never does. */
const NEVER_OPENS = { min_attempts: 100_000, failure_percent: 100 };
const WARMUP_POSTBACKS = 20;
/** After the failing partner is deleted, its coordinator finds its deliveries failed; wait until it is quiet. */
const QUIET_MS = 3_000;
const QUIET_CAP_MS = 30_000;

/** Answers `report.scenarios.partner_isolation`. */
export async function runPartnerIsolation() {
  const stops = [];
  try {
    log("(8) starting a hub (wrangler dev, migrated temp state), a healthy and a failing partner");
    const hub = await startWranglerDev({ label: "bench-isolation" });
    stops.push(hub.stop);
    const healthy = await startPartnerServer(() => ({ status: 200, body: "OK" }));
    stops.push(healthy.close);
    let failures = 0;
    const failing = await startPartnerServer(() => {
      failures++;
      return failures % 2 === 1 ? { status: 500, body: "down" } : { holdMs: HOLD_MS, status: 200, body: "too late" };
    });
    stops.push(failing.close);

    const created = await admin(hub, "POST", "/v1/networks", { id: "bench-isolation", name: "Bench isolation" });
    const network = { id: "bench-isolation", sign: signer(created.secret) };
    await admin(hub, "POST", "/v1/partners", {
      name: "Bench healthy partner",
      url_template: `${healthy.origin}/pb?tx={transaction_id}&status={status}`,
      filters: { networks: [network.id] },
    });
    await postPhase({ hub, network, healthy, label: "warm", count: WARMUP_POSTBACKS });

    const rounds = [];
    for (let r = 1; r <= SETTINGS.ROUNDS; r++) {
      const alone = await postPhase({ hub, network, healthy, label: `alone-${r}` });
      const partner = await admin(hub, "POST", "/v1/partners", {
        name: `Bench failing partner ${r}`,
        url_template: `${failing.origin}/pb?tx={transaction_id}&status={status}`,
        filters: { networks: [network.id] },
        timeout_ms: FAILING_TIMEOUT_MS,
        retry_schedule_seconds: FAILING_RETRY_SCHEDULE_SECONDS,
        breaker: NEVER_OPENS,
      });
      const before = failing.requests.length;
      const beside = await postPhase({ hub, network, healthy, label: `beside-${r}` });
      const sent = failing.requests.slice(before);
      await admin(hub, "DELETE", `/v1/partners/${partner.id}`);
      await quiet(failing);
      const round = {
        alone,
        beside,
        failing: {
          requests: sent.length,
          answered_500: sent.filter((request) => request.answeredStatus === 500).length,
          held: sent.filter((request) => request.held).length,
          answered_2xx: sent.filter((request) => request.answeredStatus === 200).length,
        },
        ratio: beside.p50_ms / alone.p50_ms,
      };
      rounds.push(round);
      log(
        `(8) round ${r}: healthy p50 ${fmt(alone.p50_ms)} ms alone, ${fmt(beside.p50_ms)} ms beside the failing partner (${round.failing.requests} requests to it, ${round.failing.answered_500} × 500, ${round.failing.held} held); ratio ${fmt(round.ratio, 2)}`,
      );
    }
    return { rounds, ratio_median: medianOf(rounds, (round) => round.ratio) };
  } finally {
    log("(8) stopping its hub and partners");
    for (const stop of stops.reverse()) await stop().catch((error) => console.error(error));
  }
}

/**
 * Posts `count` new conversions at BENCH_E2E_RATE and waits for the healthy partner to receive them
 * all; the time from each 2xx to the healthy partner's first receipt of that transaction.
 */
async function postPhase({ hub, network, healthy, label, count = SETTINGS.ISOLATION_POSTBACKS }) {
  const acknowledged = new Map();
  const start = Date.now();
  const inflight = [];
  for (let i = 0; i < count; i++) {
    const due = start + (i * 1000) / SETTINGS.E2E_RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    const tx = `iso-${label}-${i}`;
    const request = signedPostback(network, postbackBody(tx));
    inflight.push(
      fetch(`${hub.baseUrl}${request.path}`, request).then(async (response) => {
        await response.text();
        if (response.status === 200) acknowledged.set(tx, Date.now());
      }),
    );
  }
  await Promise.all(inflight);
  if (acknowledged.size !== count)
    throw new Error(`(8) ${label}: only ${acknowledged.size}/${count} postbacks got a 200`);
  const waitUntil = Date.now() + DELIVERY_WAIT_MS;
  const delivered = () => {
    const receipts = firstReceipts(healthy);
    return [...acknowledged.keys()].filter((tx) => receipts.has(tx)).length;
  };
  while (delivered() < count && Date.now() < waitUntil) await sleep(100);
  const received = firstReceipts(healthy);
  const latencies = [...acknowledged].flatMap(([tx, at]) => (received.has(tx) ? [received.get(tx) - at] : []));
  return {
    sent: count,
    delivered: latencies.length,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
  };
}

/** Waits until `server` has received nothing for QUIET_MS (at most QUIET_CAP_MS). */
async function quiet(server) {
  const cap = Date.now() + QUIET_CAP_MS;
  let seen = server.requests.length;
  let since = Date.now();
  while (Date.now() - since < QUIET_MS && Date.now() < cap) {
    await sleep(200);
    if (server.requests.length !== seen) [seen, since] = [server.requests.length, Date.now()];
  }
}

/** The rows of (8)'s table: one per round, then the median ratio against its goal. */
export function isolationRows(result) {
  const rows = result.rounds.map((round, i) => ({
    label: `round ${i + 1}`,
    alone: `${fmt(round.alone.p50_ms)} / ${fmt(round.alone.p99_ms)} ms`,
    beside: `${fmt(round.beside.p50_ms)} / ${fmt(round.beside.p99_ms)} ms`,
    failing: `${round.failing.requests} (${round.failing.answered_500} × 500, ${round.failing.held} held)`,
    ratio: fmt(round.ratio, 2),
  }));
  return [
    ...rows,
    {
      label: "median",
      ratio: fmt(result.ratio_median, 2),
      goal: `≤ ${fmt(GOALS.healthy_beside_failing_vs_alone, 2)}`,
      met: result.ratio_median <= GOALS.healthy_beside_failing_vs_alone,
    },
  ];
}

export const ISOLATION_COLUMNS = [
  { header: "(8)", cell: (row) => row.label },
  { header: "healthy alone p50 / p99", cell: (row) => row.alone },
  { header: "beside the failing one", cell: (row) => row.beside },
  { header: "failing partner's requests", cell: (row) => row.failing },
  { header: "p50 ratio", cell: (row) => row.ratio },
  { header: "goal", cell: (row) => row.goal },
  { header: "met", cell: (row) => met(row.met) },
];

export function printPartnerIsolation(result) {
  console.log(
    `\nA failing partner beside a healthy one (${SETTINGS.ISOLATION_POSTBACKS} postbacks per phase at ${SETTINGS.E2E_RATE}/s; 2xx → healthy receipt)`,
  );
  printTable(ISOLATION_COLUMNS, isolationRows(result));
}
