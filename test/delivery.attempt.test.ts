/**
 * One delivery attempt (delivery/attempt.ts, what a partner's coordinator runs), called directly
 * with a partner played by an injected `fetch`: every classification, the retry schedule,
 * idempotency, operators' changes mid-attempt, what the partner already received, parking, the URL
 * judged again before sending, and the sweep.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { type AttemptDeps, attemptDelivery } from "../src/delivery/attempt";
import { requeueStrandedDeliveries } from "../src/operations/sweep";
import type { DeliveriesQueue } from "../src/queues/delivery-messages";
import { attemptsOf, deliveryRow, pendingDelivery } from "./support/deliveries";
import { admin, createPartner, expectStatus, uniqueId } from "./support/helpers";

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

function deps(fetch: typeof globalThis.fetch, overrides: Partial<AttemptDeps> = {}): AttemptDeps {
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

describe("delivery attempt: outcomes", () => {
  it("marks a 2xx delivered, records the attempt and acks", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("thanks", { status: 200 }));
    const report = await attemptDelivery(id, deps(fetch));
    expect(report.retryInSeconds).toBeNull();
    expect(calls[0]?.url).toMatch(/^https:\/\/partner\.test\/ok\/pb\?tx=tx-.*&s=approved$/);
    expect(calls[0]?.redirect).toBe("manual");
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered", attempts: 1, last_status: 200 });
    expect(await attemptsOf(id)).toMatchObject([
      { attempt: 1, http_status: 200, outcome: "delivered", response_excerpt: "thanks" },
    ]);
  });

  it("sends nothing again once delivered, and records one attempt of two made at once", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("ok"));
    // Two attempts of one delivery at once: only a partner's coordinator attempts, one at a time
    // (test/coordinator.partner.test.ts); nothing in D1 stops two callers. Both send; the second
    // to finish finds the first recorded (its number taken, the count moved) and changes nothing.
    await Promise.all([attemptDelivery(id, deps(fetch)), attemptDelivery(id, deps(fetch))]);
    expect(calls).toHaveLength(2);
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered", attempts: 1 });
    expect(await attemptsOf(id)).toHaveLength(1);
    const later = await Promise.all([attemptDelivery(id, deps(fetch)), attemptDelivery(id, deps(fetch))]);
    expect(calls).toHaveLength(2);
    expect(later.map((r) => r.retryInSeconds)).toEqual([null, null]);
    expect(await attemptsOf(id)).toHaveLength(1);
  });

  it("answers where the delivery stands when another attempt of it was recorded first, and counts nothing", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let calls = 0;
    // The first request is answered 200 late; the second, made meanwhile, 503 at once.
    const fetch = vi.fn(async () => {
      calls++;
      if (calls === 1) {
        await held;
        return new Response("ok");
      }
      return new Response("down", { status: 503 });
    }) as unknown as typeof globalThis.fetch;
    const late = attemptDelivery(id, deps(fetch));
    await vi.waitFor(() => expect(calls).toBe(1));
    const first = await attemptDelivery(id, deps(fetch));
    expect(first.retryInSeconds).toBeGreaterThan(0);
    release();
    const second = await late;
    // D1 has the 503's retry: the late 200 was not recorded, so its caller keeps the delivery for
    // that retry (a null here would have dropped it from the coordinator, stranded until the sweep).
    expect(await deliveryRow(id)).toMatchObject({ state: "retrying", attempts: 1 });
    expect(second.retryInSeconds).toBeGreaterThan(0);
    expect(second.counts).toBeUndefined();
    expect(first.counts).toBeDefined();
  });

  it("writes the delivery once, with its result: nothing is claimed before the request", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("ok"));
    const statements: string[] = [];
    const db = env.DB;
    const spying = {
      prepare: (query: string) => {
        statements.push(query);
        return db.prepare(query);
      },
      batch: (list: D1PreparedStatement[]) => db.batch(list),
    } as unknown as D1Database;
    await attemptDelivery(id, deps(fetch, { db: spying }));
    const writes = statements.filter((sql) => /^\s*UPDATE deliveries/.test(sql));
    expect(writes).toHaveLength(1);
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered", attempts: 1, lease_until: null });
  });

  it("retries a 5xx on the partner's schedule with jitter, keeping the excerpt", async () => {
    const partner = await partnerWith({ retry_schedule_seconds: [100, 200] });
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("partner is down", { status: 503 }));
    const report = await attemptDelivery(id, deps(fetch, { random: () => 0.999 }));
    expect(report.retryInSeconds).toBe(120);
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
    const report = await attemptDelivery(id, deps(fetch));
    expect(report.retryInSeconds).toBe(900);
  });

  it("does not attempt a retry before it is due: the message comes back when it is", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id, { next_attempt_at: new Date(Date.now() + 60_000).toISOString() });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const report = await attemptDelivery(id, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(report.retryInSeconds).toBeGreaterThan(50);
    expect(report.retryInSeconds).toBeLessThanOrEqual(60);
  });

  it("is dead once the schedule is exhausted", async () => {
    const partner = await partnerWith({ retry_schedule_seconds: [1] });
    const id = await pendingDelivery(partner.id);
    const { fetch } = partnerFetch(new Response("down", { status: 500 }));
    await attemptDelivery(id, deps(fetch));
    await env.DB.prepare("UPDATE deliveries SET next_attempt_at = NULL WHERE id = ?").bind(id).run();
    expect((await attemptDelivery(id, deps(fetch))).retryInSeconds).toBeNull();
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
      const report = await attemptDelivery(id, deps(fetch));
      expect(calls).toHaveLength(1);
      expect(report.retryInSeconds).toBeNull();
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
      const report = await attemptDelivery(id, deps(fetch));
      expect(report.retryInSeconds).toBeGreaterThan(0);
      expect(await attemptsOf(id)).toMatchObject([{ http_status: null, error_class: errorClass, outcome: "retry" }]);
    }
  });

  it("disables the partner on 410, parks its deliveries and alerts; enabling resumes them", async () => {
    const partner = await partnerWith();
    const first = await pendingDelivery(partner.id);
    const second = await pendingDelivery(partner.id);
    const alert = vi.fn(async () => {});
    const { fetch, calls } = partnerFetch(new Response("gone", { status: 410 }));
    await attemptDelivery(first, deps(fetch, { alert }));
    expect(alert).toHaveBeenCalledWith(expect.objectContaining({ partner_id: partner.id }));
    const detail = await expectStatus<{ status: string; disabled_reason: string }>(
      await admin(`/v1/partners/${partner.id}`),
      200,
    );
    expect(detail).toMatchObject({ status: "disabled", disabled_reason: "gone" });
    expect((await deliveryRow(first))?.state).toBe("parked");
    expect((await deliveryRow(second))?.state).toBe("parked");

    // The second delivery's message arrives while the partner is disabled: nothing is sent.
    expect((await attemptDelivery(second, deps(fetch))).retryInSeconds).toBeNull();
    expect(calls).toHaveLength(1);

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
    await attemptDelivery(id, deps(fetch));
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
    const report = await attemptDelivery(id, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(report.retryInSeconds).toBeNull();
    expect(await attemptsOf(id)).toMatchObject([{ error_class: "render", outcome: "failed" }]);
    expect(String((await deliveryRow(id))?.last_error)).toContain("the body template rendered invalid JSON");
  });
});

/** A partner saved under other rules (or before a check existed): its URL written straight into D1. */
async function partnerSavedWith(url_template: string) {
  const partner = await partnerWith();
  await env.DB.prepare("UPDATE partners SET url_template = ? WHERE id = ?").bind(url_template, partner.id).run();
  return partner;
}

describe("delivery attempt: the URL is judged again right before sending", () => {
  it("blocks a partner saved while ALLOW_INSECURE_PARTNER_URLS was on, now that it is off, sending nothing", async () => {
    const partner = await partnerSavedWith("http://127.0.0.1:9000/pb?tx={transaction_id}");
    const id = await pendingDelivery(partner.id);
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const report = await attemptDelivery(id, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(report.retryInSeconds).toBeNull();
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
    await attemptDelivery(id, deps(fetch, { allowInsecurePartnerUrls: true }));
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
      const report = await attemptDelivery(id, deps(fetch, { allowInsecurePartnerUrls }));
      expect(calls).toHaveLength(0);
      expect(report.retryInSeconds).toBeNull();
      const row = await deliveryRow(id);
      expect(row).toMatchObject({ state: "failed", last_status: null });
      expect(String(row?.last_error)).toMatch(/^blocked before sending: the partner URL /);
      expect(String(row?.last_error)).toMatch(reason);
      expect(await attemptsOf(id)).toMatchObject([{ error_class: "blocked", outcome: "failed" }]);
    },
  );
});

describe("delivery attempt: conversion values never walk the partner's path", () => {
  // The URL parser resolves `.` and `..` segments, `%2e` spellings included, before the request
  // leaves: /api/../confirm would reach /confirm. No encoding keeps such a value, so it is refused.
  it.each([
    ["..", '"{transaction_id}" would make the path segment ".."'],
    [".", '"{transaction_id}" would make the path segment "."'],
  ])("fails a delivery whose transaction id %j would be a path segment, sending nothing", async (value) => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/api/{transaction_id}/confirm" });
    const id = await pendingDelivery(partner.id, { transaction_id: value });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    const report = await attemptDelivery(id, deps(fetch));
    expect(calls).toHaveLength(0);
    expect(report.retryInSeconds).toBeNull();
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
    await attemptDelivery(id, deps(fetch));
    expect(calls.map((call) => call.url)).toEqual([url]);
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered" });
  });

  it("sends .. in the query, where nothing resolves it", async () => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/pb?tx={transaction_id}" });
    const id = await pendingDelivery(partner.id, { transaction_id: ".." });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await attemptDelivery(id, deps(fetch));
    expect(calls.map((call) => call.url)).toEqual(["https://partner.test/ok/pb?tx=.."]);
  });
});

describe("delivery attempt: operator changes during an attempt", () => {
  it("does not overwrite a delivery the operator failed while the attempt was in flight", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    const fetch = vi.fn(async () => {
      await expectStatus(await admin(`/v1/partners/${partner.id}`, { method: "DELETE" }), 204);
      return new Response("ok");
    });
    await attemptDelivery(id, deps(fetch as unknown as typeof globalThis.fetch));
    expect(await deliveryRow(id)).toMatchObject({ state: "failed", last_error: "partner deleted" });
    expect(await attemptsOf(id)).toMatchObject([{ attempt: 1, http_status: 200, outcome: "delivered" }]);
  });

  it("counts an attempt the operator's change outran, so the next one has the next number", async () => {
    const partner = await partnerWith();
    const id = await pendingDelivery(partner.id);
    let first = true;
    const fetch = vi.fn(async () => {
      if (first) {
        first = false;
        await expectStatus(await admin(`/v1/partners/${partner.id}/disable`, { method: "POST" }), 200);
      }
      return new Response("ok");
    });
    await attemptDelivery(id, deps(fetch as unknown as typeof globalThis.fetch));
    // The partner's disable stands (parked), and the attempt it outran is counted.
    expect(await deliveryRow(id)).toMatchObject({ state: "parked", attempts: 1 });
    // The partner has it all the same: what it last received says so (LAST_DELIVERED_SQL).
    expect((await deliveryRow(id))?.delivered_at).not.toBeNull();
    await expectStatus(await admin(`/v1/partners/${partner.id}/enable`, { method: "POST" }), 200);
    await attemptDelivery(id, deps(fetch as unknown as typeof globalThis.fetch));
    expect(await deliveryRow(id)).toMatchObject({ state: "delivered", attempts: 2 });
    expect((await attemptsOf(id)).map((a) => a.attempt)).toEqual([1, 2]);
  });
});

describe("delivery attempt: what the partner already received (read from D1)", () => {
  it("does not send a first delivery older than one the partner received; a replay goes as asked", async () => {
    const partner = await partnerWith();
    const other = await partnerWith();
    const tx = uniqueId("tx");
    await pendingDelivery(partner.id, { transaction_id: tx, version: 3, state: "delivered" });
    // Another partner's delivery, and one of the same partner not delivered, say nothing of it.
    await pendingDelivery(other.id, { transaction_id: tx, version: 5, state: "delivered" });
    await pendingDelivery(partner.id, { transaction_id: tx, version: 4, state: "failed" });
    const older = await pendingDelivery(partner.id, { transaction_id: tx, version: 2 });
    const newer = await pendingDelivery(partner.id, { transaction_id: tx, version: 4 });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    expect(await attemptDelivery(older, deps(fetch), { fresh: true })).toEqual({
      retryInSeconds: null,
      sent: null,
      newerDelivered: true,
    });
    expect(calls).toHaveLength(0);
    expect(await deliveryRow(older)).toMatchObject({ state: "pending", attempts: 0 });
    await attemptDelivery(newer, deps(fetch), { fresh: true });
    await attemptDelivery(older, deps(fetch), { fresh: false });
    expect(calls).toHaveLength(2);
    expect(await deliveryRow(older)).toMatchObject({ state: "delivered" });
  });

  it("renders {previous_status} for a coalescing partner as the status the partner last received", async () => {
    const partner = await partnerWith({ url_template: "https://partner.test/ok/pb?s={status}&was={previous_status}" });
    const tx = uniqueId("tx");
    await pendingDelivery(partner.id, { transaction_id: tx, version: 1, status: "pending", state: "delivered" });
    await pendingDelivery(partner.id, { transaction_id: tx, version: 2, status: "approved", state: "dead" });
    const id = await pendingDelivery(partner.id, {
      transaction_id: tx,
      version: 3,
      status: "reversed",
      previous_status: "approved",
    });
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await attemptDelivery(id, deps(fetch), { coalesce: true });
    expect(calls[0]?.url).toBe("https://partner.test/ok/pb?s=reversed&was=pending");
    // An ordered partner gets the payload's own.
    const ordered = await pendingDelivery(partner.id, { previous_status: "approved", status: "reversed" });
    await attemptDelivery(ordered, deps(fetch));
    expect(calls[1]?.url).toBe("https://partner.test/ok/pb?s=reversed&was=approved");
  });
});

describe("delivery attempt: nothing is stranded", () => {
  it("leaves the delivery as it was when something unexpected fails mid-attempt, and throws for its caller to retry", async () => {
    const partner = await partnerWith({ sign: true });
    const id = await pendingDelivery(partner.id);
    await env.DB.prepare("DELETE FROM partner_secrets WHERE partner_id = ?").bind(partner.id).run();
    const { fetch, calls } = partnerFetch(new Response("ok"));
    await expect(attemptDelivery(id, deps(fetch))).rejects.toThrow(/signs but has no active signing secret/);
    expect(calls).toHaveLength(0);
    expect(await deliveryRow(id)).toMatchObject({ state: "pending", attempts: 0, lease_until: null });
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
