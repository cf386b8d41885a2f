/**
 * A partner's view of the hub: the real `wrangler dev` relays postbacks to a real HTTP server on
 * 127.0.0.1 that fails every delivery's first attempt (500) and hangs past the timeout on the
 * second. Each delivery must still reach it exactly once (deduplicated on `webhook-id`), signed so
 * that the official Standard Webhooks library verifies it, with every attempt visible in the API.
 * Then partners verify what they received, GET and POST, with that library, as the docs tell them to
 * (docs/verifying-deliveries.md), and nothing else verifies.
 */
import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, type ReceivedRequest, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback, sleep } from "./support";

/** The partner's request timeout; the server holds its second answers well past it. */
const PARTNER_TIMEOUT_MS = 1_000;
const HOLD_MS = 3_000;
const DELIVERY_DEADLINE_MS = 60_000;
/** After the last delivery, how long to keep listening for a stray repeat. */
const QUIET_MS = 2_500;
const FAILED_BODY = "partner down, try again";
const OK_BODY = "ok";

interface IngestAnswer {
  status: string;
  event_id: string;
  conversion_status: string;
}

interface Delivery {
  id: string;
  event_id: string;
  partner_id: string;
  network_id: string;
  transaction_id: string;
  state: string;
  attempts: number;
  last_status: number | null;
  conversion_status: string;
  delivered_at: string | null;
}

interface Attempt {
  attempt: number;
  started_at: string;
  http_status: number | null;
  error_class: string | null;
  latency_ms: number;
  response_excerpt: string | null;
  outcome: string;
}

/** What one accepted or updated event must look like when it reaches the partner. */
interface ExpectedDelivery {
  event_id: string;
  transaction_id: string;
  status: string;
  amount: string;
}

let hub: SharedHub;
let partnerServer: PartnerServer;
let networkId: string;
let networkSecret: string;
let partnerId: string;
let signingSecret: string;

beforeAll(async () => {
  partnerServer = await startPartnerServer((attempt) => {
    if (attempt === 1) return { status: 500, body: FAILED_BODY };
    if (attempt === 2) return { holdMs: HOLD_MS, status: 200, body: "too late" };
    return { status: 200, body: OK_BODY };
  });
  hub = sharedHub();
  networkId = `e2e-dlv-${randomUUID().slice(0, 8)}`;
  const network = await expectStatus<{ secret: string }>(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: networkId, name: "E2E Deliveries" }) }),
    201,
  );
  networkSecret = network.secret;
  const partner = await expectStatus<{ id: string; signing_secret?: string }>(
    await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({
        name: "E2E flaky partner",
        url_template: `${partnerServer.origin}/pb?tx={transaction_id}&status={status}&amount={amount}`,
        method: "GET",
        sign: true,
        retry_schedule_seconds: [1, 1, 1, 1],
        timeout_ms: PARTNER_TIMEOUT_MS,
        filters: { networks: [networkId] },
      }),
    }),
    201,
  );
  if (partner.signing_secret === undefined) throw new Error("a signed partner was created without a signing_secret");
  partnerId = partner.id;
  signingSecret = partner.signing_secret;
});

afterAll(async () => {
  await partnerServer?.close();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

/** Posts `body` byte for byte, signed by the Standard Webhooks library as a network would. */
async function post(body: Record<string, unknown>): Promise<IngestAnswer> {
  return expectStatus<IngestAnswer>(await signedPostback(hub, networkId, networkSecret, body), 200);
}

async function partnerDeliveries(): Promise<Delivery[]> {
  const list = await expectStatus<{ data: Delivery[]; next_cursor: string | null }>(
    await admin(`/v1/deliveries?partner_id=${partnerId}&limit=200`),
    200,
  );
  expect(list.next_cursor).toBeNull();
  return list.data;
}

function waitForDeliveries(count: number): Promise<Delivery[]> {
  return eventually(partnerDeliveries, `all ${count} deliveries delivered`, {
    ready: (deliveries) => deliveries.length === count && deliveries.every((d) => d.state === "delivered"),
    timeoutMs: DELIVERY_DEADLINE_MS,
    context: () => `partner saw: ${JSON.stringify(partnerServer.requests.map(summarise), null, 2)}\n${hub.log()}`,
  });
}

function summarise(request: ReceivedRequest) {
  const { webhookId, attempt, url, answeredStatus, held, hubHungUp } = request;
  return { webhookId, attempt, url, answeredStatus, held, hubHungUp };
}

describe("a flaky partner receiving from wrangler dev", () => {
  it("gets each accepted or updated event exactly once, signed, after a 500 and a timeout, and the API shows every attempt", async () => {
    const expected: ExpectedDelivery[] = [];
    const expectDelivery = (answer: IngestAnswer, body: Record<string, unknown>, amount = body.amount) =>
      expected.push({
        event_id: answer.event_id,
        transaction_id: String(body.transaction_id),
        status: answer.conversion_status,
        amount: String(amount),
      });

    const first = makePostback();
    const accepted = await post(first);
    expect(accepted).toMatchObject({ status: "accepted", conversion_status: "approved" });
    expectDelivery(accepted, first);

    const duplicate = await post(first);
    expect(duplicate).toMatchObject({ status: "duplicate", event_id: accepted.event_id });

    const pending = makePostback({ status: "pending", amount: "12.50", currency: "EUR" });
    const pendingAnswer = await post(pending);
    expect(pendingAnswer).toMatchObject({ status: "accepted", conversion_status: "pending" });
    expectDelivery(pendingAnswer, pending);
    // A partial update: the amount the partner gets is the conversion's, merged from the first event.
    const approval = { transaction_id: pending.transaction_id, status: "approved" };
    const approvedAnswer = await post(approval);
    expect(approvedAnswer).toMatchObject({ status: "updated", conversion_status: "approved" });
    expectDelivery(approvedAnswer, approval, pending.amount);

    const another = makePostback({ amount: "100" });
    const anotherAnswer = await post(another);
    expect(anotherAnswer.status).toBe("accepted");
    expectDelivery(anotherAnswer, another);

    const deliveries = await waitForDeliveries(expected.length);
    await sleep(QUIET_MS);
    const requests = [...partnerServer.requests];
    const byEvent = new Map(expected.map((e) => [e.event_id, e]));

    // The API: one delivery per (event, partner), none for the duplicate, each delivered on its third attempt.
    expect(deliveries.map((d) => d.event_id).sort()).toEqual(expected.map((e) => e.event_id).sort());
    expect(new Set(deliveries.map((d) => d.id)).size).toBe(expected.length);
    expect(deliveries.filter((d) => d.transaction_id === first.transaction_id)).toHaveLength(1);
    for (const delivery of deliveries) {
      const event = byEvent.get(delivery.event_id);
      expect(delivery).toMatchObject({
        partner_id: partnerId,
        network_id: networkId,
        transaction_id: event?.transaction_id,
        conversion_status: event?.status,
        state: "delivered",
        attempts: 3,
        last_status: 200,
      });
    }

    // The partner: after deduplicating on webhook-id, exactly one 200 per delivery, and nothing else.
    const successes = requests.filter((r) => r.answeredStatus === 200);
    expect(successes.map((r) => r.webhookId).sort()).toEqual(deliveries.map((d) => d.id).sort());
    expect(new Set(successes.map((r) => r.webhookId)).size).toBe(successes.length);
    const deliveryIds = new Set(deliveries.map((d) => d.id));
    expect(requests.filter((r) => !deliveryIds.has(r.webhookId)).map(summarise)).toEqual([]);

    for (const request of requests) {
      const delivery = deliveries.find((d) => d.id === request.webhookId);
      const event = delivery && byEvent.get(delivery.event_id);
      const url = new URL(request.url, partnerServer.origin);
      expect(request.method).toBe("GET");
      expect(request.body).toBe("");
      expect(url.pathname).toBe("/pb");
      expect(Object.fromEntries(url.searchParams)).toEqual({
        tx: event?.transaction_id,
        status: event?.status,
        amount: event?.amount,
      });
      // A GET is signed over its request line as the server read it; the library also checks the
      // timestamp's tolerance. The signature vouches for that request line only.
      const webhook = new Webhook(signingSecret);
      const requestLine = `${request.method} ${request.url}`;
      expect(() => webhook.verify(requestLine, request.headers, { jsonParse: false })).not.toThrow();
      for (const forged of [requestLine.replace("status=", "status=x"), requestLine.replace("/pb?", "/pc?"), ""]) {
        expect(() => webhook.verify(forged, request.headers, { jsonParse: false }), forged).toThrow(
          /No matching signature/,
        );
      }
    }

    // The attempt log matches what the partner saw, attempt by attempt.
    for (const delivery of deliveries) {
      const seen = requests.filter((r) => r.webhookId === delivery.id);
      expect(
        seen.map(({ attempt, answeredStatus, held, hubHungUp }) => ({ attempt, answeredStatus, held, hubHungUp })),
      ).toEqual([
        { attempt: 1, answeredStatus: 500, held: false, hubHungUp: false },
        { attempt: 2, answeredStatus: null, held: true, hubHungUp: true },
        { attempt: 3, answeredStatus: 200, held: false, hubHungUp: false },
      ]);

      const detail = await expectStatus<Delivery & { attempts_log: Attempt[] }>(
        await admin(`/v1/deliveries/${delivery.id}`),
        200,
      );
      expect(detail).toMatchObject({ id: delivery.id, state: "delivered", attempts: 3, last_status: 200 });
      const log = detail.attempts_log;
      expect(
        log.map(({ attempt, http_status, error_class, outcome, response_excerpt }) => ({
          attempt,
          http_status,
          error_class,
          outcome,
          response_excerpt,
        })),
      ).toEqual([
        { attempt: 1, http_status: 500, error_class: null, outcome: "retry", response_excerpt: FAILED_BODY },
        { attempt: 2, http_status: null, error_class: "timeout", outcome: "retry", response_excerpt: null },
        { attempt: 3, http_status: 200, error_class: null, outcome: "delivered", response_excerpt: OK_BODY },
      ]);
      // The timed-out attempt held the consumer for about the partner's timeout, never for the whole hold.
      const timedOut = log[1];
      expect(timedOut?.latency_ms).toBeGreaterThanOrEqual(PARTNER_TIMEOUT_MS - 50);
      expect(timedOut?.latency_ms).toBeLessThan(HOLD_MS);
      // Each logged attempt started just before the partner saw it.
      log.forEach((entry, index) => {
        const receivedAtMs = seen[index]?.receivedAtMs ?? Number.NaN;
        const lagMs = receivedAtMs - Date.parse(entry.started_at);
        expect(lagMs, `attempt ${entry.attempt}: received ${lagMs} ms after it started`).toBeGreaterThanOrEqual(-50);
        expect(lagMs, `attempt ${entry.attempt}: received ${lagMs} ms after it started`).toBeLessThan(5_000);
      });
      expect(Date.parse(detail.delivered_at ?? "")).toBeGreaterThanOrEqual(Date.parse(log[2]?.started_at ?? ""));
    }
  });
});

describe("partners verifying deliveries from wrangler dev with the standardwebhooks library", () => {
  it("verifies a GET over its request line as received and a POST over its body, and nothing altered", async () => {
    const server = await startPartnerServer(() => ({ status: 200, body: OK_BODY }));
    try {
      const network = `e2e-verify-${randomUUID().slice(0, 8)}`;
      const { secret } = await expectStatus<{ secret: string }>(
        await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: network, name: "E2E verify" }) }),
        201,
      );
      const partner = async (fields: Record<string, unknown>) =>
        expectStatus<{ id: string; signing_secret: string }>(
          await admin("/v1/partners", {
            method: "POST",
            body: JSON.stringify({
              name: `E2E verify ${randomUUID()}`,
              sign: true,
              filters: { networks: [network] },
              ...fields,
            }),
          }),
          201,
        );
      // Characters the URL parsers of Node and workerd do not all encode alike (`^`, `|`, `'`, `[`), and
      // a fragment and values that need encoding: the partner must verify the bytes it received.
      const getter = await partner({
        url_template: `${server.origin}/pb/a^b|c'd/{transaction_id}?q=[1]'x&tx={transaction_id}&s={status}#top`,
      });
      const poster = await partner({
        url_template: `${server.origin}/pb/post?tx={transaction_id}`,
        method: "POST",
        body_template: '{"tx":"{transaction_id}","payout":{amount}}',
      });
      const transactionId = `tx é "q" ${randomUUID()}`;
      const payload = JSON.stringify(makePostback({ transaction_id: transactionId }));
      const msgId = `msg_${randomUUID()}`;
      const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
      await expectStatus(
        await fetch(`${hub.baseUrl}/v1/postbacks/${network}`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "webhook-id": msgId,
            "webhook-timestamp": String(timestamp.getTime() / 1000),
            "webhook-signature": new Webhook(secret).sign(msgId, timestamp, payload),
          },
          body: payload,
        }),
        200,
      );
      const deadline = Date.now() + DELIVERY_DEADLINE_MS;
      while (server.requests.length < 2 && Date.now() < deadline) await sleep(100);

      const get = server.requests.find((r) => r.method === "GET");
      const post = server.requests.find((r) => r.method === "POST");
      if (!get || !post)
        throw new Error(`expected a GET and a POST, got ${JSON.stringify(server.requests.map(summarise))}`);
      const encoded = encodeURIComponent(transactionId);
      expect(get.url).toBe(`/pb/a%5Eb|c'd/${encoded}?q=[1]%27x&tx=${encoded}&s=approved`);

      const getHook = new Webhook(getter.signing_secret);
      const requestLine = `${get.method} ${get.url}`;
      expect(getHook.verify(requestLine, get.headers, { jsonParse: false })).toBeUndefined();
      for (const forged of [
        requestLine.replace("&s=approved", "&s=declined"),
        requestLine.replace("&s=approved", "&s=approved&amount=900"),
        requestLine.replace("/pb/", "/pc/"),
        requestLine.replace("%5E", "^"),
        `POST ${get.url}`,
        "",
      ]) {
        expect(() => getHook.verify(forged, get.headers, { jsonParse: false }), forged).toThrow(
          /No matching signature/,
        );
      }

      const postHook = new Webhook(poster.signing_secret);
      expect(postHook.verify(post.body, post.headers)).toEqual({ tx: transactionId, payout: 29.99 });
      expect(() => postHook.verify(post.body.replace("29.99", "2999"), post.headers)).toThrow(/No matching signature/);
      expect(() => postHook.verify(requestLine, get.headers)).toThrow(/No matching signature/);
    } finally {
      await server.close();
    }
  });
});
