/**
 * The DELIVERIES consumer, called directly with a partner played by an injected `fetch`: every
 * classification, the retry schedule, idempotency and leases, parking, the DLQ and auto-disable.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { deliveryIdFor } from "../src/delivery/partner";
import { autoDisableFailingPartners } from "../src/operations/auto-disable";
import { requeueStrandedDeliveries } from "../src/operations/sweep";
import {
  consumeDeliveries,
  consumeDeliveryDeadLetters,
  type DeliveryConsumerDeps,
} from "../src/queues/delivery-consumer";
import type { DeliveriesQueue } from "../src/queues/delivery-messages";
import { admin, createPartner, eventually, expectStatus, uniqueId } from "./support/helpers";

interface FakeMessage {
  id: string;
  body: unknown;
  attempts: number;
  timestamp: Date;
  ack: ReturnType<typeof vi.fn>;
  retry: ReturnType<typeof vi.fn>;
}

function batchOf(bodies: unknown[], queue = "postback-deliveries") {
  const messages: FakeMessage[] = bodies.map((body) => ({
    id: uniqueId("m"),
    body,
    attempts: 1,
    timestamp: new Date(),
    ack: vi.fn(),
    retry: vi.fn(),
  }));
  const batch = { queue, messages, ackAll: vi.fn(), retryAll: vi.fn() };
  return { batch: batch as unknown as MessageBatch<unknown>, messages, raw: batch };
}

type Answer = Response | "hang" | Error;

/** A partner that answers in turn from `answers` (the last one repeats), counting calls. */
function partnerFetch(...answers: Answer[]) {
  const calls: Request[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = new Request(input, init);
    calls.push(request);
    const answer = answers[Math.min(calls.length - 1, answers.length - 1)];
    if (answer instanceof Error) throw answer;
    if (answer === "hang" || answer === undefined) {
      return new Promise<Response>((_, reject) =>
        request.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
      );
    }
    return answer.clone();
  });
  return { fetch: fetch as unknown as typeof globalThis.fetch, calls };
}

function deps(fetch: typeof globalThis.fetch, overrides: Partial<DeliveryConsumerDeps> = {}): DeliveryConsumerDeps {
  return {
    db: env.DB,
    fetch,
    encryptionKey: env.ENCRYPTION_KEY,
    allowInsecurePartnerUrls: false,
    alert: vi.fn(async () => {}),
    random: () => 0.5,
    ...overrides,
  };
}

async function partnerWith(fields: Record<string, unknown> = {}) {
  return createPartner({ url_template: "https://partner.test/ok/pb?tx={transaction_id}&s={status}", ...fields });
}

/** A pending delivery row for `partnerId`, as the events consumer would have made it. */
async function pendingDelivery(
  partnerId: string,
  overrides: { next_attempt_at?: string; amount?: string; transaction_id?: string } = {},
) {
  const eventId = uniqueId("evt");
  const id = await deliveryIdFor(eventId, partnerId);
  const now = new Date().toISOString();
  const payload = {
    network_id: "acme",
    transaction_id: overrides.transaction_id ?? uniqueId("tx"),
    event_id: eventId,
    verdict: "accepted",
    received_at: now,
    previous_status: null,
    conversion: {
      status: "approved",
      amount: overrides.amount ?? "12.50",
      currency: "USD",
      event_time: now,
      first_seen_at: now,
      version: 1,
    },
  };
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, next_attempt_at, created_at, updated_at)
     VALUES (?, ?, ?, 'acme', ?, 'pending', ?, ?, ?, ?)`,
  )
    .bind(
      id,
      eventId,
      partnerId,
      payload.transaction_id,
      JSON.stringify(payload),
      overrides.next_attempt_at ?? null,
      now,
      now,
    )
    .run();
  return id;
}

async function deliveryRow(id: string) {
  return env.DB.prepare("SELECT * FROM deliveries WHERE id = ?").bind(id).first<Record<string, unknown>>();
}

async function attemptsOf(id: string) {
  const { results } = await env.DB.prepare("SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt")
    .bind(id)
    .all<Record<string, unknown>>();
  return results;
}

const message = (delivery_id: string) => ({ v: 1, delivery_id });

describe("delivery consumer: outcomes", () => {
  it("marks a 2xx delivered, records the attempt and acks", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("thanks", { status: 200 }));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(messages[0]?.ack).toHaveBeenCalledOnce();
    expect(calls[0]?.url).toMatch(/^https:\/\/partner\.test\/ok\/pb\?tx=tx-.*&s=approved$/);
    expect(calls[0]?.redirect).toBe("manual");
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered", attempts: 1, last_status: 200 });
    expect(await attemptsOf(id)).toMatchObject([
      { attempt: 1, http_status: 200, outcome: "delivered", response_excerpt: "thanks" },
    ]);
  });

  it("sends once when a message comes twice after the first attempt succeeded, or twice at once", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const concurrent = batchOf([message(id), message(id)]);
    await consumeDeliveries(concurrent.batch, deps(fetch));
    // The copy that lost the claim is not acked while the other held it: it comes back later.
    const acked = concurrent.messages.filter((m) => m.ack.mock.calls.length === 1);
    const retried = concurrent.messages.filter((m) => m.retry.mock.calls.length === 1);
    expect([acked.length, retried.length]).toEqual([1, 1]);
    const later = batchOf([message(id), message(id)]);
    await consumeDeliveries(later.batch, deps(fetch));
    expect(calls).toHaveLength(1);
    for (const m of later.messages) expect(m.ack).toHaveBeenCalledOnce();
    expect(await attemptsOf(id)).toHaveLength(1);
  });

  it("retries a 5xx on the partner's schedule with jitter, keeping the excerpt", async () => {
    const partner = await partnerWith({ retry_schedule_seconds: [100, 200] });
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("partner is down", { status: 503 }));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch, { random: () => 0.999 }));
    expect(messages[0]?.ack).not.toHaveBeenCalled();
    expect(messages[0]?.retry).toHaveBeenCalledWith({ delaySeconds: 120 });
    const row = await deliveryRow(id);
    expect(row).toMatchObject({ state: "retrying", retries: 1, last_status: 503, lease_until: null });
    const dueInMs = Date.parse(String(row?.next_attempt_at)) - Date.now();
    expect(dueInMs).toBeGreaterThan(100_000);
    expect(dueInMs).toBeLessThanOrEqual(120_000);
    expect(await attemptsOf(id)).toMatchObject([{ outcome: "retry", response_excerpt: "partner is down" }]);
  });

  it("honours a Retry-After longer than the schedule", async () => {
    const partner = await partnerWith({ retry_schedule_seconds: [5] });
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("slow down", { status: 429, headers: { "retry-after": "900" } }));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(messages[0]?.retry).toHaveBeenCalledWith({ delaySeconds: 900 });
  });

  it("does not attempt a retry before it is due: the message comes back when it is", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id, { next_attempt_at: new Date(Date.now() + 60_000).toISOString() });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    const [call] = messages[0]?.retry.mock.calls[0] ?? [];
    expect(call.delaySeconds).toBeGreaterThan(50);
    expect(call.delaySeconds).toBeLessThanOrEqual(60);
  });

  it("is dead once the schedule is exhausted", async () => {
    const partner = await partnerWith({ retry_schedule_seconds: [1] });
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("down", { status: 500 }));
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch));
    await env.DB.prepare("UPDATE deliveries SET next_attempt_at = NULL WHERE id = ?").bind(id).run();
    const second = batchOf([message(id)]);
    await consumeDeliveries(second.batch, deps(fetch));
    expect(second.messages[0]?.ack).toHaveBeenCalledOnce();
    expect(await deliveryRow(id)).toMatchObject({ state: "dead", attempts: 2 });
    expect((await attemptsOf(id)).map((a) => a.outcome)).toEqual(["retry", "dead"]);
  });

  it("fails at once on another 4xx, and on a redirect it does not follow", async () => {
    const partner = await partnerWith();
    for (const answer of [
      new Response("bad", { status: 400 }),
      new Response(null, { status: 302, headers: { location: "https://elsewhere.test/" } }),
    ]) {
      const id = await pendingDelivery(partner.id);
      const { fetch, calls } = partnerFetch(answer);
      const { batch, messages } = batchOf([message(id)]);
      await consumeDeliveries(batch, deps(fetch));
      expect(calls).toHaveLength(1);
      expect(messages[0]?.ack).toHaveBeenCalledOnce();
      expect(await deliveryRow(id)).toMatchObject({ state: "failed", last_status: answer.status });
    }
  });

  it("retries a timeout and a network error, naming the error class", async () => {
    const partner = await partnerWith({ timeout_ms: 1000 });
    for (const [answer, errorClass] of [
      ["hang", "timeout"],
      [new TypeError("connection refused"), "network"],
    ] as const) {
      const id = await pendingDelivery(partner.id);
      const { fetch } = partnerFetch(answer);
      const { batch, messages } = batchOf([message(id)]);
      await consumeDeliveries(batch, deps(fetch));
      expect(messages[0]?.retry).toHaveBeenCalledOnce();
      expect(await attemptsOf(id)).toMatchObject([{ http_status: null, error_class: errorClass, outcome: "retry" }]);
    }
  });

  it("disables the partner on 410, parks its deliveries and alerts; enabling resumes them", async () => {
    const partner = await partnerWith();
    const first = await pendingDelivery(partner.id);
    const second = await pendingDelivery(partner.id);
    const alert = vi.fn(async () => {});
    const { fetch, calls } = partnerFetch(new Response("gone", { status: 410 }));
    await consumeDeliveries(batchOf([message(first)]).batch, deps(fetch, { alert }));
    expect(alert).toHaveBeenCalledWith(expect.objectContaining({ partner_id: partner.id }));
    const detail = await expectStatus<{ status: string; disabled_reason: string }>(
      await admin(`/v1/partners/${partner.id}`),
      200,
    );
    expect(detail).toMatchObject({ status: "disabled", disabled_reason: "gone" });
    expect((await deliveryRow(first))?.state).toBe("parked");
    expect((await deliveryRow(second))?.state).toBe("parked");

    // The second delivery's message arrives while the partner is disabled: nothing is sent.
    const parkedMessage = batchOf([message(second)]);
    await consumeDeliveries(parkedMessage.batch, deps(fetch));
    expect(calls).toHaveLength(1);
    expect(parkedMessage.messages[0]?.ack).toHaveBeenCalledOnce();

    const enabled = await expectStatus<{ resumed_deliveries: number }>(
      await admin(`/v1/partners/${partner.id}/enable`, { method: "POST" }),
      200,
    );
    expect(enabled.resumed_deliveries).toBe(2);
    expect((await deliveryRow(second))?.state).toBe("pending");
  });

  it("delivers a conversion without an amount to an unquoted {amount}, which is null", async () => {
    const partner = await partnerWith({
      method: "POST",
      body_template: '{"payout":{amount},"cents":{amount|cents},"currency":"{currency}"}',
    });
    const id = await pendingDelivery(partner.id);
    await env.DB.prepare(
      "UPDATE deliveries SET payload = json_remove(payload, '$.conversion.amount', '$.conversion.currency') WHERE id = ?",
    )
      .bind(id)
      .run();
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch));
    expect(calls).toHaveLength(1);
    expect(await calls[0]?.text()).toBe('{"payout":null,"cents":null,"currency":""}');
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered" });
  });

  it("fails a delivery whose body still cannot render valid JSON (text where a number stands), sending nothing", async () => {
    // The sample's meta.sub2 is a number, so the template passed; this conversion's is text.
    const partner = await partnerWith({ method: "POST", body_template: '{"n":{meta.sub2}}' });
    const id = await pendingDelivery(partner.id);
    await env.DB.prepare(
      "UPDATE deliveries SET payload = json_set(payload, '$.conversion.meta', json('{\"sub2\":\"seven\"}')) WHERE id = ?",
    )
      .bind(id)
      .run();
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(messages[0]?.ack).toHaveBeenCalledOnce();
    expect(await attemptsOf(id)).toMatchObject([{ error_class: "render", outcome: "failed" }]);
    expect(String((await deliveryRow(id))?.last_error)).toContain("the body template rendered invalid JSON");
  });

  it("keeps an unreadable message as a dead letter and retries on a D1 failure", async () => {
    const { fetch } = partnerFetch(new Response("ok"));
    const invalid = batchOf([{ nonsense: true }]);
    await consumeDeliveries(invalid.batch, deps(fetch));
    expect(invalid.messages[0]?.ack).toHaveBeenCalledOnce();
    const letter = await env.DB.prepare("SELECT reason FROM dead_letters WHERE body LIKE '%nonsense%'").first<{
      reason: string;
    }>();
    expect(letter?.reason).toBe("invalid delivery message");

    const brokenDb = {
      prepare: (query: string) => env.DB.prepare(query),
      batch: async () => {
        throw new Error("D1_ERROR: injected");
      },
    };
    const failing = batchOf([message("dlv_whatever")]);
    await consumeDeliveries(failing.batch, deps(fetch, { db: brokenDb as unknown as D1Database }));
    expect(failing.messages[0]?.ack).not.toHaveBeenCalled();
    expect(failing.messages[0]?.retry).toHaveBeenCalledOnce();
  });
});

/** A partner saved under other rules (or before a check existed): its URL written straight into D1. */
async function partnerSavedWith(url_template: string) {
  const partner = await partnerWith();
  await env.DB.prepare("UPDATE partners SET url_template = ? WHERE id = ?").bind(url_template, partner.id).run();
  return partner;
}

describe("delivery consumer: the URL is judged again right before sending", () => {
  it("blocks a partner saved while ALLOW_INSECURE_PARTNER_URLS was on, now that it is off, sending nothing", async () => {
    const partner = await partnerSavedWith("http://127.0.0.1:9000/pb?tx={transaction_id}");
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(messages[0]?.ack).toHaveBeenCalledOnce();
    expect(await deliveryRow(id)).toMatchObject({
      state: "failed",
      attempts: 1,
      last_status: null,
      last_error:
        "blocked before sending: the partner URL must use https (http is only allowed in local development with ALLOW_INSECURE_PARTNER_URLS=true)",
      lease_until: null,
    });
    expect(await attemptsOf(id)).toMatchObject([
      { attempt: 1, http_status: null, error_class: "blocked", outcome: "failed", latency_ms: 0 },
    ]);
  });

  it("sends to that partner while insecure URLs are allowed now", async () => {
    const partner = await partnerSavedWith("http://127.0.0.1:9000/pb?tx={transaction_id}");
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch, { allowInsecurePartnerUrls: true }));
    expect(calls.map((call) => call.url)).toEqual([expect.stringMatching(/^http:\/\/127\.0\.0\.1:9000\/pb\?tx=tx-/)]);
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered" });
  });

  // Loopback is refused without the insecure flag; the rest is refused even with it.
  it.each([
    [
      "a private host",
      "https://10.0.0.1/pb",
      true,
      /private, link-local, multicast or reserved address \(10\.0\.0\.1\)/,
    ],
    ["loopback spelled in hex", "https://0x7f.1/pb", false, /loopback address \(127\.0\.0\.1\)/],
    ["IPv4-mapped loopback", "https://[::ffff:7f00:1]/pb", false, /loopback address/],
    ["the metadata service through NAT64", "https://[64:ff9b::a9fe:a9fe]/pb", true, /reserved address/],
    ["a TEST-NET address", "https://198.51.100.7/pb", true, /reserved address/],
    ["user info", "https://user:pw@partner.test/ok/pb", true, /user name or password/],
    ["a tab the URL parser would drop", "ht\ttps://{campaign_id}/pb", true, /must not contain a tab \(U\+0009\)/],
    ["another scheme", "ftp://partner.test/ok/pb", true, /must use https, not ftp:/],
  ])(
    "blocks %s, with a recorded attempt and nothing sent",
    async (_, url_template, allowInsecurePartnerUrls, reason) => {
      const partner = await partnerSavedWith(url_template);
      const id = await pendingDelivery(partner.id);
      const { fetch, calls } = partnerFetch(new Response("ok"));
      const { batch, messages } = batchOf([message(id)]);
      await consumeDeliveries(batch, deps(fetch, { allowInsecurePartnerUrls }));
      expect(calls).toHaveLength(0);
      expect(messages[0]?.ack).toHaveBeenCalledOnce();
      const row = await deliveryRow(id);
      expect(row).toMatchObject({ state: "failed", last_status: null });
      expect(String(row?.last_error)).toMatch(/^blocked before sending: the partner URL /);
      expect(String(row?.last_error)).toMatch(reason);
      expect(await attemptsOf(id)).toMatchObject([{ error_class: "blocked", outcome: "failed" }]);
    },
  );
});

describe("delivery consumer: conversion values never walk the partner's path", () => {
  // The URL parser resolves `.` and `..` segments, `%2e` spellings included, before the request
  // leaves: /api/../confirm would reach /confirm. No encoding keeps such a value, so it is refused.
  it.each([
    ["..", '"{transaction_id}" would make the path segment ".."'],
    [".", '"{transaction_id}" would make the path segment "."'],
  ])("fails a delivery whose transaction id %j would be a path segment, sending nothing", async (value) => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/api/{transaction_id}/confirm" });
    const id = await pendingDelivery(partner.id, { transaction_id: value });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(messages[0]?.ack).toHaveBeenCalledOnce();
    const row = await deliveryRow(id);
    expect(row).toMatchObject({ state: "failed" });
    expect(String(row?.last_error)).toContain(`{transaction_id} would make the path segment "${value}"`);
    expect(await attemptsOf(id)).toMatchObject([{ error_class: "render", outcome: "failed", http_status: null }]);
  });

  it.each([
    ["%2e%2e", "https://partner.test/ok/api/%252e%252e/confirm"],
    ["...", "https://partner.test/ok/api/.../confirm"],
    ["a..", "https://partner.test/ok/api/a../confirm"],
    ["../x", "https://partner.test/ok/api/..%2Fx/confirm"],
  ])("sends %j intact, as a segment of its own", async (value, url) => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/api/{transaction_id}/confirm" });
    const id = await pendingDelivery(partner.id, { transaction_id: value });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch));
    expect(calls.map((call) => call.url)).toEqual([url]);
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered" });
  });

  it("sends .. in the query, where nothing resolves it", async () => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/pb?tx={transaction_id}" });
    const id = await pendingDelivery(partner.id, { transaction_id: ".." });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch));
    expect(calls.map((call) => call.url)).toEqual(["https://partner.test/ok/pb?tx=.."]);
  });
});

describe("delivery consumer: operator changes during an attempt", () => {
  it("does not overwrite a delivery the operator failed while the attempt was in flight", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const fetch = vi.fn(async () => {
      await expectStatus(await admin(`/v1/partners/${partner.id}`, { method: "DELETE" }), 204);
      return new Response("ok");
    });
    await consumeDeliveries(batchOf([message(id)]).batch, deps(fetch as unknown as typeof globalThis.fetch));
    expect(await deliveryRow(id)).toMatchObject({ state: "failed", last_error: "partner deleted" });
    expect(await attemptsOf(id)).toMatchObject([{ attempt: 1, http_status: 200, outcome: "delivered" }]);
  });
});

describe("delivery consumer: nothing is stranded", () => {
  it("brings a message back after another consumer's lease instead of acking it", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    await env.DB.prepare("UPDATE deliveries SET lease_until = ? WHERE id = ?")
      .bind(new Date(Date.now() + 40_000).toISOString(), id)
      .run();
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(messages[0]?.ack).not.toHaveBeenCalled();
    const [call] = messages[0]?.retry.mock.calls[0] ?? [];
    expect(call.delaySeconds).toBeGreaterThan(30);
    expect(call.delaySeconds).toBeLessThanOrEqual(40);
  });

  it("releases its claim when something unexpected fails mid-attempt, and retries the message", async () => {
    const partner = await partnerWith({ sign: true });
    const id = await pendingDelivery(partner.id);
    await env.DB.prepare("DELETE FROM partner_secrets WHERE partner_id = ?").bind(partner.id).run();
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const { batch, messages } = batchOf([message(id)]);
    await consumeDeliveries(batch, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(messages[0]?.retry).toHaveBeenCalledOnce();
    expect(await deliveryRow(id)).toMatchObject({ state: "pending", lease_until: null });
  });

  it("re-queues a delivery left without a message, once per sweep", async () => {
    const partner = await partnerWith();
    const stranded = await pendingDelivery(partner.id);
    const fresh = await pendingDelivery(partner.id);
    await env.DB.prepare("UPDATE deliveries SET updated_at = '2026-01-01T00:00:00.000Z' WHERE id = ?")
      .bind(stranded)
      .run();
    const sent: unknown[] = [];
    const queue = {
      sendBatch: async (messages: Iterable<MessageSendRequest<{ v: 1; delivery_id: string }>>) => {
        for (const m of messages) sent.push(m.body);
      },
    } as unknown as DeliveriesQueue;
    expect(await requeueStrandedDeliveries(env.DB, queue, Date.now(), 600_000)).toContain(stranded);
    expect(sent).toContainEqual({ v: 1, delivery_id: stranded });
    expect(sent).not.toContainEqual({ v: 1, delivery_id: fresh });
    expect(await requeueStrandedDeliveries(env.DB, queue, Date.now(), 600_000)).not.toContain(stranded);
  });
});

describe("delivery consumer: isolation", () => {
  it("does not hold a healthy partner's delivery behind a slow partner in the same batch", async () => {
    const slow = await partnerWith({ url_template: "https://partner.test/slow/pb", timeout_ms: 5000 });
    const healthy = await partnerWith();
    const slowId = await pendingDelivery(slow.id);
    const healthyId = await pendingDelivery(healthy.id);
    const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      if (!request.url.includes("/slow/")) return new Response("ok");
      return new Promise<Response>((_, reject) =>
        request.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError"))),
      );
    });
    const { batch, messages } = batchOf([message(slowId), message(healthyId)]);
    let batchDone = false;
    const running = consumeDeliveries(batch, deps(fetch as unknown as typeof globalThis.fetch)).then(() => {
      batchDone = true;
    });
    await eventually(async () => (messages[1]?.ack.mock.calls.length ? true : null));
    expect((await deliveryRow(healthyId))?.state).toBe("delivered");
    expect(batchDone).toBe(false);
    expect(messages[0]?.ack).not.toHaveBeenCalled();
    await running;
    expect(messages[0]?.retry).toHaveBeenCalledOnce();
  });
});

describe("deliveries dead-letter queue", () => {
  it("marks the delivery dead and keeps a dead-letter row", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { batch, raw } = batchOf([message(id)], "postback-deliveries-dlq");
    await consumeDeliveryDeadLetters(batch, env.DB);
    expect(raw.ackAll).toHaveBeenCalledOnce();
    expect(await deliveryRow(id)).toMatchObject({ state: "dead" });
    const letter = await env.DB.prepare("SELECT queue FROM dead_letters WHERE body LIKE ?").bind(`%${id}%`).first();
    expect(letter).toEqual({ queue: "postback-deliveries-dlq" });
  });
});

describe("auto-disable (cron)", () => {
  async function attempt(partnerId: string, deliveryId: string, n: number, startedAt: string, outcome: string) {
    await env.DB.prepare(
      `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, outcome)
       VALUES (?, ?, ?, ?, 500, 10, ?)`,
    )
      .bind(deliveryId, n, partnerId, startedAt, outcome)
      .run();
  }

  it("disables a partner failing for the whole period, parks its deliveries and alerts; spares one that recovered", async () => {
    const now = Date.now();
    const hoursAgo = (h: number) => new Date(now - h * 3_600_000).toISOString();
    const failing = await partnerWith();
    const recovered = await partnerWith();
    const young = await partnerWith();
    const failingDelivery = await pendingDelivery(failing.id);
    const recoveredDelivery = await pendingDelivery(recovered.id);
    const youngDelivery = await pendingDelivery(young.id);
    for (let n = 1; n <= 12; n++) {
      await attempt(failing.id, failingDelivery, n, hoursAgo(30 - n), "retry");
      await attempt(recovered.id, recoveredDelivery, n, hoursAgo(30 - n), n === 12 ? "delivered" : "retry");
      await attempt(young.id, youngDelivery, n, hoursAgo(2), "retry");
    }
    const alerts: Request[] = [];
    const fetcher = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
      alerts.push(new Request(input, init));
      return new Response("ok");
    });
    const disabled = await autoDisableFailingPartners(
      env.DB,
      { PARTNER_AUTO_DISABLE_HOURS: 24, PARTNER_AUTO_DISABLE_MIN_ATTEMPTS: 10, ALERT_URL: "https://alerts.test/hook" },
      now,
      fetcher as unknown as typeof fetch,
    );
    expect(disabled).toEqual([failing.id]);
    expect((await deliveryRow(failingDelivery))?.state).toBe("parked");
    expect((await deliveryRow(recoveredDelivery))?.state).toBe("pending");
    expect(alerts).toHaveLength(1);
    expect(await alerts[0]?.json()).toMatchObject({ type: "partner_disabled", partner_id: failing.id });
  });
});
