/**
 * The inbound request log through the real app, queue and D1: every request to a postback route of
 * a known network is recorded after its answer, rejections included, with credentials redacted;
 * requests to unknown networks and those over an isolate's cap are counted, not stored; admins read
 * it per network and by request id, and a network reads its own with its own credentials.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type InboundRecord, type RequestLogMessage, RequestLogMessageSchema } from "../src/domain/messages";
import worker from "../src/index";
import { buildRecord, InboundLog, logRequest, newTrace, type RequestLogQueue } from "../src/ingest/request-log";
import { utf8 } from "../src/lib/bytes";
import { runRetention } from "../src/operations/retention";
import { consumeRequestLog } from "../src/queues/requests-consumer";
import {
  ADMIN_TOKEN,
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  sha256Hex,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import {
  createInboundNetwork,
  getPostback,
  type InboundNetwork,
  postbackUrl,
  signedQuery,
  TOKEN_ONLY,
  TRACKER_MAPPING,
  tokenOf,
} from "./support/inbound";
import { expectProblem, signedHeaders } from "./support/problems";

interface LoggedRequest {
  request_id: string;
  network_id: string;
  received_at: string;
  route: string;
  method: string;
  auth_method: string | null;
  credential_id: string | null;
  client_ip: string | null;
  transaction_id: string | null;
  test: boolean | null;
  status: number;
  verdict: string;
  errors: { location: string; message: string }[];
  items: number | null;
  body_bytes: number;
  body_sha256: string | null;
  excerpt: { query: string | null; headers: Record<string, string>; body: string | null };
}

interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

async function logOf(networkId: string, query = ""): Promise<Page<LoggedRequest>> {
  return expectStatus<Page<LoggedRequest>>(await admin(`/v1/networks/${networkId}/requests${query}`), 200);
}

/** The network's log once it holds `count` requests (the log is written through a queue). */
function loggedRequests(networkId: string, count: number, query = ""): Promise<LoggedRequest[]> {
  return eventually(async () => {
    const { data } = await logOf(networkId, query);
    return data.length >= count ? data : null;
  });
}

/** A record as the log builds it: a rejected POST with nothing but its ids. */
function inboundRecord(networkId: string, requestId: string): InboundRecord {
  return {
    request_id: requestId,
    network_id: networkId,
    received_at: new Date().toISOString(),
    route: "postback",
    method: "POST",
    auth_method: null,
    credential_id: null,
    client_ip: null,
    transaction_id: null,
    test: null,
    status: 401,
    verdict: "unauthorized",
    errors: [],
    items: null,
    body_bytes: 0,
    body_sha256: null,
    excerpt: { query: null, headers: {}, body: null },
  };
}

const tokenNetwork = () => createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });

describe("the inbound log records every request of a known network", () => {
  it("records an accepted postback: who, how, what, and the verdict", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const headers = await signedHeaders(network.secret, utf8(raw), { headers: { "cf-connecting-ip": "203.0.113.9" } });
    const response = await exports.default.fetch(
      new Request(`${BASE}/v1/postbacks/${network.id}`, { method: "POST", headers, body: raw }),
    );
    await expectStatus(response, 200);
    const [entry] = await loggedRequests(network.id, 1);
    const detail = await expectStatus<{ secrets: { id: string }[] }>(await admin(`/v1/networks/${network.id}`), 200);
    expect(entry).toMatchObject({
      request_id: response.headers.get("x-request-id"),
      network_id: network.id,
      route: "postback",
      method: "POST",
      auth_method: "standard_webhooks",
      credential_id: detail.secrets[0]?.id,
      client_ip: "203.0.113.9",
      transaction_id: body.transaction_id,
      test: false,
      status: 200,
      verdict: "accepted",
      errors: [],
      items: null,
      body_bytes: utf8(raw).byteLength,
      body_sha256: await sha256Hex(utf8(raw)),
    });
    expect(entry?.excerpt.body).toBe(raw);
    expect(entry?.excerpt.headers).toMatchObject({
      "content-type": "application/json",
      "webhook-id": headers.get("webhook-id"),
      "webhook-signature": "(redacted)",
    });
    expect(JSON.stringify(entry)).not.toContain(String(headers.get("webhook-signature")).slice(3));
  });

  it("records a rejection with its problem code and the fields it named, and stores no conversion", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const headers = await signedHeaders("whsec_SNpKkKXDngGyGWvDQlBofzPd5bMWxCl0JwlgwDUgrFE=", utf8(raw));
    const response = await exports.default.fetch(
      new Request(`${BASE}/v1/postbacks/${network.id}`, { method: "POST", headers, body: raw }),
    );
    const problem = await expectProblem(response, 401, "unauthorized");
    const [entry] = await loggedRequests(network.id, 1);
    expect(entry).toMatchObject({
      request_id: problem.request_id,
      status: 401,
      verdict: "unauthorized",
      auth_method: null,
      credential_id: null,
      errors: [{ location: "header.webhook-signature", message: expect.stringContaining("no v1 signature") }],
    });
    expect(await conversionInD1(network.id, String(body.transaction_id))).toBeNull();
    // Anyone can send an unauthenticated request: its record keeps the body's size and digest, not the body.
    expect(entry).toMatchObject({ body_bytes: utf8(raw).byteLength, body_sha256: await sha256Hex(raw) });
    expect(entry?.excerpt.body).toBeNull();
    const one = await expectStatus<LoggedRequest>(await admin(`/v1/requests/${problem.request_id}`), 200);
    expect(one).toEqual(entry);
  });

  it("never stores a token, a pb_sig or the admin token, in the query, the headers or a form body", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["token", "signed_query"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const token = tokenOf(network);
    await expectStatus(await getPostback(network.id, { txid: uniqueId("tx"), payout: "1.00", token }), 200);
    await expectStatus(
      await getPostback(network.id, { txid: uniqueId("tx"), payout: "1.00" }, { "x-postback-token": token }),
      200,
    );
    const signed = await signedQuery(network.secret, { txid: uniqueId("tx"), payout: "1.00" });
    await expectStatus(await getPostback(network.id, signed), 200);
    const form = new URLSearchParams({ txid: uniqueId("tx"), payout: "1.00", token });
    await expectStatus(
      await exports.default.fetch(
        new Request(postbackUrl(network.id), {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: form.toString(),
        }),
      ),
      200,
    );
    await expectStatus(
      await getPostback(network.id, { txid: uniqueId("tx"), token }, { authorization: `Bearer ${ADMIN_TOKEN}` }),
      200,
    );
    const entries = await loggedRequests(network.id, 5);
    const stored = JSON.stringify(entries);
    const signature = signed.find(([name]) => name === "pb_sig")?.[1] ?? "";
    for (const secret of [token, signature.slice(3), ADMIN_TOKEN]) expect(stored).not.toContain(secret);
    const rows = await env.DB.prepare("SELECT * FROM inbound_requests WHERE network_id = ?").bind(network.id).all();
    expect(JSON.stringify(rows.results)).not.toContain(token);
    expect(stored).toContain("token=%28redacted%29");
    expect(stored).toContain("pb_sig=%28redacted%29");
    expect(entries.map((entry) => entry.auth_method).sort()).toEqual([
      "signed_query",
      "token",
      "token",
      "token",
      "token",
    ]);
  });

  it("records a batch once, with its size and the per-item problems", async () => {
    const network = await createNetwork();
    const raw = JSON.stringify({ events: [makePostback(), makePostback({ amount: "-1" })] });
    const headers = await signedHeaders(network.secret, utf8(raw));
    await expectStatus(
      await exports.default.fetch(
        new Request(`${BASE}/v1/postbacks/${network.id}/batch`, { method: "POST", headers, body: raw }),
      ),
      200,
    );
    const [entry] = await loggedRequests(network.id, 1);
    expect(entry).toMatchObject({
      route: "batch",
      status: 200,
      verdict: "batch",
      items: 2,
      errors: [{ location: "body.events[1].amount", message: expect.any(String) }],
    });
  });

  it("filters by verdict, status, transaction and time, newest first, with a cursor", async () => {
    const network = await createNetwork();
    const accepted = makePostback();
    await expectStatus(await postback(network, accepted), 200);
    await expectStatus(await postback(network, accepted), 200);
    await expectProblem(await postback(network, makePostback({ platform: "tv" })), 422, "validation_failed");
    const all = await loggedRequests(network.id, 3);
    expect(all.map((entry) => entry.verdict)).toEqual(["validation_failed", "duplicate", "accepted"]);
    expect((await logOf(network.id, "?verdict=duplicate")).data.map((e) => e.verdict)).toEqual(["duplicate"]);
    expect((await logOf(network.id, "?status=422")).data.map((e) => e.verdict)).toEqual(["validation_failed"]);
    const byTx = await logOf(network.id, `?transaction_id=${accepted.transaction_id}`);
    expect(byTx.data.map((e) => e.verdict)).toEqual(["duplicate", "accepted"]);
    const oldest = all[2]?.received_at ?? "";
    expect((await logOf(network.id, `?until=${encodeURIComponent(oldest)}`)).data).toEqual([]);
    expect((await logOf(network.id, `?since=${encodeURIComponent(oldest)}`)).data).toHaveLength(3);

    const first = await logOf(network.id, "?limit=2");
    expect(first.data).toEqual(all.slice(0, 2));
    const second = await logOf(network.id, `?limit=2&cursor=${first.next_cursor}`);
    expect(second).toEqual({ data: all.slice(2), next_cursor: null });
    await expectProblem(await admin(`/v1/networks/${network.id}/requests?status=99`), 422, "validation_failed");
  });

  it("logs a network's explain, but not the operator's", async () => {
    const network = await tokenNetwork();
    const explain = (headers: Record<string, string>, params: Record<string, string>) =>
      exports.default.fetch(
        new Request(postbackUrl(network.id, { txid: uniqueId("tx"), ...params }, "/explain"), { headers }),
      );
    await expectStatus(await explain({ authorization: `Bearer ${ADMIN_TOKEN}` }, {}), 200);
    await expectStatus(await explain({}, { token: tokenOf(network) }), 200);
    await expectStatus(await getPostback(network.id, { txid: uniqueId("tx"), token: tokenOf(network) }), 200);
    const entries = await loggedRequests(network.id, 2);
    expect(entries.map((entry) => [entry.route, entry.verdict, entry.auth_method])).toEqual([
      ["postback", "accepted", "token"],
      ["explain", "explained", "token"],
    ]);
    expect(entries[1]?.credential_id).toMatch(/^tok_/);
  });

  it("names a request by Cloudflare's ray id only when it looks like one", async () => {
    const network = await createNetwork();
    const ray = "8f1c2a3b4d5e6f70-SJC";
    const named = await postback(network, makePostback(), { headers: { "cf-ray": ray } });
    expect(named.headers.get("x-request-id")).toBe(ray);
    const forged = await postback(network, makePostback(), { headers: { "cf-ray": `x${"y".repeat(300)}` } });
    await expectStatus(forged, 200);
    expect(forged.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const entries = await loggedRequests(network.id, 2);
    expect(entries.map((entry) => entry.request_id)).toContain(forged.headers.get("x-request-id"));
  });
});

describe("what is counted instead of stored", () => {
  async function unlogged(query: string) {
    return expectStatus<Page<{ network_id: string | null; minute: string; requests: number }>>(
      await admin(`/v1/requests/unlogged${query}`),
      200,
    );
  }

  it("counts requests to unknown networks, and stores none of them", async () => {
    const since = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
    const before = (await unlogged(`?since=${since}`)).data.find((row) => row.network_id === null)?.requests ?? 0;
    const ids = [uniqueId("nobody"), uniqueId("nobody"), uniqueId("nobody")];
    for (const id of ids) {
      await expectProblem(await getPostback(id, { txid: "t" }), 404, "network_not_found");
    }
    const counted = await eventually(async () => {
      const row = (await unlogged(`?since=${since}`)).data.find((entry) => entry.network_id === null);
      return row && row.requests >= before + ids.length ? row : null;
    });
    expect(counted.requests).toBeGreaterThanOrEqual(before + ids.length);
    const stored = await env.DB.prepare(
      "SELECT count(*) AS n FROM inbound_requests WHERE network_id LIKE 'nobody-%'",
    ).first<{
      n: number;
    }>();
    expect(stored?.n).toBe(0);
  });

  it("logs at most INBOUND_LOG_UNAUTHENTICATED_PER_MINUTE unauthenticated requests per network and isolate, and counts the rest", async () => {
    const network = await createNetwork();
    const capped = { ...env, INBOUND_LOG_UNAUTHENTICATED_PER_MINUTE: "2" };
    const rejected = async () => {
      const ctx = createExecutionContext();
      const request = new Request(`${BASE}/v1/postbacks/${network.id}`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "webhook-id": "x",
          "webhook-timestamp": "1",
          "webhook-signature": "v1,x",
        },
        body: "{}",
      });
      const response = await worker.fetch(request, capped, ctx);
      await waitOnExecutionContext(ctx);
      return response;
    };
    const startedMinute = Math.floor(Date.now() / 60_000);
    for (let i = 0; i < 5; i++) await expectProblem(await rejected(), 401, "unauthorized");
    if (Math.floor(Date.now() / 60_000) !== startedMinute) return; // straddled a minute: the cap restarted

    const row = await eventually(async () => {
      const found = (await unlogged(`?network_id=${network.id}`)).data[0];
      return found && found.requests >= 3 ? found : null;
    });
    expect(row).toMatchObject({ network_id: network.id, requests: 3 });
    expect(await loggedRequests(network.id, 2)).toHaveLength(2);
  });
});

describe("a network reads its own log", () => {
  it("with its token or a signed query, seeing only its own requests", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["token", "signed_query"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const other = await tokenNetwork();
    await expectProblem(
      await getPostback(network.id, { txid: uniqueId("tx"), payout: "-1", token: tokenOf(network) }),
      422,
      "validation_failed",
    );
    await expectStatus(await getPostback(other.id, { txid: uniqueId("tx"), token: tokenOf(other) }), 200);
    await loggedRequests(network.id, 1);

    const own = await expectStatus<Page<LoggedRequest>>(
      await exports.default.fetch(
        new Request(postbackUrl(network.id, { token: tokenOf(network), verdict: "validation_failed" }, "/requests")),
      ),
      200,
    );
    expect(own.data.map((entry) => [entry.network_id, entry.verdict, entry.errors[0]?.location])).toEqual([
      [network.id, "validation_failed", "query.payout"],
    ]);
    const signed = await signedQuery(network.secret, { status: "422", pb_scope: "requests" });
    const viaSignature = await expectStatus<Page<LoggedRequest>>(
      await exports.default.fetch(new Request(postbackUrl(network.id, signed, "/requests"))),
      200,
    );
    expect(viaSignature.data.map((entry) => entry.verdict)).toEqual(["validation_failed"]);
  });

  it.each([
    ["no credentials", (_network: InboundNetwork, _other: InboundNetwork) => ({ query: {}, headers: {} })],
    [
      "another network's token",
      (_network: InboundNetwork, other: InboundNetwork) => ({ query: { token: tokenOf(other) }, headers: {} }),
    ],
    ["the admin token", () => ({ query: {}, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })],
  ])("refuses %s with 401", async (_, credentials) => {
    const network = await tokenNetwork();
    const other = await tokenNetwork();
    const { query, headers } = credentials(network, other);
    const response = await exports.default.fetch(new Request(postbackUrl(network.id, query, "/requests"), { headers }));
    await expectProblem(response, 401, "unauthorized");
  });

  it("takes a signed query only when it was signed for the log (pb_scope=requests), and a log read never posts", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["signed_query"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const secretTx = uniqueId("secret-order");
    await expectStatus(
      await getPostback(network.id, await signedQuery(network.secret, { txid: secretTx, payout: "999.00" })),
      200,
    );
    await loggedRequests(network.id, 1);

    // A captured signed postback URL, replayed on /requests, reads nothing.
    const captured = await signedQuery(network.secret, { txid: uniqueId("tx"), payout: "1.00" });
    const replayed = await exports.default.fetch(new Request(postbackUrl(network.id, captured, "/requests")));
    const refused = await expectProblem(replayed, 401, "unauthorized");
    expect(refused.errors).toEqual([
      { location: "query.pb_scope", message: expect.stringContaining("pb_scope=requests") },
    ]);
    expect(JSON.stringify(refused)).not.toContain(secretTx);

    // A signed log read, replayed as a postback, posts nothing.
    const read = await signedQuery(network.secret, { transaction_id: secretTx, pb_scope: "requests" });
    await expectStatus(await exports.default.fetch(new Request(postbackUrl(network.id, read, "/requests"))), 200);
    const explained = await exports.default.fetch(new Request(postbackUrl(network.id, read, "/explain")));
    expect(explained.status).toBe(401);
    const posted = await getPostback(network.id, read);
    expect((await expectProblem(posted, 401, "unauthorized")).errors.map((error) => error.location)).toEqual([
      "query.pb_scope",
    ]);
    expect((await conversionInD1(network.id, secretTx))?.status).toBe("approved");
  });

  it("names a malformed filter only after the credentials pass", async () => {
    const network = await tokenNetwork();
    const stranger = await exports.default.fetch(new Request(postbackUrl(network.id, { status: "abc" }, "/requests")));
    await expectProblem(stranger, 401, "unauthorized");
    const own = await exports.default.fetch(
      new Request(postbackUrl(network.id, { status: "abc", token: tokenOf(network) }, "/requests")),
    );
    const problem = await expectProblem(own, 422, "validation_failed");
    expect(problem.errors.map((error) => error.location)).toEqual(["query.status"]);
  });
});

describe("the requests consumer", () => {
  function batchOf(bodies: unknown[]) {
    const acked: string[] = [];
    const retried: string[] = [];
    const messages = bodies.map((body, i) => ({
      id: `m${i}`,
      timestamp: new Date(),
      attempts: 1,
      body,
      ack: () => acked.push(`m${i}`),
      retry: () => retried.push(`m${i}`),
    }));
    return {
      batch: {
        queue: "postback-requests",
        messages,
        ackAll: () => acked.push(...messages.map((m) => m.id)),
        retryAll: () => retried.push(...messages.map((m) => m.id)),
      } as unknown as MessageBatch<unknown>,
      acked,
      retried,
    };
  }

  it("writes a redelivered message once, and keeps the largest running count whatever the order", async () => {
    const networkId = uniqueId("net");
    const requestId = uniqueId("req");
    const minute = "2026-01-01T00:00:00.000Z";
    const count = (unlogged: number) => ({ network_id: networkId, minute, isolate_id: "iso-1", unlogged });
    const message = (unlogged: number) =>
      RequestLogMessageSchema.parse({
        v: 1,
        records: [inboundRecord(networkId, requestId)],
        counts: [count(unlogged)],
      });
    for (const unlogged of [3, 5, 4, 5]) {
      const { batch, acked } = batchOf([message(unlogged)]);
      await consumeRequestLog(batch, env.DB);
      expect(acked).toEqual(["m0"]);
    }
    const rows = await env.DB.prepare("SELECT count(*) AS n FROM inbound_requests WHERE request_id = ?")
      .bind(requestId)
      .first<{ n: number }>();
    expect(rows?.n).toBe(1);
    const counted = await env.DB.prepare("SELECT unlogged FROM inbound_request_counts WHERE network_id = ?")
      .bind(networkId)
      .all<{ unlogged: number }>();
    expect(counted.results).toEqual([{ unlogged: 5 }]);
  });

  it("keeps a message that does not parse as a dead letter, and acks the batch", async () => {
    const { batch, acked } = batchOf([{ v: 2, nonsense: true }]);
    await consumeRequestLog(batch, env.DB);
    expect(acked).toEqual(["m0"]);
    const letter = await env.DB.prepare("SELECT reason FROM dead_letters WHERE id = ?")
      .bind("postback-requests:m0")
      .first<{ reason: string }>();
    expect(letter?.reason).toBe("invalid request log message");
  });
});

describe("retention of the inbound log", () => {
  it("prunes requests and counts older than INBOUND_LOG_RETENTION_DAYS", async () => {
    const network: TestNetwork = await createNetwork();
    await expectStatus(await postback(network, makePostback()), 200);
    await loggedRequests(network.id, 1);
    const days = Number(env.INBOUND_LOG_RETENTION_DAYS);
    await runRetention(env, Date.now() + (days + 1) * 86_400_000);
    expect((await logOf(network.id)).data).toEqual([]);
  });
});

describe("an isolate's inbound log buffer", () => {
  function fakeQueue() {
    const sent: RequestLogMessage[] = [];
    let refuse = false;
    return {
      sent,
      refuseNext: () => {
        refuse = true;
      },
      queue: {
        async sendBatch(messages: Iterable<MessageSendRequest<RequestLogMessage>>) {
          if (refuse) {
            refuse = false;
            throw new Error("queue unavailable");
          }
          for (const message of messages) sent.push(message.body);
        },
      } satisfies RequestLogQueue,
    };
  }

  const now = Date.UTC(2026, 0, 1, 12, 0, 30);

  const caps = { authenticated: 2, unauthenticated: 1 };

  it("admits the cap per network and minute, counts the rest as a running total, and starts again next minute", async () => {
    const log = new InboundLog({ isolateId: "iso" });
    const { queue, sent } = fakeQueue();
    const verdicts = Array.from({ length: 5 }, () => log.admit("a", true, now, caps));
    expect(verdicts).toEqual([true, true, false, false, false]);
    expect(log.admit("b", true, now, caps)).toBe(true);
    log.add(inboundRecord("a", "r1"));
    await log.flush(queue, now);
    expect(sent).toEqual([
      {
        v: 1,
        records: [inboundRecord("a", "r1")].map((r) => ({ ...r, received_at: expect.any(String) })),
        counts: [{ network_id: "a", minute: "2026-01-01T12:00:00.000Z", isolate_id: "iso", unlogged: 3 }],
      },
    ]);
    expect(log.admit("a", true, now + 60_000, caps)).toBe(true);
  });

  it("keeps a budget apart for requests that did not authenticate, so strangers cannot crowd out the network", async () => {
    const log = new InboundLog({ isolateId: "iso" });
    expect(Array.from({ length: 3 }, () => log.admit("a", false, now, caps))).toEqual([true, false, false]);
    expect(Array.from({ length: 3 }, () => log.admit("a", true, now, caps))).toEqual([true, true, false]);
  });

  it("sends what many requests logged in one flush, counts included, and nothing more after", async () => {
    const log = new InboundLog({ isolateId: "iso", flushEveryMs: 20 });
    const { queue, sent } = fakeQueue();
    // Ten requests finish at once: each adds its record (or a count) and asks for a flush.
    const requests = Array.from({ length: 10 }, (_, i) => {
      if (i % 2 === 0) log.add(inboundRecord("a", `r${i}`));
      else log.countUnknown(Date.now());
      return log.scheduleFlush(queue);
    });
    await Promise.all(requests);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.records.map((record) => record.request_id)).toEqual(["r0", "r2", "r4", "r6", "r8"]);
    expect(sent[0]?.counts.map((count) => [count.network_id, count.unlogged])).toEqual([["", 5]]);
    // What arrives during a flush leaves with the next one; a request with nothing new sends nothing.
    log.countUnknown(Date.now());
    await log.scheduleFlush(queue);
    await log.scheduleFlush(queue);
    expect(sent.map((message) => message.counts.map((count) => count.unlogged))).toEqual([[5], [6]]);
  });

  it("keeps what a refused send carried for the next flush", async () => {
    const log = new InboundLog({ isolateId: "iso" });
    const { queue, sent, refuseNext } = fakeQueue();
    log.add(inboundRecord("a", "r1"));
    refuseNext();
    await log.flush(queue, now);
    expect(sent).toEqual([]);
    log.add(inboundRecord("a", "r2"));
    await log.flush(queue, now);
    expect(sent.flatMap((message) => message.records.map((record) => record.request_id))).toEqual(["r1", "r2"]);
  });

  function facts(requestId: string, own: boolean, body = "") {
    const trace = newTrace();
    trace.known = true;
    trace.body = new TextEncoder().encode(body);
    if (own) Object.assign(trace, { authMethod: "token", credentialId: "tok_1" });
    return {
      requestId,
      networkId: "acme",
      route: "postback" as const,
      receivedAtMs: Date.now(),
      request: new Request(`${BASE}/v1/postbacks/acme`, {
        method: "POST",
        headers: { "content-type": "application/json" },
      }),
      status: own ? 422 : 401,
      problem: { code: own ? "validation_failed" : "unauthorized", errors: [] },
      trace,
    };
  }

  it("counts a stranger's request that the per-location limiter turns away, and never asks it about the network's own", async () => {
    const log = new InboundLog({ isolateId: "iso", flushEveryMs: 1 });
    const { queue, sent } = fakeQueue();
    const asked: string[] = [];
    const sinks = {
      queue,
      strangers: async (networkId: string) => {
        asked.push(networkId);
        return false;
      },
    };
    await logRequest(facts("stranger", false), sinks, { authenticated: 10, unauthenticated: 10 }, log);
    await logRequest(facts("own", true), sinks, { authenticated: 10, unauthenticated: 10 }, log);
    expect(asked).toEqual(["acme"]);
    expect(sent.flatMap((message) => message.records.map((record) => record.request_id))).toEqual(["own"]);
    expect(sent.flatMap((message) => message.counts.map((count) => count.unlogged))).toEqual([1]);
  });

  it("sizes messages in UTF-8 bytes, so records of 3-byte characters still pass the real queue after a failed send", async () => {
    let refuse = true;
    const delivered: string[] = [];
    const queue: RequestLogQueue = {
      async sendBatch(messages) {
        const list = [...messages];
        if (refuse) {
          refuse = false;
          throw new Error("transient queue error");
        }
        await env.REQUEST_LOG.sendBatch(list); // the local queue enforces the size limits
        for (const message of list) delivered.push(...message.body.records.map((record) => record.request_id));
      },
    };
    const log = new InboundLog({ isolateId: "iso-utf8" });
    for (let i = 0; i < 150; i++) log.add(await buildRecord(facts(`wide-${i}`, true, "中".repeat(700))));
    expect(await log.flush(queue)).toBe(false);
    log.add(await buildRecord(facts("after", true)));
    expect(await log.flush(queue)).toBe(true);
    expect(delivered).toHaveLength(151);
    expect(delivered).toContain("after");
  });

  it("packs many records to a message, each under the queue's size", async () => {
    const log = new InboundLog({ isolateId: "iso" });
    const { queue, sent } = fakeQueue();
    const big = { ...inboundRecord("a", "x"), excerpt: { query: null, headers: {}, body: "é".repeat(512) } };
    for (let i = 0; i < 120; i++) log.add({ ...big, request_id: `r${i}` });
    await log.flush(queue, now);
    expect(sent.reduce((n, message) => n + message.records.length, 0)).toBe(120);
    expect(sent.length).toBeGreaterThan(2);
    for (const message of sent)
      expect(new TextEncoder().encode(JSON.stringify(message)).byteLength).toBeLessThan(128_000);
  });
});
