/**
 * Two partners of one network, through the real `wrangler dev`: a healthy one, and one that fails
 * (500s, and answers held past its timeout). Each partner's deliveries are made by its own
 * coordinator, so the healthy partner's keep arriving as they did when it was alone: each on its
 * first attempt, while the hub is still waiting on the failing partner's answers. Then the failing
 * partner's breaker opens (its API status `paused`, with the reason, and nothing sent to it while
 * open); once the partner recovers, a probe closes the breaker and every waiting delivery reaches
 * it once.
 *
 * Latencies are printed, never asserted: the machine is shared and its timings are noise.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerAnswer, type PartnerServer, type ReceivedRequest, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback, sleep } from "./support";

const POSTBACKS_PER_PHASE = 12;
const POST_EVERY_MS = 400;
/** The failing partner's timeout; it holds its held answers well past it. */
const FAILING_TIMEOUT_MS = 1_500;
const HOLD_MS = 4_000;
/** About a minute of retries: no delivery runs out of them while the partner fails. */
const FAILING_RETRY_SCHEDULE_SECONDS = [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 5, 5, 5, 5, 5];
/** While its healthy neighbour is measured, the failing partner's breaker must not stop it failing. */
const NEVER_OPENS = { min_attempts: 100_000, failure_percent: 100 };
const SMALL_BREAKER = { min_attempts: 4, failure_percent: 75, cooldown_seconds: 2 };
const DELIVERY_DEADLINE_MS = 60_000;
/** A coordinator busy with attempts reads changed settings at its next pump (within 25 s). */
const BREAKER_DEADLINE_MS = 60_000;
/** After the last delivery, how long to keep listening for a stray repeat. */
const QUIET_MS = 2_000;
/** The hub's clock (workerd's, read after I/O) and the partner server's may differ by this much. */
const CLOCK_SLACK_MS = 250;

interface Delivery {
  id: string;
  transaction_id: string;
  state: string;
  attempts: number;
}

interface Attempt {
  attempt: number;
  http_status: number | null;
  error_class: string | null;
  outcome: string;
}

interface Transition {
  from: string;
  to: string;
  reason: string;
  at: string;
}

interface PartnerView {
  id: string;
  status: "active" | "paused" | "disabled";
  paused_reason: string | null;
  pace?: { in_flight_limit: number; changes: { from: number; to: number; reason: string }[] };
  health?: {
    breaker: "closed" | "open" | "half_open";
    reason: string | null;
    probe_at: string | null;
    waiting: number;
    transitions: Transition[];
  };
}

let hub: SharedHub;
let healthyServer: PartnerServer;
let failingServer: PartnerServer;
/** What the failing partner's server does now: fail (a 500, then a hold past the timeout, and so on), or recover. */
let failingServerRecovered = false;
let networkId: string;
let networkSecret: string;
let healthyId: string;

beforeAll(async () => {
  healthyServer = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  let failures = 0;
  failingServer = await startPartnerServer((): PartnerAnswer => {
    if (failingServerRecovered) return { status: 200, body: "ok" };
    failures++;
    return failures % 2 === 1 ? { status: 500, body: "down" } : { holdMs: HOLD_MS, status: 200, body: "too late" };
  });
  hub = sharedHub();
  networkId = `e2e-iso-${randomUUID().slice(0, 8)}`;
  const network = await expectStatus<{ secret: string }>(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: networkId, name: "E2E isolation" }) }),
    201,
  );
  networkSecret = network.secret;
  healthyId = await createPartner("E2E healthy partner", healthyServer, {});
});

afterAll(async () => {
  await healthyServer?.close();
  await failingServer?.close();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function createPartner(name: string, server: PartnerServer, fields: Record<string, unknown>): Promise<string> {
  const created = await expectStatus<{ id: string }>(
    await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({
        name,
        url_template: `${server.origin}/pb?tx={transaction_id}&status={status}`,
        method: "GET",
        // Signed, so that every request carries its delivery's id as `webhook-id`.
        sign: true,
        filters: { networks: [networkId] },
        ...fields,
      }),
    }),
    201,
  );
  return created.id;
}

function partner(id: string): Promise<PartnerView> {
  return admin(`/v1/partners/${id}`).then((response) => expectStatus<PartnerView>(response, 200));
}

async function deliveriesOf(partnerId: string): Promise<Delivery[]> {
  const list = await expectStatus<{ data: Delivery[]; next_cursor: string | null }>(
    await admin(`/v1/deliveries?partner_id=${partnerId}&limit=200`),
    200,
  );
  expect(list.next_cursor).toBeNull();
  return list.data;
}

function attemptsLog(deliveryId: string): Promise<Attempt[]> {
  return admin(`/v1/deliveries/${deliveryId}`)
    .then((response) => expectStatus<{ attempts_log: Attempt[] }>(response, 200))
    .then((detail) => detail.attempts_log);
}

/**
 * Posts POSTBACKS_PER_PHASE new conversions, one every POST_EVERY_MS (not waiting for the answers
 * in between, as a network does not); answers when each got its 2xx, by transaction id.
 */
async function postPhase(label: string): Promise<Map<string, number>> {
  const acknowledged = new Map<string, number>();
  const started = Date.now();
  const posts: Promise<void>[] = [];
  for (let i = 0; i < POSTBACKS_PER_PHASE; i++) {
    const due = started + i * POST_EVERY_MS;
    if (due > Date.now()) await sleep(due - Date.now());
    const body = makePostback({ transaction_id: `tx-${label}-${i}-${randomUUID().slice(0, 8)}` });
    posts.push(
      signedPostback(hub, networkId, networkSecret, body).then(async (response) => {
        await expectStatus(response, 200);
        acknowledged.set(String(body.transaction_id), Date.now());
      }),
    );
  }
  await Promise.all(posts);
  return acknowledged;
}

function transactionOf(server: PartnerServer, request: ReceivedRequest): string {
  return new URL(request.url, server.origin).searchParams.get("tx") ?? "";
}

/** When `server` first received each of `transactions`, once it has received them all. */
function firstReceipts(server: PartnerServer, transactions: Iterable<string>): Promise<Map<string, number>> {
  const wanted = new Set(transactions);
  return eventually(
    async () => {
      const first = new Map<string, number>();
      for (const request of server.requests) {
        const tx = transactionOf(server, request);
        if (wanted.has(tx) && !first.has(tx)) first.set(tx, request.receivedAtMs);
      }
      return first;
    },
    `${wanted.size} transactions received`,
    {
      ready: (first) => first.size === wanted.size,
      timeoutMs: DELIVERY_DEADLINE_MS,
      context: () => hub.log(),
    },
  );
}

/** From each postback's 2xx to the partner's first receipt of its conversion, ms. */
function latencies(acknowledged: Map<string, number>, received: Map<string, number>): number[] {
  return [...acknowledged].map(([tx, at]) => (received.get(tx) ?? Number.NaN) - at);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] ?? Number.NaN) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

function summarise(request: ReceivedRequest) {
  const { webhookId, attempt, url, answeredStatus, held, hubHungUp, receivedAtMs } = request;
  return { webhookId, attempt, url, answeredStatus, held, hubHungUp, receivedAtMs };
}

/** Requests to a partner, by `webhook-id` (one delivery). */
function byDelivery(requests: readonly ReceivedRequest[]): Map<string, ReceivedRequest[]> {
  const grouped = new Map<string, ReceivedRequest[]>();
  for (const request of requests) grouped.set(request.webhookId, [...(grouped.get(request.webhookId) ?? []), request]);
  return grouped;
}

describe("a failing partner beside a healthy one, through wrangler dev", () => {
  let failingId: string;

  it("does not hold up the healthy partner's deliveries: each arrives on its first attempt, while the hub waits on the failing one", async () => {
    // Phase A: the healthy partner alone.
    const ackedAlone = await postPhase("alone");
    const receivedAlone = await firstReceipts(healthyServer, ackedAlone.keys());

    // Phase B: a partner that fails every request receives the same network's postbacks.
    failingId = await createPartner("E2E failing partner", failingServer, {
      timeout_ms: FAILING_TIMEOUT_MS,
      retry_schedule_seconds: FAILING_RETRY_SCHEDULE_SECONDS,
      breaker: NEVER_OPENS,
    });
    const ackedBeside = await postPhase("beside");
    const receivedBeside = await firstReceipts(healthyServer, ackedBeside.keys());
    const failingRequests = [...failingServer.requests];

    const alone = latencies(ackedAlone, receivedAlone);
    const beside = latencies(ackedBeside, receivedBeside);
    console.log(
      `healthy partner, 2xx → receipt: p50 ${median(alone)} ms alone, ${median(beside)} ms beside the failing partner (ratio ${(median(beside) / median(alone)).toFixed(2)}; printed, not asserted)`,
    );

    // The failing partner really was failing meanwhile, with the hub waiting on its held answers.
    const besideTransactions = new Set(ackedBeside.keys());
    const failingBeside = failingRequests.filter((r) => besideTransactions.has(transactionOf(failingServer, r)));
    expect(failingBeside.filter((r) => r.answeredStatus === 500).length).toBeGreaterThan(0);
    const holds = failingBeside.filter((r) => r.held && r.hubHungUp && r.endedAtMs !== null);
    expect(holds.length, JSON.stringify(failingRequests.map(summarise))).toBeGreaterThan(0);
    expect(failingBeside.some((r) => r.answeredStatus === 200)).toBe(false);

    // The healthy partner kept receiving while the hub waited on the failing partner's answers: its
    // deliveries did not queue behind those timeouts.
    const duringHolds = [...receivedBeside.values()].filter((at) =>
      holds.some((hold) => hold.receivedAtMs <= at && at <= (hold.endedAtMs ?? 0)),
    );
    console.log(
      `healthy receipts while a failing request was held: ${duringHolds.length} of ${receivedBeside.size}; the failing partner got ${failingBeside.length} requests (${holds.length} held to its timeout)`,
    );
    expect(duringHolds.length).toBeGreaterThan(0);

    // Each healthy delivery: one request, answered 200, the only attempt in its log.
    const healthy = await eventually(() => deliveriesOf(healthyId), "the healthy partner's deliveries delivered", {
      ready: (rows) => rows.length === 2 * POSTBACKS_PER_PHASE && rows.every((d) => d.state === "delivered"),
      timeoutMs: DELIVERY_DEADLINE_MS,
    });
    const healthyRequests = byDelivery(healthyServer.requests);
    expect([...healthyRequests.keys()].sort()).toEqual(healthy.map((d) => d.id).sort());
    for (const delivery of healthy) {
      expect(healthyRequests.get(delivery.id)?.map((r) => r.answeredStatus)).toEqual([200]);
      expect(delivery.attempts).toBe(1);
      expect(await attemptsLog(delivery.id)).toMatchObject([{ attempt: 1, http_status: 200, outcome: "delivered" }]);
    }
    expect(new Set(healthy.map((d) => d.transaction_id))).toEqual(
      new Set([...ackedAlone.keys(), ...besideTransactions]),
    );

    // Its coordinator never saw a failure: no breaker move, no slowing down for a 5xx or a timeout.
    const view = await partner(healthyId);
    expect(view).toMatchObject({
      status: "active",
      paused_reason: null,
      health: { breaker: "closed", transitions: [] },
    });
    expect(view.pace?.changes.filter((change) => /HTTP|timeout|network|throttled/.test(change.reason))).toEqual([]);
  });

  it("opens the failing partner's breaker, sends nothing while it is open, and closes it once the partner recovers; every delivery then arrives once", async () => {
    expect(failingId, "the first test creates the failing partner").toBeDefined();
    await expectStatus(
      await admin(`/v1/partners/${failingId}`, { method: "PATCH", body: JSON.stringify({ breaker: SMALL_BREAKER }) }),
      200,
    );
    const opened = await eventually(() => partner(failingId), "the failing partner paused, its breaker open", {
      ready: (view) => view.status === "paused" && view.health?.breaker === "open",
      timeoutMs: BREAKER_DEADLINE_MS,
      context: () => JSON.stringify(failingServer.requests.slice(-10).map(summarise)),
    });
    expect(opened.paused_reason).toMatch(/^\d+ of \d+ attempts failed in 72 h \(\d+ %, the limit is 75 %\)$/);
    expect(opened.health?.probe_at).not.toBeNull();
    expect(opened.health?.waiting).toBeGreaterThan(0);

    failingServerRecovered = true;
    const closed = await eventually(() => partner(failingId), "the failing partner active again, its breaker closed", {
      ready: (view) => view.status === "active" && view.health?.breaker === "closed",
      timeoutMs: BREAKER_DEADLINE_MS,
    });
    expect(closed.paused_reason).toBeNull();

    // Newest first in the API; oldest first here: closed → open, then open → half_open → closed,
    // perhaps with a failed probe (half_open → open) and another round in between.
    const transitions = [...(closed.health?.transitions ?? [])].reverse();
    console.log(
      `the failing partner's breaker: ${transitions.map((t) => `${t.from} → ${t.to} (${t.reason})`).join("; ")}`,
    );
    expect(transitions[0]).toMatchObject({ from: "closed", to: "open", reason: opened.paused_reason });
    expect(transitions.at(-1)).toMatchObject({ from: "half_open", to: "closed", reason: "the probe succeeded" });
    transitions.slice(1).forEach((transition, i) => {
      expect(transition.from, JSON.stringify(transitions)).toBe(transitions[i]?.to);
      expect(["open", "half_open", "closed"]).toContain(transition.to);
    });
    expect(transitions.map((t) => t.to)).toEqual(expect.arrayContaining(["open", "half_open", "closed"]));

    const deliveries = await eventually(() => deliveriesOf(failingId), "the failing partner's deliveries delivered", {
      ready: (rows) => rows.length === POSTBACKS_PER_PHASE && rows.every((d) => d.state === "delivered"),
      timeoutMs: DELIVERY_DEADLINE_MS,
      context: () => JSON.stringify(failingServer.requests.map(summarise)),
    });
    await sleep(QUIET_MS);
    const requests = [...failingServer.requests];

    // While the breaker was open, nothing was sent: no request started between an opening and the
    // next half-opening (the hub's clock and this process's, give or take CLOCK_SLACK_MS).
    transitions.forEach((transition, i) => {
      const next = transitions[i + 1];
      if (transition.to !== "open" || next?.to !== "half_open") return;
      const [from, to] = [Date.parse(transition.at) + CLOCK_SLACK_MS, Date.parse(next.at) - CLOCK_SLACK_MS];
      expect(requests.filter((r) => r.receivedAtMs > from && r.receivedAtMs < to).map(summarise)).toEqual([]);
    });

    // Deduplicated on webhook-id, each delivery reached the partner once, and its log has every attempt.
    const seen = byDelivery(requests);
    expect([...seen.keys()].sort()).toEqual(deliveries.map((d) => d.id).sort());
    for (const delivery of deliveries) {
      const attempts = seen.get(delivery.id) ?? [];
      expect(attempts.filter((r) => r.answeredStatus === 200)).toHaveLength(1);
      expect(attempts.at(-1)?.answeredStatus).toBe(200);
      const log = await attemptsLog(delivery.id);
      expect(log).toHaveLength(attempts.length);
      expect(log.at(-1)).toMatchObject({ http_status: 200, outcome: "delivered" });
      expect(log.slice(0, -1).every((a) => a.outcome === "retry")).toBe(true);
    }
  });
});
