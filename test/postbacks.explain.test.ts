/**
 * Explain (POST or GET /v1/postbacks/{network_id}/explain): a dry run through the real app that
 * shows how a request would be handled (authentication with what should have been signed, the
 * mapping, validation, the dedupe decision against the Durable Object's current state, and the
 * partners' rendered requests) while storing and sending nothing.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { signedQueryContent } from "../src/ingest/signed-query";
import { utf8 } from "../src/lib/bytes";
import {
  ADMIN_TOKEN,
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import {
  createInboundNetwork,
  type InboundNetwork,
  type IngestAnswer,
  postbackUrl,
  replaceParam,
  signedQuery,
  TOKEN_ONLY,
  TRACKER_MAPPING,
  tokenOf,
} from "./support/inbound";
import { expectLocations, expectProblem, signedHeaders } from "./support/problems";

interface Explanation {
  network: { id: string; status: string; test_mode: boolean; auth_methods: string[]; ip_allowlist: string[] };
  payload: { kind: string; parameters: [string, string][] };
  authentication: {
    ok: boolean;
    method: string | null;
    carried: string[];
    failure: { location: string; message: string } | null;
    signed_content: string | null;
  };
  test: boolean;
  mapping: { used: Record<string, string>; meta_keys: string[]; ignored: string[] } | null;
  candidate: unknown;
  validation: { ok: boolean; errors: { location: string; message: string }[] };
  decision: {
    verdict: string;
    current_status: string | null;
    conversion_status: string;
    errors: { location: string; message: string }[];
  } | null;
  partners: {
    partner_id: string;
    name: string;
    notified: boolean;
    reason: string;
    request?: { method: string; url: string; headers: Record<string, string>; body: string | null } | null;
  }[];
}

const AS_ADMIN = { authorization: `Bearer ${ADMIN_TOKEN}` };

const WRONG_SECRET = "whsec_SNpKkKXDngGyGWvDQlBofzPd5bMWxCl0JwlgwDUgrFE=";

function explainUrl(networkId: string, params: Record<string, string> | [string, string][] = {}): string {
  return postbackUrl(networkId, params, "/explain");
}

/** A JSON postback sent to explain, signed with `secret`, with the admin token when `asAdmin`. */
async function explainJson(
  network: TestNetwork,
  body: Record<string, unknown>,
  options: { secret?: string; asAdmin?: boolean; headers?: Record<string, string> } = {},
): Promise<{ response: Response; webhookId: string; timestamp: string }> {
  const raw = JSON.stringify(body);
  const headers = await signedHeaders(options.secret ?? network.secret, utf8(raw), {
    ...(options.headers === undefined ? {} : { headers: options.headers }),
  });
  if (options.asAdmin) headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  const response = await exports.default.fetch(
    new Request(explainUrl(network.id), { method: "POST", headers, body: raw }),
  );
  return {
    response,
    webhookId: String(headers.get("webhook-id")),
    timestamp: String(headers.get("webhook-timestamp")),
  };
}

/** A tracker's GET sent to explain with the network's token. */
async function explainGet(
  network: InboundNetwork,
  params: Record<string, string>,
  headers: Record<string, string> = {},
): Promise<Explanation> {
  const response = await exports.default.fetch(
    new Request(explainUrl(network.id, { ...params, token: tokenOf(network) }), { headers }),
  );
  return expectStatus<Explanation>(response, 200);
}

const trackerNetwork = () => createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });

describe("explain: who may ask, and the authentication verdict", () => {
  it("explains a wrongly signed JSON postback to the admin: the failed check and what should have been signed", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const { response, webhookId, timestamp } = await explainJson(network, body, {
      secret: WRONG_SECRET,
      asAdmin: true,
    });
    const explanation = await expectStatus<Explanation>(response, 200);
    expect(explanation.network).toMatchObject({
      id: network.id,
      status: "active",
      auth_methods: ["standard_webhooks"],
    });
    expect(explanation.payload.kind).toBe("json");
    expect(explanation.authentication).toEqual({
      ok: false,
      method: null,
      carried: ["standard_webhooks"],
      failure: { location: "header.webhook-signature", message: expect.stringContaining("no v1 signature matches") },
      signed_content: `${webhookId}.${timestamp}.<the raw body bytes>`,
    });
    // The rest of the pipeline is still explained.
    expect(explanation.validation).toEqual({ ok: true, errors: [] });
    expect(explanation.decision).toMatchObject({ verdict: "accepted", current_status: null });
  });

  it("explains to the network itself, with its own valid credentials and no admin token", async () => {
    const network = await createNetwork();
    const { response } = await explainJson(network, makePostback());
    const explanation = await expectStatus<Explanation>(response, 200);
    expect(explanation.authentication).toMatchObject({ ok: true, method: "standard_webhooks", failure: null });
    expect(explanation.authentication.signed_content).toBeNull();
  });

  it.each([
    ["neither the admin token nor valid credentials", undefined],
    ["a wrong admin token", "Bearer not-the-admin-token"],
  ])("answers 401 to %s", async (_, authorization) => {
    const network = await createNetwork();
    const raw = JSON.stringify(makePostback());
    const headers = await signedHeaders(WRONG_SECRET, utf8(raw));
    if (authorization) headers.set("authorization", authorization);
    const response = await exports.default.fetch(
      new Request(explainUrl(network.id), { method: "POST", headers, body: raw }),
    );
    expectLocations(await expectProblem(response, 401, "unauthorized"), ["header.webhook-signature"]);
  });

  it("answers 404 for an unknown network", async () => {
    const response = await admin(`/v1/postbacks/${uniqueId("ghost")}/explain`, {
      method: "POST",
      body: JSON.stringify(makePostback()),
    });
    await expectProblem(response, 404, "network_not_found");
  });

  it("shows the admin the exact content a tampered signed query should have signed, never the signature", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["signed_query"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const signed = await signedQuery(network.secret, { txid: uniqueId("tx"), payout: "1.00", status: "1" });
    const tampered = replaceParam(signed, "payout", "900.00");
    const response = await exports.default.fetch(
      new Request(explainUrl(network.id, tampered), { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
    );
    const text = await response.clone().text();
    const explanation = await expectStatus<Explanation>(response, 200);
    const pbId = String(tampered.find(([name]) => name === "pb_id")?.[1]);
    const pbTs = String(tampered.find(([name]) => name === "pb_ts")?.[1]);
    const signature = String(signed.find(([name]) => name === "pb_sig")?.[1]);
    expect(explanation.authentication).toMatchObject({
      ok: false,
      carried: ["signed_query"],
      failure: { location: "query.pb_sig" },
      signed_content: signedQueryContent(pbId, pbTs, tampered),
    });
    expect(text).not.toContain(signature.slice("v1,".length, "v1,".length + 16));
    expect(explanation.payload.parameters).toContainEqual(["pb_sig", "(hidden)"]);
  });
});

describe("explain: mapping, validation and the dedupe decision", () => {
  it("shows how a GET's parameters were mapped, and never echoes the token", async () => {
    const network = await trackerNetwork();
    const txid = uniqueId("tx");
    const response = await exports.default.fetch(
      new Request(
        explainUrl(network.id, { txid, payout: "12.50", status: "1", sub1: "x", junk: "y", token: tokenOf(network) }),
      ),
    );
    const text = await response.clone().text();
    const explanation = await expectStatus<Explanation>(response, 200);
    expect(text).not.toContain(tokenOf(network));
    expect(explanation.payload.kind).toBe("query");
    expect(explanation.payload.parameters).toContainEqual(["token", "(hidden)"]);
    expect(explanation.authentication).toMatchObject({ ok: true, method: "token" });
    expect(explanation.mapping).toEqual({
      used: { transaction_id: "txid", status: "status", amount: "payout" },
      meta_keys: ["sub1"],
      ignored: ["junk"],
    });
    expect(explanation.candidate).toEqual({
      transaction_id: txid,
      status: "approved",
      amount: "12.50",
      currency: "USD",
      meta: { sub1: "x" },
    });
    expect(explanation.validation).toEqual({ ok: true, errors: [] });
    expect(explanation.decision).toEqual({
      verdict: "accepted",
      current_status: null,
      conversion_status: "approved",
      errors: [],
    });
    expect(explanation.test).toBe(false);
  });

  it("lists every validation error, and decides nothing", async () => {
    const network = await trackerNetwork();
    const explanation = await explainGet(network, { txid: uniqueId("tx"), payout: "twelve", status: "7" });
    expect(explanation.validation.ok).toBe(false);
    // Named after the parameters sent, as the real answer names them; `mapping.used` links them to fields.
    expect(explanation.validation.errors.map((e) => e.location).sort()).toEqual(["query.payout", "query.status"]);
    expect(explanation.decision).toBeNull();
    expect(explanation.partners).toEqual([]);
  });

  it("decides against the current state: accepted, then duplicate, updated and conflict once recorded", async () => {
    const network = await trackerNetwork();
    const params = { txid: uniqueId("tx"), payout: "5.00", status: "1" };
    expect((await explainGet(network, params)).decision).toMatchObject({ verdict: "accepted", current_status: null });

    const posted = await exports.default.fetch(
      new Request(postbackUrl(network.id, { ...params, token: tokenOf(network) })),
    );
    expect((await expectStatus<IngestAnswer>(posted, 200)).status).toBe("accepted");

    expect((await explainGet(network, params)).decision).toEqual({
      verdict: "duplicate",
      current_status: "approved",
      conversion_status: "approved",
      errors: [],
    });
    expect((await explainGet(network, { ...params, status: "paid" })).decision).toEqual({
      verdict: "updated",
      current_status: "approved",
      conversion_status: "paid",
      errors: [],
    });
    const conflict = (await explainGet(network, { ...params, payout: "6.00" })).decision;
    expect(conflict).toMatchObject({ verdict: "conflict", current_status: "approved" });
    expect(conflict?.errors.map((e) => e.location)).toEqual(["body.amount"]);
  });

  it("says whether the postback would be a test", async () => {
    const network = await trackerNetwork();
    const params = { txid: uniqueId("tx"), payout: "1.00" };
    expect((await explainGet(network, { ...params, pb_test: "1" })).test).toBe(true);
    expect((await explainGet(network, params, { "x-postback-test": "1" })).test).toBe(true);
    expect((await explainGet(network, params)).test).toBe(false);
  });

  it("shows a test marker outside a signature as the authentication failure it is, and honours a signed one", async () => {
    const network = await createNetwork();
    const marked = await explainJson(network, makePostback(), { headers: { "x-postback-test": "1" } });
    const explanation = await expectStatus<Explanation>(marked.response, 200);
    expect(explanation.authentication).toMatchObject({
      ok: false,
      method: "standard_webhooks",
      failure: { location: "header.x-postback-test" },
    });
    expect(explanation.test).toBe(false);
    const signed = await explainJson(network, makePostback({ test: true }));
    const signedExplanation = await expectStatus<Explanation>(signed.response, 200);
    expect(signedExplanation.authentication.ok).toBe(true);
    expect(signedExplanation.test).toBe(true);
  });
});

describe("explain: partners, and nothing stored or sent", () => {
  it("shows the admin which partners would be notified with their rendered requests, and why others would not", async () => {
    const network = await trackerNetwork();
    const prefix = `/ok/${uniqueId("explain")}`;
    const only = { networks: [network.id] };
    const matching = await createPartner({
      url_template: `${PARTNER}${prefix}/all?tx={transaction_id}&amt={amount}&s={status}`,
      filters: only,
    });
    const onlyPaid = await createPartner({
      url_template: `${PARTNER}${prefix}/paid?tx={transaction_id}`,
      filters: { ...only, statuses: ["paid"] },
    });
    const posting = await createPartner({
      url_template: `${PARTNER}${prefix}/post`,
      method: "POST",
      body_template: '{"txid":"{transaction_id}","payout":{amount}}',
      filters: only,
    });
    const txid = `ord 1/2&x=é-${uniqueId("tx")}`;
    const explanation = await explainGet(network, { txid, payout: "12.50", status: "1" }, AS_ADMIN);
    const byId = new Map(explanation.partners.map((p) => [p.partner_id, p]));

    expect(byId.get(matching.id)).toMatchObject({ notified: true, reason: "would be notified" });
    expect(byId.get(matching.id)?.request).toEqual({
      method: "GET",
      url: `${PARTNER}${prefix}/all?tx=${encodeURIComponent(txid)}&amt=12.50&s=approved`,
      headers: {},
      body: null,
    });
    expect(byId.get(matching.id)?.request?.url).toContain("ord%201%2F2%26x%3D%C3%A9");

    expect(byId.get(onlyPaid.id)).toMatchObject({
      notified: false,
      reason: "its filters exclude this event",
      request: null,
    });

    const postRequest = byId.get(posting.id)?.request;
    expect(postRequest?.method).toBe("POST");
    expect(JSON.parse(String(postRequest?.body))).toEqual({ txid, payout: 12.5 });
  });

  it("says that a partner without test traffic would not get a test postback", async () => {
    const network = await trackerNetwork();
    const prefix = `/ok/${uniqueId("explain-test")}`;
    const only = { networks: [network.id] };
    const live = await createPartner({ url_template: `${PARTNER}${prefix}/live`, filters: only });
    const tests = await createPartner({
      url_template: `${PARTNER}${prefix}/tests`,
      filters: only,
      receives_test_traffic: true,
    });
    const explanation = await explainGet(network, { txid: uniqueId("tx"), payout: "1.00", pb_test: "1" });
    const byId = new Map(explanation.partners.map((p) => [p.partner_id, p]));
    expect(byId.get(live.id)).toMatchObject({ notified: false, reason: "does not take test traffic" });
    expect(byId.get(tests.id)).toMatchObject({ notified: true });
  });

  // Explain answers the network itself too (with its own credentials), and a network is an outside
  // party: the partners other networks feed, and the headers the hub sends them (often an API key),
  // are not its business.
  it("does not show a network, explaining with its own credentials, the partners of other networks", async () => {
    const network = await trackerNetwork();
    const other = await trackerNetwork();
    const prefix = `/ok/${uniqueId("explain-private")}`;
    const mine = await createPartner({ url_template: `${PARTNER}${prefix}/mine`, filters: { networks: [network.id] } });
    const theirs = await createPartner({
      name: `Secret partner of ${other.id}`,
      url_template: `${PARTNER}${prefix}/theirs?key=partner-api-key`,
      headers: { "x-api-key": "partner-secret-header" },
      filters: { networks: [other.id] },
    });
    const response = await exports.default.fetch(
      new Request(explainUrl(network.id, { txid: uniqueId("tx"), payout: "1.00", token: tokenOf(network) })),
    );
    const text = await response.clone().text();
    const explanation = await expectStatus<Explanation>(response, 200);
    expect(explanation.partners.map((p) => p.partner_id)).toContain(mine.id);
    expect(explanation.partners.map((p) => p.partner_id)).not.toContain(theirs.id);
    expect(text).not.toContain(`Secret partner of ${other.id}`);
  });

  it("shows a network only each partner's name and verdict, never its URL, body, headers or method", async () => {
    const network = await trackerNetwork();
    const prefix = `/ok/${uniqueId("explain-secrets")}`;
    const only = { networks: [network.id] };
    const apiKey = `partner-api-key-${uniqueId("k")}`;
    const bodySecret = `body-secret-${uniqueId("s")}`;
    const headerSecret = `header-secret-${uniqueId("h")}`;
    const getting = await createPartner({
      url_template: `${PARTNER}${prefix}/get?api_key=${apiKey}&tx={transaction_id}`,
      headers: { "x-api-key": headerSecret },
      filters: only,
    });
    const posting = await createPartner({
      url_template: `${PARTNER}${prefix}/post?api_key=${apiKey}`,
      method: "POST",
      body_template: `{"secret":"${bodySecret}","tx":"{transaction_id}"}`,
      filters: only,
    });
    const paidOnly = await createPartner({
      url_template: `${PARTNER}${prefix}/paid?api_key=${apiKey}`,
      filters: { ...only, statuses: ["paid"] },
    });
    const params = { txid: uniqueId("tx"), payout: "3.00", status: "1", token: tokenOf(network) };

    const asNetwork = await exports.default.fetch(new Request(explainUrl(network.id, params)));
    const text = await asNetwork.clone().text();
    const seen = await expectStatus<Explanation>(asNetwork, 200);
    for (const secret of [apiKey, bodySecret, headerSecret, prefix]) expect(text).not.toContain(secret);
    const mine = seen.partners.filter((p) => [getting.id, posting.id, paidOnly.id].includes(p.partner_id));
    expect(mine.map((p) => Object.keys(p).sort())).toEqual(Array(3).fill(["name", "notified", "partner_id", "reason"]));
    const byId = new Map(mine.map((p) => [p.partner_id, p]));
    expect(byId.get(getting.id)).toMatchObject({ notified: true, reason: "would be notified" });
    expect(byId.get(posting.id)).toMatchObject({ notified: true, reason: "would be notified" });
    expect(byId.get(paidOnly.id)).toMatchObject({ notified: false, reason: "its filters exclude this event" });

    // The admin, explaining the same postback, sees the requests in full.
    const asAdmin = await exports.default.fetch(new Request(explainUrl(network.id, params), { headers: AS_ADMIN }));
    const full = new Map((await expectStatus<Explanation>(asAdmin, 200)).partners.map((p) => [p.partner_id, p]));
    expect(full.get(getting.id)?.request).toEqual({
      method: "GET",
      url: `${PARTNER}${prefix}/get?api_key=${apiKey}&tx=${params.txid}`,
      headers: { "x-api-key": headerSecret },
      body: null,
    });
    expect(full.get(posting.id)?.request).toMatchObject({
      method: "POST",
      url: `${PARTNER}${prefix}/post?api_key=${apiKey}`,
      body: `{"secret":"${bodySecret}","tx":"${params.txid}"}`,
    });
    expect(full.get(paidOnly.id)?.request).toBeNull();
  });

  it("says which partners a delivery would fail for, with the why for the admin only", async () => {
    const network = await trackerNetwork();
    const prefix = `/ok/${uniqueId("explain-fail")}`;
    const only = { networks: [network.id] };
    // Saved while ALLOW_INSECURE_PARTNER_URLS was true: refused now, and the consumer would block it.
    const insecure = await createPartner({ url_template: `${PARTNER}${prefix}/insecure`, filters: only });
    await env.DB.prepare("UPDATE partners SET url_template = ? WHERE id = ?")
      .bind(`http://127.0.0.1:9/${prefix}/insecure?tx={transaction_id}`, insecure.id)
      .run();
    const walking = await createPartner({
      url_template: `${PARTNER}${prefix}/api/{transaction_id}/confirm`,
      filters: only,
    });
    const params = { txid: "..", payout: "3.00", status: "1", token: tokenOf(network) };

    const asNetwork = await exports.default.fetch(new Request(explainUrl(network.id, params)));
    const text = await asNetwork.clone().text();
    const seen = new Map((await expectStatus<Explanation>(asNetwork, 200)).partners.map((p) => [p.partner_id, p]));
    expect(seen.get(insecure.id)).toEqual({
      partner_id: insecure.id,
      name: expect.any(String),
      notified: false,
      reason: "the delivery would fail: its URL would be blocked before sending",
    });
    expect(seen.get(walking.id)).toEqual({
      partner_id: walking.id,
      name: expect.any(String),
      notified: false,
      reason: "the delivery would fail: its request cannot be rendered for this conversion",
    });
    expect(text).not.toContain("127.0.0.1");

    const asAdmin = await exports.default.fetch(new Request(explainUrl(network.id, params), { headers: AS_ADMIN }));
    const full = new Map((await expectStatus<Explanation>(asAdmin, 200)).partners.map((p) => [p.partner_id, p]));
    expect(full.get(insecure.id)).toMatchObject({ notified: false, request: null });
    expect(full.get(insecure.id)?.reason).toMatch(/blocked before sending: the partner URL must use https/);
    expect(full.get(walking.id)).toMatchObject({ notified: false, request: null });
    expect(full.get(walking.id)?.reason).toMatch(/\{transaction_id\} would make the path segment "\.\."/);
  });

  it("stores nothing and sends nothing", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["standard_webhooks", "token"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const prefix = `/ok/${uniqueId("explain-dry")}`;
    await createPartner({
      url_template: `${PARTNER}${prefix}?tx={transaction_id}`,
      filters: { networks: [network.id] },
    });

    const explainedTx = uniqueId("explained");
    const viaGet = await explainGet(network, { txid: explainedTx, payout: "1.00", status: "1" });
    expect(viaGet.partners.filter((p) => p.notified)).toHaveLength(1);
    const jsonBody = makePostback();
    const { response } = await explainJson(network, jsonBody);
    expect((await expectStatus<Explanation>(response, 200)).decision?.verdict).toBe("accepted");

    // A control postback goes all the way through; once its delivery arrived, the pipeline has flushed.
    const control = makePostback();
    await expectStatus(await postback(network, control), 200);
    await eventually(() => conversionInD1(network.id, String(control.transaction_id)));
    const log = await eventually(async () => {
      const received = await partnerLog(prefix);
      return received.length >= 1 ? received : null;
    }, 20_000);
    expect(log.map((r) => new URL(r.url).searchParams.get("tx"))).toEqual([control.transaction_id]);
    expect(await conversionInD1(network.id, explainedTx)).toBeNull();
    expect(await conversionInD1(network.id, String(jsonBody.transaction_id))).toBeNull();

    // The Durable Objects recorded nothing either: the explained postbacks are new when really sent.
    const real = await exports.default.fetch(
      new Request(postbackUrl(network.id, { txid: explainedTx, payout: "1.00", status: "1", token: tokenOf(network) })),
    );
    expect((await expectStatus<IngestAnswer>(real, 200)).status).toBe("accepted");
    expect((await expectStatus<IngestAnswer>(await postback(network, jsonBody), 200)).status).toBe("accepted");
  });
});
