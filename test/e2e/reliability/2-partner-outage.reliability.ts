/**
 * Partner outage: the local partner answers 500, then hangs past the partner's 1 s timeout, then
 * recovers, while every conversion goes pending → approved → paid. Every delivery arrives, none
 * twice after deduplicating on webhook-id, every attempt the partner saw is in the delivery's
 * attempts_log, and each conversion's updates reached the partner in order: no update was sent
 * before the last attempt of the one before it. The outage fails far more attempts than the
 * breaker's `min_attempts`, so its breaker opens; a short cool-down lets its probes find the
 * partner recovered within the scenario, and the partner ends active with its breaker closed.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PartnerAnswer, type PartnerServer, type ReceivedRequest, startPartnerServer } from "../partner-server";
import {
  adminJson,
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
  scaled,
  sleep,
  startHub,
} from "./harness";

const TRANSACTIONS = scaled(40, 10);
/** Each conversion's updates, in the order the network sends them (each step one the lifecycle allows). */
const LIFECYCLE = ["pending", "approved", "paid"] as const;
/** Each phase of the outage lasts at least this long, and until the partner has shown it (a 500, a hold). */
const FAILING_MS = 4_000;
const HANGING_MS = 5_000;
const PHASE_CAP_MS = 60_000;
const TIMEOUT_MS = 1_000;
const HOLD_MS = 2_500;
/** The default breaker (10 attempts, 80 %) but a 1 s cool-down, so probes (1, 2, 4, … s apart) find the recovery soon. */
const BREAKER = { cooldown_seconds: 1 };
const DEFAULT_MIN_ATTEMPTS = 10;
const SETTLE_MS = 180_000;
const QUIET_MS = 3_000;

let hub: Hub;
let partnerServer: PartnerServer;
let network: Network;
let partner: Partner;
let phase: "failing" | "hanging" | "recovered" = "failing";

beforeAll(async () => {
  partnerServer = await startPartnerServer((): PartnerAnswer => {
    if (phase === "failing") return { status: 500, body: "down" };
    if (phase === "hanging") return { holdMs: HOLD_MS, status: 200, body: "too late" };
    return { status: 200, body: "ok" };
  });
  hub = await startHub();
  network = await createNetwork(hub, "outage");
  partner = await createPartner(hub, partnerServer.origin, [network.id], {
    timeoutMs: TIMEOUT_MS,
    retrySchedule: [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5],
    breaker: BREAKER,
  });
});

afterAll(async () => {
  await partnerServer?.close();
  await hub?.stop();
});

interface Attempt {
  attempt: number;
  http_status: number | null;
  error_class: string | null;
  outcome: string;
}

interface PartnerHealth {
  status: string;
  health?: { breaker: string; transitions: { from: string; to: string; reason: string; at: string }[] };
}

/** Posts one conversion's updates in order, each after the answer to the one before. */
async function postLifecycle(transactionId: string): Promise<PostResult[]> {
  const results: PostResult[] = [];
  for (const status of LIFECYCLE) results.push(await postSigned(hub, network, makePostback(transactionId, { status })));
  return results;
}

/** Waits at least `minimumMs`, and until `shown()` (capped): a phase of the outage the hub has met. */
async function holdPhase(since: number, minimumMs: number, shown: () => boolean): Promise<void> {
  await sleep(Math.max(0, minimumMs - (Date.now() - since)));
  const cap = Date.now() + PHASE_CAP_MS;
  while (!shown() && Date.now() < cap) await sleep(100);
}

/**
 * Per conversion, from the partner's side (requests in the order it received them): whether the
 * statuses first appeared in event order, and how many updates were received before the last
 * attempt of an earlier one.
 */
function orderSeen(requests: readonly ReceivedRequest[], eventsByTransaction: Map<string, string[]>) {
  const indexes = new Map<string, number[]>();
  const statusesByTransaction = new Map<string, string[]>();
  requests.forEach((request, index) => {
    const query = new URL(request.url, partnerServer.origin).searchParams;
    const event = query.get("event") ?? "";
    indexes.set(event, [...(indexes.get(event) ?? []), index]);
    const tx = query.get("tx") ?? "";
    const statuses = statusesByTransaction.get(tx) ?? [];
    const status = query.get("status") ?? "";
    if (!statuses.includes(status)) statuses.push(status);
    statusesByTransaction.set(tx, statuses);
  });
  let outOfOrder = 0;
  let overtaking = 0;
  for (const [tx, events] of eventsByTransaction) {
    if (JSON.stringify(statusesByTransaction.get(tx)) !== JSON.stringify(LIFECYCLE)) outOfOrder++;
    events.slice(1).forEach((event, i) => {
      const earlierLast = Math.max(...(indexes.get(events[i] ?? "") ?? []));
      const laterFirst = Math.min(...(indexes.get(event) ?? []));
      if (!(earlierLast < laterFirst)) overtaking++;
    });
  }
  return { outOfOrder, overtaking };
}

it("delivers every update once, in order per conversion, after 500s and timeouts; the breaker opens and closes", async () => {
  const started = Date.now();
  phase = "failing";
  const lifecycles = await runPool(TRANSACTIONS, 8, () => postLifecycle(`outage-${randomUUID()}`));
  const results = lifecycles.flat();
  const acknowledged = results.filter((r) => r.status >= 200 && r.status < 300);
  await holdPhase(started, FAILING_MS, () => partnerServer.requests.some((r) => r.answeredStatus === 500));
  phase = "hanging";
  await holdPhase(Date.now(), HANGING_MS, () => partnerServer.requests.some((r) => r.held && r.hubHungUp));
  phase = "recovered";

  const delivered = await pollUntil(
    () => deliveries(hub, partner.id),
    (rows) => rows.length === acknowledged.length && rows.every((d) => d.state === "delivered"),
    SETTLE_MS,
  );
  await sleep(QUIET_MS);
  const stored = (await conversions(hub, network.id)).length;
  const rows = await deliveries(hub, partner.id);
  const requests = [...partnerServer.requests];
  const health = await adminJson<PartnerHealth>(hub, `/v1/partners/${partner.id}`, 200);

  const okById = new Map<string, number>();
  const seenById = new Map<string, number>();
  for (const request of requests) {
    seenById.set(request.webhookId, (seenById.get(request.webhookId) ?? 0) + 1);
    if (request.answeredStatus === 200) okById.set(request.webhookId, (okById.get(request.webhookId) ?? 0) + 1);
  }
  let attemptsLogged = 0;
  let attemptsMismatched = 0;
  const outcomes: Record<string, number> = {};
  for (const row of rows) {
    const detail = await adminJson<{ attempts: number; attempts_log: Attempt[] }>(hub, `/v1/deliveries/${row.id}`, 200);
    attemptsLogged += detail.attempts_log.length;
    for (const a of detail.attempts_log) {
      const key = `${a.http_status ?? a.error_class}:${a.outcome}`;
      outcomes[key] = (outcomes[key] ?? 0) + 1;
    }
    if (detail.attempts_log.length !== (seenById.get(row.id) ?? 0) || detail.attempts !== detail.attempts_log.length) {
      attemptsMismatched++;
    }
  }
  // What the network was told, per conversion in the order it sent the updates.
  const eventsByTransaction = new Map<string, string[]>();
  let unexpectedAnswers = 0;
  for (const lifecycle of lifecycles) {
    lifecycle.forEach((result, i) => {
      const expected = { status: i === 0 ? "accepted" : "updated", conversion_status: LIFECYCLE[i] };
      if (result.answer?.status !== expected.status || result.answer.conversion_status !== expected.conversion_status)
        unexpectedAnswers++;
    });
    const tx = lifecycle[0]?.answer?.transaction_id ?? "";
    eventsByTransaction.set(
      tx,
      lifecycle.map((result) => result.answer?.event_id ?? ""),
    );
  }
  const order = orderSeen(requests, eventsByTransaction);
  const firstSuccess = requests.findIndex((r) => r.answeredStatus === 200);
  const failedBeforeRecovery = firstSuccess === -1 ? requests.length : firstSuccess;
  const transitions = [...(health.health?.transitions ?? [])].reverse();

  const ackedEvents = new Set(acknowledged.map((r) => r.answer?.event_id));
  const deliveredEvents = new Set(rows.filter((d) => okById.has(d.id)).map((d) => d.event_id));
  const counts = {
    sent: results.length,
    acknowledged: acknowledged.length,
    stored,
    delivered: deliveredEvents.size,
    lost: [...ackedEvents].filter((id) => !deliveredEvents.has(String(id))).length,
    unexpected_answers: unexpectedAnswers,
    partner_requests: requests.length,
    answered_500: requests.filter((r) => r.answeredStatus === 500).length,
    hub_hung_up: requests.filter((r) => r.hubHungUp).length,
    failed_before_recovery: failedBeforeRecovery,
    attempts_logged: attemptsLogged,
    attempts_mismatched: attemptsMismatched,
    webhook_ids_200_more_than_once: [...okById.values()].filter((n) => n > 1).length,
    conversions_out_of_order: order.outOfOrder,
    updates_sent_before_the_previous_finished: order.overtaking,
    breaker_openings: transitions.filter((t) => t.to === "open").length,
    breaker_probes: transitions.filter((t) => t.to === "half_open").length,
    settle_ms: delivered.waitedMs,
  };
  report("partner outage", counts, Date.now() - started);
  console.log("attempt outcomes:", outcomes);
  console.log("breaker:", transitions.map((t) => `${t.from} → ${t.to} (${t.reason})`).join("; ") || "never moved");

  expect(acknowledged.length).toBe(TRANSACTIONS * LIFECYCLE.length);
  expect(unexpectedAnswers).toBe(0);
  expect(delivered.ready).toBe(true);
  expect(stored).toBe(TRANSACTIONS);
  expect(counts.lost).toBe(0);
  expect(counts.delivered).toBe(TRANSACTIONS * LIFECYCLE.length);
  expect(counts.webhook_ids_200_more_than_once).toBe(0);
  expect(counts.answered_500).toBeGreaterThan(0);
  expect(counts.hub_hung_up).toBeGreaterThan(0);
  expect(attemptsLogged).toBe(requests.length);
  expect(attemptsMismatched).toBe(0);
  expect(counts.conversions_out_of_order).toBe(0);
  expect(counts.updates_sent_before_the_previous_finished).toBe(0);
  // Every attempt before the first 200 failed: with at least min_attempts of them the breaker opened.
  if (failedBeforeRecovery >= DEFAULT_MIN_ATTEMPTS)
    expect(transitions[0]).toMatchObject({ from: "closed", to: "open" });
  if (transitions.length > 0) expect(transitions.at(-1)).toMatchObject({ from: "half_open", to: "closed" });
  expect(health).toMatchObject({ status: "active", health: { breaker: "closed" } });
});
