/**
 * Partner outage: the local partner answers 500, then hangs past the partner's 1 s timeout, then
 * recovers. Every delivery arrives, none twice after deduplicating on webhook-id, and every
 * attempt the partner saw is in the delivery's attempts_log.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PartnerAnswer, type PartnerServer, startPartnerServer } from "../partner-server";
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
  pollUntil,
  postSigned,
  report,
  runPool,
  scaled,
  sleep,
  startHub,
} from "./harness";

const POSTBACKS = scaled(40, 10);
const FAILING_MS = 4_000;
const HANGING_MS = 5_000;
const TIMEOUT_MS = 1_000;
const HOLD_MS = 2_500;
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

it("delivers everything once after 500s and timeouts, and records every attempt", async () => {
  const started = Date.now();
  phase = "failing";
  const results = await runPool(POSTBACKS, 8, () => postSigned(hub, network, makePostback(`outage-${randomUUID()}`)));
  const acknowledged = results.filter((r) => r.status >= 200 && r.status < 300);
  await sleep(Math.max(0, FAILING_MS - (Date.now() - started)));
  phase = "hanging";
  await sleep(HANGING_MS);
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
  const ackedEvents = new Set(acknowledged.map((r) => r.answer?.event_id));
  const deliveredEvents = new Set(rows.filter((d) => okById.has(d.id)).map((d) => d.event_id));
  const counts = {
    sent: results.length,
    acknowledged: acknowledged.length,
    stored,
    delivered: deliveredEvents.size,
    lost: [...ackedEvents].filter((id) => !deliveredEvents.has(String(id))).length,
    partner_requests: requests.length,
    answered_500: requests.filter((r) => r.answeredStatus === 500).length,
    hub_hung_up: requests.filter((r) => r.hubHungUp).length,
    attempts_logged: attemptsLogged,
    attempts_mismatched: attemptsMismatched,
    webhook_ids_200_more_than_once: [...okById.values()].filter((n) => n > 1).length,
    settle_ms: delivered.waitedMs,
  };
  report("partner outage", counts, Date.now() - started);
  console.log("attempt outcomes:", outcomes);

  expect(acknowledged.length).toBe(POSTBACKS);
  expect(delivered.ready).toBe(true);
  expect(stored).toBe(POSTBACKS);
  expect(counts.lost).toBe(0);
  expect(counts.delivered).toBe(POSTBACKS);
  expect(counts.webhook_ids_200_more_than_once).toBe(0);
  expect(counts.answered_500).toBeGreaterThan(0);
  expect(counts.hub_hung_up).toBeGreaterThan(0);
  expect(attemptsLogged).toBe(requests.length);
  expect(attemptsMismatched).toBe(0);
});
