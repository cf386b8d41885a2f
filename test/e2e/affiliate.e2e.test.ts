/**
 * An affiliate tracker's view of the hub: the real `wrangler dev` receives GET postbacks fired the
 * way a tracker fires them (a URL template with its macros filled in, a static token in the query,
 * or a signed query computed with node:crypto from docs/signed-query.md rather than the hub's own
 * code), maps them with the network's Keitaro-style mapping, and relays each accepted or updated
 * event to a real HTTP partner exactly once, test traffic only to the partner that takes it.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, type ReceivedRequest, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { canonicalQuery, signature, signUrl } from "./signed-query-sender";
import { adminRequest, eventually, expectStatus, sleep } from "./support";

const DELIVERY_DEADLINE_MS = 60_000;
/** After the last delivery, how long to keep listening for a stray repeat. */
const QUIET_MS = 2_500;
const VECTORS_FILE = path.resolve(import.meta.dirname, "../fixtures/signed-query-vectors.json");

interface IngestAnswer {
  status: string;
  event_id: string;
  network_id: string;
  transaction_id: string;
  conversion_status: string;
}

interface Problem {
  code: string;
  errors: { location: string; message: string }[];
}

interface CreatedNetwork {
  id: string;
  auth: { methods: string[]; ip_allowlist: string[] };
  secret: string;
  token?: string;
}

interface Credential {
  id: string;
  kind: "signing" | "token";
  expires_at: string | null;
  last_used_at: string | null;
}

interface ConversionDetail {
  transaction_id: string;
  status: string;
  amount: string | null;
  currency: string | null;
  click_id: string | null;
  meta: Record<string, unknown> | null;
  events: { event_id: string; verdict: string; status: string }[];
}

interface Delivery {
  id: string;
  event_id: string;
  partner_id: string;
  network_id: string;
  transaction_id: string;
  state: string;
  attempts: number;
  conversion_status: string;
}

/** What one accepted or updated event must look like when it reaches a partner. */
interface ExpectedEvent {
  event_id: string;
  transaction_id: string;
  status: string;
  amount: string;
  currency: string;
  click_id: string;
  offer: string;
  test: boolean;
}

interface Partner {
  id: string;
  signingSecret: string;
}

let hub: SharedHub;
let partnerServer: PartnerServer;

beforeAll(async () => {
  partnerServer = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = sharedHub();
});

afterAll(async () => {
  await partnerServer?.close();
});

/** A tracker's postback URL template with its macros filled in, each value URL-encoded. */
function fillMacros(template: string, macros: Record<string, string>): string {
  return template.replace(/\{(\w+)\}/g, (whole, name: string) =>
    name in macros ? encodeURIComponent(macros[name] ?? "") : whole,
  );
}

// --- helpers ---------------------------------------------------------------------------------

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function createNetwork(body: Record<string, unknown>): Promise<CreatedNetwork> {
  return expectStatus<CreatedNetwork>(await admin("/v1/networks", { method: "POST", body: JSON.stringify(body) }), 201);
}

async function createPartner(body: Record<string, unknown>): Promise<Partner> {
  const created = await expectStatus<{ id: string; signing_secret?: string }>(
    await admin("/v1/partners", { method: "POST", body: JSON.stringify(body) }),
    201,
  );
  if (created.signing_secret === undefined) throw new Error("a signed partner was created without a signing_secret");
  return { id: created.id, signingSecret: created.signing_secret };
}

/** What to show when a poll times out: what the partner received, and what wrangler printed. */
function context(): string {
  return `partner saw: ${JSON.stringify(partnerServer.requests.map(summarise), null, 2)}\n${hub.log()}`;
}

async function deliveriesOf(partnerId: string): Promise<Delivery[]> {
  const list = await expectStatus<{ data: Delivery[]; next_cursor: string | null }>(
    await admin(`/v1/deliveries?partner_id=${partnerId}&limit=200`),
    200,
  );
  expect(list.next_cursor).toBeNull();
  return list.data;
}

function summarise(request: ReceivedRequest) {
  const { webhookId, attempt, url, answeredStatus } = request;
  return { webhookId, attempt, url, answeredStatus };
}

describe("an affiliate tracker firing GET postbacks at wrangler dev", () => {
  it("signs the docs' test vectors with this file's sender, so the signed GETs below follow the spec", () => {
    const { vectors } = JSON.parse(readFileSync(VECTORS_FILE, "utf8")) as {
      vectors: {
        name: string;
        secret: string;
        url: string;
        content_type: string | null;
        body: string | null;
        pb_id: string;
        pb_ts: string;
        canonical: string;
        signature: string;
      }[];
    };
    expect(vectors.length).toBeGreaterThanOrEqual(4);
    for (const vector of vectors) {
      const form = vector.content_type === "application/x-www-form-urlencoded";
      const pairs = [...new URL(vector.url).searchParams, ...new URLSearchParams(form ? (vector.body ?? "") : "")];
      expect(canonicalQuery(pairs), vector.name).toBe(vector.canonical);
      expect(signature(vector.secret, vector.pb_id, vector.pb_ts, pairs), vector.name).toBe(vector.signature);
    }
  });

  it("maps token and signed-query GETs into conversions and relays each accepted or updated event exactly once", async () => {
    const networkId = `e2e-aff-${randomUUID().slice(0, 8)}`;
    const network = await createNetwork({
      id: networkId,
      name: "E2E Affiliate Tracker",
      auth: { methods: ["token", "signed_query"], ip_allowlist: [] },
      // Keitaro's conventions (tid, else subid, is the key; lead → pending, sale → approved),
      // plus what this network sends beyond them.
      mapping: { preset: "keitaro", default_currency: "USD", meta_params: ["offer"] },
    });
    expect(network.auth).toEqual({ methods: ["token", "signed_query"], ip_allowlist: [] });
    expect(network.token).toMatch(/^pbt_/);
    expect(network.secret).toMatch(/^whsec_/);
    const token = network.token ?? "";

    const partnerUrl = (route: string) =>
      `${partnerServer.origin}/${route}?delivery={delivery_id}&tx={transaction_id}&status={status}` +
      "&payout={amount}&cur={currency}&click={click_id}&offer={meta.offer}&test={test}";
    const live = await createPartner({
      name: "E2E live affiliate",
      url_template: partnerUrl("live"),
      sign: true,
      retry_schedule_seconds: [1, 1, 1],
      filters: { networks: [networkId] },
    });
    const sandbox = await createPartner({
      name: "E2E sandbox affiliate",
      url_template: partnerUrl("sandbox"),
      sign: true,
      retry_schedule_seconds: [1, 1, 1],
      filters: { networks: [networkId] },
      receives_test_traffic: true,
    });

    // The URL template as the network types it into its tracker: macros in braces, the token fixed.
    const template =
      `${hub.baseUrl}/v1/postbacks/${networkId}?subid={subid}&tid={tid}&status={status}` +
      `&payout={payout}&currency={currency}&offer={offer}&token=${token}`;
    const fire = (macros: Record<string, string>) => fetch(fillMacros(template, macros));

    const expected: ExpectedEvent[] = [];
    const expectEvent = (answer: IngestAnswer, event: Omit<ExpectedEvent, "event_id" | "status" | "test">) =>
      expected.push({ ...event, event_id: answer.event_id, status: answer.conversion_status, test: false });

    // 1. A lead, the same lead again (a tracker retrying), then the sale: pending → approved.
    const lead = { subid: `clk-${randomUUID()}`, tid: `ord-${randomUUID()}`, payout: "12.50", currency: "EUR" };
    const leadMacros = { ...lead, status: "lead", offer: "summer sale" };
    const accepted = await expectStatus<IngestAnswer>(await fire(leadMacros), 200);
    expect(accepted).toMatchObject({
      status: "accepted",
      network_id: networkId,
      transaction_id: lead.tid,
      conversion_status: "pending",
    });
    expectEvent(accepted, {
      transaction_id: lead.tid,
      amount: "12.50",
      currency: "EUR",
      click_id: lead.subid,
      offer: "summer sale",
    });

    const repeat = await fire(leadMacros);
    expect(repeat.headers.get("idempotent-replayed")).toBe("true");
    expect(await expectStatus<IngestAnswer>(repeat, 200)).toMatchObject({
      status: "duplicate",
      event_id: accepted.event_id,
    });

    const sale = await expectStatus<IngestAnswer>(await fire({ ...leadMacros, status: "sale" }), 200);
    expect(sale).toMatchObject({ status: "updated", transaction_id: lead.tid, conversion_status: "approved" });
    expectEvent(sale, {
      transaction_id: lead.tid,
      amount: "12.50",
      currency: "EUR",
      click_id: lead.subid,
      offer: "summer sale",
    });

    // 2. A tracker that has no tid: the subid is the key; no currency macro: the default currency.
    const subidOnly = `clk-${randomUUID()}`;
    const bare = await expectStatus<IngestAnswer>(
      await fetch(`${hub.baseUrl}/v1/postbacks/${networkId}?subid=${subidOnly}&status=sale&payout=3&token=${token}`),
      200,
    );
    expect(bare).toMatchObject({ status: "accepted", transaction_id: subidOnly, conversion_status: "approved" });
    expectEvent(bare, { transaction_id: subidOnly, amount: "3", currency: "USD", click_id: subidOnly, offer: "" });

    // 3. A signed query: no token in the URL; pb_id, pb_ts and pb_sig over every other parameter.
    const signedMacros = {
      subid: `clk-${randomUUID()}`,
      tid: `ord-${randomUUID()}`,
      status: "sale",
      payout: "49.90",
      currency: "EUR",
      offer: "café & co",
    };
    const unsigned = fillMacros(
      `${hub.baseUrl}/v1/postbacks/${networkId}?subid={subid}&tid={tid}&status={status}&payout={payout}&currency={currency}&offer={offer}`,
      signedMacros,
    );
    const signedUrl = signUrl(unsigned, network.secret, randomUUID());
    const signed = await expectStatus<IngestAnswer>(await fetch(signedUrl), 200);
    expect(signed).toMatchObject({
      status: "accepted",
      transaction_id: signedMacros.tid,
      conversion_status: "approved",
    });
    expectEvent(signed, {
      transaction_id: signedMacros.tid,
      amount: "49.90",
      currency: "EUR",
      click_id: signedMacros.subid,
      offer: "café & co",
    });

    // Tampered after signing, or a wrong token: 401 naming the failed check; nothing is recorded.
    const tampered = await fetch(signedUrl.replace("payout=49.90", "payout=499.00"));
    const tamperedProblem = await expectStatus<Problem>(tampered, 401);
    expect(tamperedProblem.code).toBe("unauthorized");
    expect(tamperedProblem.errors.map((e) => e.location)).toEqual(["query.pb_sig"]);
    const wrongToken = await fetch(
      `${hub.baseUrl}/v1/postbacks/${networkId}?subid=x&tid=ord-wrong-token&status=sale&token=pbt_not-the-token`,
    );
    expect((await expectStatus<Problem>(wrongToken, 401)).errors.map((e) => e.location)).toEqual(["query.token"]);

    // 4. A tracker that expects a fixed answer: text/plain OK, the verdict in headers.
    await expectStatus(
      await admin(`/v1/networks/${networkId}`, {
        method: "PATCH",
        body: JSON.stringify({ answer: { content_type: "text/plain", body: "OK" } }),
      }),
      200,
    );
    const okMacros = {
      subid: `clk-${randomUUID()}`,
      tid: `ord-${randomUUID()}`,
      status: "lead",
      payout: "5.00",
      currency: "EUR",
      offer: "ok-offer",
    };
    const okResponse = await fire(okMacros);
    const okBody = await okResponse.text();
    expect(okResponse.status, okBody).toBe(200);
    expect(okBody).toBe("OK");
    expect(okResponse.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(okResponse.headers.get("x-postback-status")).toBe("accepted");
    const okEventId = okResponse.headers.get("x-event-id") ?? "";
    expect(okEventId).toMatch(/^evt_/);
    expected.push({
      event_id: okEventId,
      transaction_id: okMacros.tid,
      status: "pending",
      amount: "5.00",
      currency: "EUR",
      click_id: okMacros.subid,
      offer: "ok-offer",
      test: false,
    });
    const okRepeat = await fire(okMacros);
    expect(await okRepeat.text()).toBe("OK");
    expect(okRepeat.headers.get("x-postback-status")).toBe("duplicate");
    expect(okRepeat.headers.get("x-event-id")).toBe(okEventId);

    // 5. Token rotation with an overlap: the new token and the old one both work until the grace ends.
    const rotated = await expectStatus<{ token_id: string; token: string; previous_tokens_expire_at: string }>(
      await admin(`/v1/networks/${networkId}/tokens`, {
        method: "POST",
        body: JSON.stringify({ grace_period_seconds: 3600 }),
      }),
      201,
    );
    expect(rotated.token).not.toBe(token);
    const newTokenUrl = fillMacros(template.replace(`token=${token}`, `token=${rotated.token}`), {
      ...okMacros,
      status: "sale",
    });
    const okSale = await fetch(newTokenUrl);
    expect(await okSale.text()).toBe("OK");
    expect(okSale.headers.get("x-postback-status")).toBe("updated");
    expected.push({
      event_id: okSale.headers.get("x-event-id") ?? "",
      transaction_id: okMacros.tid,
      status: "approved",
      amount: "5.00",
      currency: "EUR",
      click_id: okMacros.subid,
      offer: "ok-offer",
      test: false,
    });
    const oldTokenStillWorks = await fire({ ...okMacros, status: "sale" });
    expect(await oldTokenStillWorks.text()).toBe("OK");
    expect(oldTokenStillWorks.headers.get("x-postback-status")).toBe("duplicate");

    // What wrangler dev printed for all of the above: a log line per request, and no credential in any.
    const printed = await eventually(
      async () => {
        const log = hub.log();
        return log.includes(`"network_id":"${networkId}"`) && log.includes('"verdict":"duplicate"') ? log : null;
      },
      "the request log lines printed",
      { timeoutMs: 10_000 },
    );
    for (const [what, value] of [
      ["the token", token],
      ["the rotated token", rotated.token],
      ["the signing secret", network.secret],
    ] as const) {
      expect(printed.includes(value), `${what} was printed by wrangler dev`).toBe(false);
    }

    // 6. A test postback (pb_test=1): recorded, delivered only to the partner that takes test traffic.
    const testMacros = {
      subid: `clk-${randomUUID()}`,
      tid: `ord-test-${randomUUID()}`,
      status: "sale",
      payout: "1.00",
      currency: "EUR",
      offer: "test",
    };
    const testResponse = await fetch(`${fillMacros(template, testMacros)}&pb_test=1`);
    expect(await testResponse.text()).toBe("OK");
    expect(testResponse.headers.get("x-postback-status")).toBe("accepted");
    expected.push({
      event_id: testResponse.headers.get("x-event-id") ?? "",
      transaction_id: testMacros.tid,
      status: "approved",
      amount: "1.00",
      currency: "EUR",
      click_id: testMacros.subid,
      offer: "test",
      test: true,
    });

    // The conversions API: each conversion with the fields its parameters were mapped to (a test
    // conversion is asked for with ?test=true: the detail serves the live one by default).
    const conversion = async (transactionId: string, test: boolean) => {
      const response = await admin(
        `/v1/conversions/${networkId}/${encodeURIComponent(transactionId)}${test ? "?test=true" : ""}`,
      );
      return { status: response.status, body: await response.text() };
    };
    const finalStates = new Map<string, ExpectedEvent>();
    for (const event of expected) finalStates.set(event.transaction_id, event);
    for (const [transactionId, last] of finalStates) {
      const eventCount = expected.filter((e) => e.transaction_id === transactionId).length;
      const found = await eventually(() => conversion(transactionId, last.test), `conversion ${transactionId}`, {
        ready: ({ status, body }) =>
          status === 200 && (JSON.parse(body) as ConversionDetail).events.length >= eventCount,
        timeoutMs: DELIVERY_DEADLINE_MS,
        context,
      });
      const detail = JSON.parse(found.body) as ConversionDetail;
      expect(detail).toMatchObject({
        transaction_id: transactionId,
        status: last.status,
        amount: last.amount,
        currency: last.currency,
        click_id: last.click_id,
        meta: last.offer === "" ? null : { offer: last.offer },
      });
      expect(detail.events.map((e) => e.event_id)).toEqual(
        expected.filter((e) => e.transaction_id === transactionId).map((e) => e.event_id),
      );
    }

    // The deliveries API: one delivered delivery per (event, partner); test events to the sandbox only.
    const liveEvents = expected.filter((e) => !e.test);
    const partners = [
      { partner: live, route: "/live", events: liveEvents },
      { partner: sandbox, route: "/sandbox", events: expected },
    ];
    const deliveredBy = new Map<string, Delivery[]>();
    for (const { partner, events } of partners) {
      const deliveries = await eventually(() => deliveriesOf(partner.id), `deliveries of ${partner.id}`, {
        ready: (list) => list.length >= events.length && list.every((d) => d.state === "delivered"),
        timeoutMs: DELIVERY_DEADLINE_MS,
        context,
      });
      expect(deliveries.map((d) => d.event_id).sort()).toEqual(events.map((e) => e.event_id).sort());
      for (const delivery of deliveries) expect(delivery.network_id).toBe(networkId);
      deliveredBy.set(partner.id, deliveries);
    }
    await sleep(QUIET_MS);

    // The partner server: after deduplicating on webhook-id, each delivery arrived once, signed,
    // its URL rendered from the mapped conversion; nothing else arrived.
    const requests = [...partnerServer.requests];
    const byEvent = new Map(expected.map((e) => [e.event_id, e]));
    for (const { partner, route, events } of partners) {
      const deliveries = deliveredBy.get(partner.id) ?? [];
      const seen = requests.filter((r) => new URL(r.url, partnerServer.origin).pathname === route);
      const firstSeen = new Map<string, ReceivedRequest>();
      for (const request of seen) if (!firstSeen.has(request.webhookId)) firstSeen.set(request.webhookId, request);
      expect([...firstSeen.keys()].sort()).toEqual(deliveries.map((d) => d.id).sort());
      expect(seen.filter((r) => r.answeredStatus === 200)).toHaveLength(events.length);

      for (const delivery of deliveries) {
        const request = firstSeen.get(delivery.id);
        const event = byEvent.get(delivery.event_id);
        if (!request || !event) throw new Error(`delivery ${delivery.id} has no request or no expected event`);
        // A GET is signed over its request line as the partner's server received it.
        const requestLine = `${request.method} ${request.url}`;
        expect(() =>
          new Webhook(partner.signingSecret).verify(requestLine, request.headers, { jsonParse: false }),
        ).not.toThrow();
        expect(Object.fromEntries(new URL(request.url, partnerServer.origin).searchParams)).toEqual({
          delivery: delivery.id,
          tx: event.transaction_id,
          status: event.status,
          payout: event.amount,
          cur: event.currency,
          click: event.click_id,
          offer: event.offer,
          test: String(event.test),
        });
      }
    }

    // Rotation telemetry: every credential used above says so; the old token's grace has started.
    const detail = await eventually(
      async () =>
        expectStatus<{ secrets: Credential[] }>(await admin(`/v1/networks/${networkId}`), 200).then((d) => d.secrets),
      "credential last_used_at",
      { ready: (secrets) => secrets.every((s) => s.last_used_at !== null), timeoutMs: 10_000, context },
    );
    const newToken = detail.find((s) => s.id === rotated.token_id);
    const oldTokens = detail.filter((s) => s.kind === "token" && s.id !== rotated.token_id);
    const signing = detail.filter((s) => s.kind === "signing");
    expect(detail).toHaveLength(3);
    expect(newToken).toMatchObject({ kind: "token", expires_at: null });
    expect(oldTokens).toEqual([expect.objectContaining({ expires_at: rotated.previous_tokens_expire_at })]);
    expect(signing).toEqual([expect.objectContaining({ expires_at: null })]);
  });

  it("checks the IP allowlist against CF-Connecting-IP, never X-Forwarded-For", async () => {
    const networkId = `e2e-ip-${randomUUID().slice(0, 8)}`;
    const network = await createNetwork({
      id: networkId,
      name: "E2E Allowlisted",
      auth: { methods: ["token"], ip_allowlist: ["203.0.113.0/24", "2001:db8::/32"] },
    });
    const url = (tx: string) => `${hub.baseUrl}/v1/postbacks/${networkId}?txid=${tx}&token=${network.token}`;

    // wrangler dev reports the socket's address (127.0.0.1); a forwarded-for header changes nothing.
    const headerSets: Record<string, string>[] = [{}, { "x-forwarded-for": "203.0.113.7" }];
    for (const headers of headerSets) {
      const problem = await expectStatus<Problem>(await fetch(url(`ord-${randomUUID()}`), { headers }), 403);
      expect(problem.code).toBe("ip_not_allowed");
      expect(problem.errors).toEqual([
        {
          location: "header.cf-connecting-ip",
          message: "the client address 127.0.0.1 is not in this network's IP allowlist",
        },
      ]);
    }
    // On Cloudflare the edge sets CF-Connecting-IP itself; locally it is taken as sent, which lets
    // this test stand in for a client inside the ranges, v4 and v6.
    for (const ip of ["203.0.113.200", "2001:db8:ffff::1"]) {
      const answer = await expectStatus<IngestAnswer>(
        await fetch(url(`ord-${randomUUID()}`), { headers: { "cf-connecting-ip": ip } }),
        200,
      );
      expect(answer.status).toBe("accepted");
    }
    for (const ip of ["203.0.114.1", "2001:db9::1"]) {
      const response = await fetch(url(`ord-${randomUUID()}`), { headers: { "cf-connecting-ip": ip } });
      expect((await expectStatus<Problem>(response, 403)).code).toBe("ip_not_allowed");
    }
  });
});
