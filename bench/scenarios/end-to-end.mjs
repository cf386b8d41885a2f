// (5) End to end: postbacks at a steady rate to a network with one partner; the time from each 2xx
// to the partner's first receipt of that transaction, and the events consumer's batch sizes meanwhile.
import { firstReceipts, postbackBody } from "../lib/hub.mjs";
import { log, SETTINGS } from "../lib/settings.mjs";
import { signedPostback } from "../lib/sign.mjs";
import { batchSummary, percentile } from "../lib/stats.mjs";
import { sleep } from "../lib/wrangler.mjs";

const DELIVERY_WAIT_MS = 60_000;

/** Runs (5) on a quiet hub; answers the `report.e2e` object. */
export async function runEndToEnd({ hub, partner, queue, network }) {
  const { E2E_POSTBACKS, E2E_RATE } = SETTINGS;
  await sleep(3000);
  queue.take();
  log(`(5) end to end: ${E2E_POSTBACKS} postbacks at ${E2E_RATE}/s`);
  const requests = Array.from({ length: E2E_POSTBACKS }, (_, i) => ({
    tx: `e2e-${i}`,
    request: signedPostback(network, postbackBody(`e2e-${i}`)),
  }));
  const acknowledged = new Map();
  const start = Date.now();
  const inflight = [];
  for (const [i, { tx, request }] of requests.entries()) {
    const due = start + (i * 1000) / E2E_RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    inflight.push(
      fetch(`${hub.baseUrl}${request.path}`, request).then(async (response) => {
        await response.text();
        if (response.status === 200) acknowledged.set(tx, Date.now());
      }),
    );
  }
  await Promise.all(inflight);
  // Only this scenario's transactions count: the partner also received the warm-up postback's
  // delivery, which made an earlier version stop waiting one delivery early (and report 299/300).
  const deliveredSoFar = () => {
    const receipts = firstReceipts(partner);
    return [...acknowledged.keys()].filter((tx) => receipts.has(tx)).length;
  };
  const waitUntil = Date.now() + DELIVERY_WAIT_MS;
  while (deliveredSoFar() < acknowledged.size && Date.now() < waitUntil) await sleep(100);
  const received = firstReceipts(partner);
  const latencies = [...acknowledged].flatMap(([tx, at]) => (received.has(tx) ? [received.get(tx) - at] : []));
  await sleep(2000);
  return {
    sent: E2E_POSTBACKS,
    acknowledged: acknowledged.size,
    delivered: latencies.length,
    partner_requests: partner.requests.length,
    p50_ms: percentile(latencies, 50),
    p99_ms: percentile(latencies, 99),
    max_ms: Math.max(...latencies),
    events_batches: batchSummary(queue.take()),
  };
}

/** Every postback must have been acknowledged, or the figures describe something else. */
export function checkEndToEnd(e2e) {
  if (e2e.acknowledged !== e2e.sent) throw new Error(`end to end: only ${e2e.acknowledged} postbacks got a 200`);
  log(`(5) delivered ${e2e.delivered}/${e2e.acknowledged}; p50 ${e2e.p50_ms} ms, p99 ${e2e.p99_ms} ms`);
}
