/**
 * Duplicate storm: many postbacks over many parallel connections, most of them repeats, including
 * 100 concurrent copies of one transaction. Exactly one conversion per transaction in D1, exactly
 * one delivery per (event, partner) at a local partner after deduplicating on webhook-id, no 5xx.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "../partner-server";
import {
  conversions,
  createNetwork,
  createPartner,
  deliveries,
  type Hub,
  makePostback,
  type Network,
  type Partner,
  type PostResult,
  pollUntil,
  postSigned,
  report,
  runPool,
  SCALE,
  scaled,
  sleep,
  startHub,
  statusHistogram,
} from "./harness";

const TOTAL = scaled(1_500, 300);
const HOT_COPIES = 100;
const UNIQUE_SHARE = 0.35;
const CONNECTIONS = 32;
/** The ingest rate limit is 6000 a minute per network; spread bigger runs over several networks. */
const PER_NETWORK = 3_000;
const SETTLE_MS = 120_000 + 30_000 * Math.max(1, SCALE);
const QUIET_MS = 3_000;

let hub: Hub;
let partnerServer: PartnerServer;
let networks: Network[];
let partner: Partner;

beforeAll(async () => {
  partnerServer = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = await startHub();
  networks = [];
  for (let i = 0; i < Math.ceil(TOTAL / PER_NETWORK); i++) networks.push(await createNetwork(hub, "storm"));
  partner = await createPartner(
    hub,
    partnerServer.origin,
    networks.map((n) => n.id),
  );
});

afterAll(async () => {
  await partnerServer?.close();
  await hub?.stop();
});

it("stores one conversion per transaction and delivers each event once, with no 5xx", async () => {
  const started = Date.now();
  const hot = { network: networks[0] as Network, transactionId: `hot-${randomUUID()}` };
  const uniqueCount = Math.max(1, Math.round((TOTAL - HOT_COPIES) * UNIQUE_SHARE));
  const transactions = Array.from({ length: uniqueCount }, (_, i) => ({
    network: networks[i % networks.length] as Network,
    transactionId: `storm-${i}-${randomUUID().slice(0, 8)}`,
  }));
  // Each transaction once, then random repeats, shuffled; the 100 hot copies go out together.
  const plan = [...transactions];
  while (plan.length < TOTAL - HOT_COPIES) plan.push(transactions[Math.floor(Math.random() * uniqueCount)] as never);
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [plan[i], plan[j]] = [plan[j] as never, plan[i] as never];
  }
  const send = (t: { network: Network; transactionId: string }) =>
    postSigned(hub, t.network, makePostback(t.transactionId));

  const hotRun = Promise.all(Array.from({ length: HOT_COPIES }, () => send(hot)));
  const [hotResults, results] = await Promise.all([
    hotRun,
    runPool(plan.length, CONNECTIONS, (i) => send(plan[i] as never)),
  ]);
  const all: PostResult[] = [...hotResults, ...results];
  const ingestMs = Date.now() - started;

  const acknowledged = all.filter((r) => r.status >= 200 && r.status < 300);
  const serverErrors = all.filter((r) => r.status >= 500 || r.status === 0);
  const accepted = acknowledged.filter((r) => r.answer?.status === "accepted");
  const hotAccepted = hotResults.filter((r) => r.answer?.status === "accepted");
  const eventIds = new Set(acknowledged.map((r) => r.answer?.event_id));
  const expectedTransactions = uniqueCount + 1;

  // D1, through the conversions API, and the deliveries the hub recorded.
  const stored = await pollUntil(
    async () => {
      let count = 0;
      for (const network of networks) count += (await conversions(hub, network.id)).length;
      return count;
    },
    (count) => count >= expectedTransactions,
    SETTLE_MS,
  );
  const arrived = await pollUntil(
    async () => new Set(partnerServer.requests.filter((r) => r.answeredStatus === 200).map((r) => r.webhookId)).size,
    (count) => count >= expectedTransactions,
    SETTLE_MS,
  );
  await sleep(QUIET_MS);
  const recorded = await deliveries(hub, partner.id);

  // At the partner: per event (the {event_id} macro), how many distinct webhook-ids, and how many 200s per id.
  const idsByEvent = new Map<string, Set<string>>();
  const okById = new Map<string, number>();
  for (const request of partnerServer.requests) {
    const event = new URL(request.url, partnerServer.origin).searchParams.get("event") ?? "";
    const ids = idsByEvent.get(event) ?? new Set<string>();
    ids.add(request.webhookId);
    idsByEvent.set(event, ids);
    if (request.answeredStatus === 200) okById.set(request.webhookId, (okById.get(request.webhookId) ?? 0) + 1);
  }
  const eventsWithTwoDeliveries = [...idsByEvent.values()].filter((ids) => ids.size > 1).length;
  const redeliveredIds = [...okById.values()].filter((n) => n > 1).length;
  const missingAtPartner = [...eventIds].filter((id) => !idsByEvent.has(String(id))).length;

  const counts = {
    sent: all.length,
    acknowledged: acknowledged.length,
    transactions: expectedTransactions,
    accepted: accepted.length,
    stored: stored.value,
    delivered: arrived.value,
    lost: Math.max(0, expectedTransactions - stored.value) + missingAtPartner,
    server_errors: serverErrors.length,
    hot_accepted: hotAccepted.length,
    events_with_2_delivery_ids: eventsWithTwoDeliveries,
    webhook_ids_200_more_than_once: redeliveredIds,
    ingest_ms: ingestMs,
    settle_ms: Math.max(stored.waitedMs, arrived.waitedMs),
  };
  report("duplicate storm", counts, Date.now() - started);
  console.log("statuses:", statusHistogram(all));

  expect(serverErrors.map((r) => `${r.status} ${r.error}`).slice(0, 5)).toEqual([]);
  expect(acknowledged.length).toBe(all.length);
  expect(accepted.length).toBe(expectedTransactions);
  expect(hotAccepted.length).toBe(1);
  expect(new Set(hotResults.map((r) => r.answer?.event_id)).size).toBe(1);
  expect(eventIds.size).toBe(expectedTransactions);
  expect(stored.value).toBe(expectedTransactions);
  expect(recorded.length).toBe(expectedTransactions);
  expect(new Set(recorded.map((d) => d.event_id)).size).toBe(expectedTransactions);
  expect(arrived.value).toBe(expectedTransactions);
  expect(missingAtPartner).toBe(0);
  expect(eventsWithTwoDeliveries).toBe(0);
  expect(counts.lost).toBe(0);
});
