/**
 * Inbound postbacks the way affiliate trackers send them, through the real app and its real local
 * D1, Durable Objects and Queues: GET and form-encoded POST postbacks mapped by the network's
 * settings; token, signed-query and Standard Webhooks authentication; IP allowlists on
 * CF-Connecting-IP; token rotation with its telemetry; fixed answers; test mode and its routing to
 * partners; network settings updates; and the per-network rate limit.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { utf8 } from "../src/lib/bytes";
import { createApiKey } from "./support/access";
import {
  admin,
  BASE,
  conversionInD1,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  sha256Hex,
  uniqueId,
} from "./support/helpers";
import {
  createInboundNetwork,
  expectNotStored,
  formPostback,
  getPostback,
  type InboundNetwork,
  type IngestAnswer,
  networkDetail,
  type Params,
  patchNetwork,
  postbackUrl,
  replaceParam,
  signedQuery,
  TOKEN_ONLY,
  TRACKER_MAPPING,
  testFlags,
  tokenOf,
  withoutParam,
} from "./support/inbound";
import { expectLocations, expectProblem, locationsOf, signedHeaders } from "./support/problems";

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

async function tokenNetwork(settings: Record<string, unknown> = {}): Promise<InboundNetwork> {
  return createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING, ...settings });
}

/** A tracker's GET with the token as a parameter. */
function trackerGet(network: InboundNetwork, params: Record<string, string>, headers: Record<string, string> = {}) {
  return getPostback(network.id, { ...params, token: tokenOf(network) }, headers);
}

function sendWithToken(network: InboundNetwork) {
  return (transactionId: string) => trackerGet(network, { txid: transactionId, payout: "1.00", status: "1" });
}

async function storedConversion(networkId: string, transactionId: string) {
  return eventually(() => conversionInD1(networkId, transactionId));
}

describe("GET postbacks with the token method", () => {
  it("maps a tracker's GET into a conversion: txid, payout, status value, default currency, meta", async () => {
    const network = await tokenNetwork();
    expect(network.token).toMatch(/^pbt_[A-Za-z0-9_-]{32}$/);
    const txid = uniqueId("tx");
    const response = await trackerGet(network, { txid, payout: "12.50", status: "1", sub1: "x", other: "dropped" });
    const answer = await expectStatus<IngestAnswer>(response, 200);
    expect(answer).toMatchObject({
      status: "accepted",
      network_id: network.id,
      transaction_id: txid,
      conversion_status: "approved",
    });
    expect(answer.event_id).toMatch(/^evt_/);

    const row = await storedConversion(network.id, txid);
    expect(row).toMatchObject({ amount: "12.50", currency: "USD", status: "approved", test: 0 });
    expect(JSON.parse(String(row.meta))).toEqual({ sub1: "x" });
  });

  it("takes the token in the x-postback-token header", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await getPostback(
      network.id,
      { txid, payout: "3.00", status: "1" },
      { "x-postback-token": tokenOf(network) },
    );
    expect((await expectStatus<IngestAnswer>(response, 200)).status).toBe("accepted");
    await storedConversion(network.id, txid);
  });

  it("answers a repeated GET as a duplicate with the original event id", async () => {
    const network = await tokenNetwork();
    const params = { txid: uniqueId("tx"), payout: "5.00", status: "1" };
    const first = await expectStatus<IngestAnswer>(await trackerGet(network, params), 200);
    const again = await trackerGet(network, params);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await expectStatus<IngestAnswer>(again, 200)).toEqual({ ...first, status: "duplicate" });
  });

  it.each([
    ["the header", (token: string) => ({ headers: { "x-postback-token": token }, query: "" })],
    ["the token parameter", (token: string) => ({ headers: {}, query: `?token=${encodeURIComponent(token)}` })],
  ])("takes the token on the JSON POST route too, in %s", async (_, where) => {
    const network = await tokenNetwork();
    const body = makePostback();
    const { headers, query } = where(tokenOf(network));
    const response = await exports.default.fetch(
      new Request(`${BASE}/v1/postbacks/${network.id}${query}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      }),
    );
    expect((await expectStatus<IngestAnswer>(response, 200)).status).toBe("accepted");
    const row = await storedConversion(network.id, String(body.transaction_id));
    expect(row).toMatchObject({ amount: "29.99", currency: "USD", campaign_id: "camp-1" });
  });

  it.each([
    ["a wrong token parameter", { token: "pbt_wrong" }, {}, "query.token"],
    ["a wrong x-postback-token header", {}, { "x-postback-token": "pbt_wrong" }, "header.x-postback-token"],
    ["no token at all", {}, {}, "query.token"],
    ["an empty token parameter", { token: "" }, {}, "query.token"],
  ])("answers 401 to %s, naming %s, and stores nothing", async (_, extra, headers, location) => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await getPostback(network.id, { txid, payout: "1.00", status: "1", ...extra }, headers);
    const text = await response.clone().text();
    const problem = await expectProblem(response, 401, "unauthorized");
    expectLocations(problem, [location]);
    expect(text).not.toContain(tokenOf(network));
    await expectNotStored(network.id, [txid], sendWithToken(network));
  });

  it("does not accept another network's token", async () => {
    const network = await tokenNetwork();
    const other = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await getPostback(network.id, { txid, payout: "1.00", status: "1", token: tokenOf(other) });
    expectLocations(await expectProblem(response, 401, "unauthorized"), ["query.token"]);
  });

  it("answers 422 naming the parameters the sender used when their values are invalid", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await trackerGet(network, { txid, payout: "twelve", status: "7" });
    const problem = await expectProblem(response, 422, "validation_failed");
    expectLocations(problem, ["query.payout", "query.status"]);
    expect(problem.detail).toContain("query.payout");
    await expectNotStored(network.id, [txid], sendWithToken(network));
  });

  it("names a form field as body.<name> and a query parameter as query.<name> on a form postback", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await exports.default.fetch(
      new Request(`${BASE}/v1/postbacks/${network.id}?status=7&token=${encodeURIComponent(tokenOf(network))}`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ txid, payout: "-3" }).toString(),
      }),
    );
    expectLocations(await expectProblem(response, 422, "validation_failed"), ["body.payout", "query.status"]);
    await expectNotStored(network.id, [txid], sendWithToken(network));
  });
});

describe("form-encoded POST postbacks", () => {
  it("maps the form fields like a GET's parameters", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await formPostback(network.id, {
      txid,
      payout: "7.25",
      status: "1",
      sub1: "form value & more",
      token: tokenOf(network),
    });
    expect((await expectStatus<IngestAnswer>(response, 200)).status).toBe("accepted");
    const row = await storedConversion(network.id, txid);
    expect(row).toMatchObject({ amount: "7.25", currency: "USD", status: "approved" });
    expect(JSON.parse(String(row.meta))).toEqual({ sub1: "form value & more" });
  });

  it("reads parameters from the query string and the body together", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    const response = await formPostback(
      network.id,
      { payout: "8.00", status: "1" },
      { query: { txid, token: tokenOf(network) } },
    );
    await expectStatus(response, 200);
    expect(await storedConversion(network.id, txid)).toMatchObject({ amount: "8.00" });
  });

  it("refuses a POST that is neither JSON nor form-encoded (415)", async () => {
    const network = await tokenNetwork();
    const response = await exports.default.fetch(
      new Request(postbackUrl(network.id, { token: tokenOf(network) }), {
        method: "POST",
        headers: { "content-type": "text/plain" },
        body: `txid=${uniqueId("tx")}&payout=1.00`,
      }),
    );
    expectLocations(await expectProblem(response, 415, "unsupported_media_type"), ["header.content-type"]);
  });
});

describe("signed query strings", () => {
  const signedQueryNetwork = () =>
    createInboundNetwork({ auth: { methods: ["signed_query"], ip_allowlist: [] }, mapping: TRACKER_MAPPING });
  const params = (txid: string) => ({ txid, payout: "12.50", status: "1", sub1: "a b+c/é&=?" });
  const sendSigned = (network: InboundNetwork) => async (txid: string) =>
    getPostback(network.id, await signedQuery(network.secret, params(txid)));

  it("accepts a GET signed with the network's secret, whatever its values need encoding", async () => {
    const network = await signedQueryNetwork();
    const txid = uniqueId("tx");
    const response = await getPostback(network.id, await signedQuery(network.secret, params(txid)));
    expect((await expectStatus<IngestAnswer>(response, 200)).status).toBe("accepted");
    const row = await storedConversion(network.id, txid);
    expect(row).toMatchObject({ amount: "12.50", currency: "USD", status: "approved" });
    // The authentication parameters are never data.
    expect(JSON.parse(String(row.meta))).toEqual({ sub1: "a b+c/é&=?" });
  });

  it("accepts a signed form-encoded POST whose parameters are split between the URL and the body", async () => {
    const network = await signedQueryNetwork();
    const txid = uniqueId("tx");
    const signed = await signedQuery(network.secret, [...Object.entries(params(txid)), ["source", "cake"]]);
    const inQuery = signed.filter(([name]) => name === "source" || name === "pb_sig");
    const inBody = signed.filter(([name]) => name !== "source" && name !== "pb_sig");
    await expectStatus(await formPostback(network.id, inBody, { query: inQuery }), 200);
    await storedConversion(network.id, txid);
  });

  it("accepts a signature by a rotated-out secret during its grace period", async () => {
    const network = await signedQueryNetwork();
    const rotated = await expectStatus<{ secret: string }>(
      await admin(`/v1/networks/${network.id}/secrets`, { method: "POST", body: "{}" }),
      201,
    );
    await expectStatus(await getPostback(network.id, await signedQuery(network.secret, params(uniqueId("tx")))), 200);
    await expectStatus(await getPostback(network.id, await signedQuery(rotated.secret, params(uniqueId("tx")))), 200);
  });

  it.each([
    [
      "a parameter changed after signing",
      async (secret: string, txid: string) => replaceParam(await signedQuery(secret, params(txid)), "payout", "999.00"),
      "query.pb_sig",
    ],
    [
      "a parameter added after signing",
      async (secret: string, txid: string) =>
        [...(await signedQuery(secret, params(txid))), ["sub2", "extra"]] as const,
      "query.pb_sig",
    ],
    [
      "a signed parameter removed",
      async (secret: string, txid: string) => withoutParam(await signedQuery(secret, params(txid)), "sub1"),
      "query.pb_sig",
    ],
    [
      "no pb_sig",
      async (secret: string, txid: string) => withoutParam(await signedQuery(secret, params(txid)), "pb_sig"),
      "query.pb_sig",
    ],
    [
      "a pb_ts ten minutes old",
      async (secret: string, txid: string) => signedQuery(secret, params(txid), { timestamp: nowSeconds() - 600 }),
      "query.pb_ts",
    ],
    [
      "a pb_ts ten minutes ahead",
      async (secret: string, txid: string) => signedQuery(secret, params(txid), { timestamp: nowSeconds() + 600 }),
      "query.pb_ts",
    ],
    [
      "no pb_ts",
      async (secret: string, txid: string) => withoutParam(await signedQuery(secret, params(txid)), "pb_ts"),
      "query.pb_ts",
    ],
    [
      "no pb_id",
      async (secret: string, txid: string) => withoutParam(await signedQuery(secret, params(txid)), "pb_id"),
      "query.pb_id",
    ],
    [
      "a signature by another secret",
      async (_: string, txid: string) =>
        signedQuery("whsec_SNpKkKXDngGyGWvDQlBofzPd5bMWxCl0JwlgwDUgrFE=", params(txid)),
      "query.pb_sig",
    ],
  ])("answers 401 to %s, naming %s, and stores nothing", async (_, build, location) => {
    const network = await signedQueryNetwork();
    const txid = uniqueId("tx");
    const response = await getPostback(network.id, await build(network.secret, txid));
    const text = await response.clone().text();
    const problem = await expectProblem(response, 401, "unauthorized");
    expectLocations(problem, [location]);
    expect(text).not.toContain(network.secret.slice("whsec_".length));
    await expectNotStored(network.id, [txid], sendSigned(network));
  });
});

describe("a signed query authenticates only what it signs", () => {
  const signedQueryNetwork = () =>
    createInboundNetwork({ auth: { methods: ["signed_query"], ip_allowlist: [] }, mapping: TRACKER_MAPPING });
  const params = (txid: string) => ({ txid, payout: "12.50", status: "1" });

  function postJson(networkId: string, pairs: Params, body: string, suffix = "") {
    return exports.default.fetch(
      new Request(postbackUrl(networkId, pairs, suffix), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      }),
    );
  }

  it("refuses a captured signed URL reused with an unsigned JSON body (a reversal of a real conversion)", async () => {
    const network = await signedQueryNetwork();
    const txid = uniqueId("tx");
    const signed = await signedQuery(network.secret, params(txid));
    await expectStatus(await getPostback(network.id, signed), 200);
    await storedConversion(network.id, txid);

    const forged = JSON.stringify({ transaction_id: txid, status: "reversed" });
    const problem = await expectProblem(await postJson(network.id, signed, forged), 401, "unauthorized");
    expect(problem.errors).toEqual([
      { location: "query.pb_body_sha256", message: expect.stringContaining("does not cover a JSON body") },
    ]);
    const batch = JSON.stringify({ events: [{ transaction_id: txid, status: "reversed" }] });
    const batchProblem = await expectProblem(await postJson(network.id, signed, batch, "/batch"), 401, "unauthorized");
    expectLocations(batchProblem, ["query.pb_body_sha256"]);
    await expectNotStored(network.id, [], async (control) =>
      getPostback(network.id, await signedQuery(network.secret, params(control))),
    );
    expect(await conversionInD1(network.id, txid)).toMatchObject({ status: "approved" });
  });

  it("accepts a JSON body whose SHA-256 is among the signed parameters, on the single and the batch route", async () => {
    const network = await signedQueryNetwork();
    const single = makePostback();
    const raw = JSON.stringify(single);
    const signed = await signedQuery(network.secret, [["pb_body_sha256", await sha256Hex(raw)]]);
    expect((await expectStatus<IngestAnswer>(await postJson(network.id, signed, raw), 200)).status).toBe("accepted");
    await storedConversion(network.id, String(single.transaction_id));

    const event = makePostback();
    const batch = JSON.stringify({ events: [event] });
    const signedBatch = await signedQuery(network.secret, [["pb_body_sha256", await sha256Hex(batch)]]);
    const results = await expectStatus<{ results: { status: number }[] }>(
      await postJson(network.id, signedBatch, batch, "/batch"),
      200,
    );
    expect(results.results.map((item) => item.status)).toEqual([200]);
    await storedConversion(network.id, String(event.transaction_id));
  });

  it.each([
    ["another body than the one whose digest was signed", (raw: string) => raw.replace("29.99", "2999.00")],
    ["the signed body with one byte more", (raw: string) => `${raw} `],
  ])("refuses %s, naming pb_body_sha256", async (_, alter) => {
    const network = await signedQueryNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const signed = await signedQuery(network.secret, [["pb_body_sha256", await sha256Hex(raw)]]);
    const problem = await expectProblem(await postJson(network.id, signed, alter(raw)), 401, "unauthorized");
    expect(problem.errors).toEqual([
      { location: "query.pb_body_sha256", message: expect.stringContaining("is not the SHA-256 of the body") },
    ]);
    expect(await conversionInD1(network.id, String(body.transaction_id))).toBeNull();
  });

  it("refuses a digest added to a signed URL after signing (the digest is a signed parameter)", async () => {
    const network = await signedQueryNetwork();
    const raw = JSON.stringify(makePostback());
    const signed = [...(await signedQuery(network.secret, [])), ["pb_body_sha256", await sha256Hex(raw)]] as const;
    const problem = await expectProblem(await postJson(network.id, signed, raw), 401, "unauthorized");
    expectLocations(problem, ["query.pb_sig"]);
  });

  it("keeps pb_body_sha256 out of a GET's data", async () => {
    const network = await signedQueryNetwork();
    const txid = uniqueId("tx");
    const signed = await signedQuery(network.secret, [
      ...Object.entries(params(txid)),
      ["pb_body_sha256", await sha256Hex("")],
    ]);
    await expectStatus(await getPostback(network.id, signed), 200);
    expect((await storedConversion(network.id, txid)).meta).toBeNull();
  });
});

describe("Standard Webhooks on a GET, and credentials of a method the network does not accept", () => {
  it("refuses Standard Webhooks headers on a GET, whose parameters they would not authenticate", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["standard_webhooks", "token"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const txid = uniqueId("tx");
    const headers = Object.fromEntries(await signedHeaders(network.secret, new Uint8Array(0), { contentType: null }));
    const problem = await expectProblem(
      await getPostback(network.id, { txid, payout: "4.00", status: "1" }, headers),
      401,
      "unauthorized",
    );
    expectLocations(problem, ["header.webhook-signature"]);
    expect(problem.detail).toMatch(/signed query/);
  });

  it("answers 401 listing the accepted methods to Standard Webhooks headers sent to a token-only network", async () => {
    const network = await tokenNetwork();
    const headers = Object.fromEntries(await signedHeaders(network.secret, new Uint8Array(0), { contentType: null }));
    const response = await getPostback(network.id, { txid: uniqueId("tx"), payout: "1.00", status: "1" }, headers);
    const challenge = response.headers.get("www-authenticate");
    const problem = await expectProblem(response, 401, "unauthorized");
    expectLocations(problem, ["header.webhook-signature"]);
    expect(problem.detail).toMatch(/does not use/);
    expect(problem.detail).toContain("x-postback-token");
    // The challenge names what the network accepts, not what was sent.
    expect(challenge).toBe('Postback-Token realm="postback-hub", header="x-postback-token", param="token"');
  });

  it("answers 401 listing the accepted methods to a token sent to a signed-query and Standard Webhooks network", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["signed_query", "standard_webhooks"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const response = await getPostback(network.id, { txid: uniqueId("tx"), payout: "1.00", token: "pbt_x" });
    const challenge = response.headers.get("www-authenticate");
    const problem = await expectProblem(response, 401, "unauthorized");
    expectLocations(problem, ["query.token"]);
    expect(challenge).toBe('Signed-Query realm="postback-hub", Standard-Webhooks realm="postback-hub"');
    expect(problem.detail).toContain("pb_sig");
    expect(problem.detail).toContain("webhook-signature");
  });

  // A Standard Webhooks signature covers the raw body only. On a GET (empty body) and on a form POST
  // the postback travels (also) in the query string, which nothing signs: whoever sees one signed
  // request can replay its headers with other parameters for five minutes.
  it("does not let Standard Webhooks headers signed for one GET authenticate other parameters", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["standard_webhooks"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const headers = Object.fromEntries(await signedHeaders(network.secret, new Uint8Array(0), { contentType: null }));
    const forgedTxid = uniqueId("forged");
    const forged = await getPostback(network.id, { txid: forgedTxid, payout: "5000.00" }, headers);
    await expectProblem(forged, 401, "unauthorized");
  });

  it("does not let an unsigned query parameter override a field of a signed form body", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["standard_webhooks"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    const txid = uniqueId("tx");
    const body = new URLSearchParams({ txid, payout: "1.00", status: "1" }).toString();
    const headers = await signedHeaders(network.secret, utf8(body), {
      contentType: "application/x-www-form-urlencoded",
    });
    const response = await exports.default.fetch(
      new Request(postbackUrl(network.id, { payout: "5000.00" }), { method: "POST", headers, body }),
    );
    // The query string is not signed, so it is not read: the signed body's payout stands.
    await expectStatus(response, 200);
    const row = await storedConversion(network.id, txid);
    expect(row.amount, "the signed payout was 1.00").toBe("1.00");
  });
});

describe("IP allowlist on CF-Connecting-IP", () => {
  const allowlisted = () =>
    tokenNetwork({ auth: { methods: ["token"], ip_allowlist: ["203.0.113.0/24", "2001:db8::/32"] } });
  const send = (network: InboundNetwork, headers: Record<string, string>) =>
    trackerGet(network, { txid: uniqueId("tx"), payout: "1.00", status: "1" }, headers);

  it.each([
    "203.0.113.7",
    "203.0.113.0",
    "203.0.113.255",
    "2001:db8::1",
    "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
    "2001:DB8:0:0:0:0:0:42",
    "::ffff:203.0.113.7",
  ])("lets %s in", async (ip) => {
    const network = await allowlisted();
    await expectStatus(await send(network, { "cf-connecting-ip": ip }), 200);
  });

  it.each([
    "198.51.100.1",
    "203.0.112.255",
    "203.0.114.0",
    "2001:db9::",
    "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
    "::ffff:198.51.100.1",
    "not an address",
  ])("keeps %s out with 403 ip_not_allowed naming header.cf-connecting-ip", async (ip) => {
    const network = await allowlisted();
    const txid = uniqueId("tx");
    const response = await trackerGet(network, { txid, payout: "1.00", status: "1" }, { "cf-connecting-ip": ip });
    expectLocations(await expectProblem(response, 403, "ip_not_allowed"), ["header.cf-connecting-ip"]);
    await expectNotStored(network.id, [txid], (control) =>
      trackerGet(network, { txid: control, payout: "1.00" }, { "cf-connecting-ip": "203.0.113.7" }),
    );
  });

  it("never trusts X-Forwarded-For", async () => {
    const network = await allowlisted();
    const alone = await send(network, { "x-forwarded-for": "203.0.113.7" });
    expectLocations(await expectProblem(alone, 403, "ip_not_allowed"), ["header.cf-connecting-ip"]);
    const spoofing = await send(network, { "x-forwarded-for": "203.0.113.7", "cf-connecting-ip": "198.51.100.1" });
    await expectProblem(spoofing, 403, "ip_not_allowed");
  });

  it("still checks the credentials of an allowed address", async () => {
    const network = await allowlisted();
    const response = await getPostback(
      network.id,
      { txid: uniqueId("tx"), payout: "1.00", token: "pbt_wrong" },
      { "cf-connecting-ip": "203.0.113.7" },
    );
    expectLocations(await expectProblem(response, 401, "unauthorized"), ["query.token"]);
  });

  const invalidAllowlists = [
    ["not an address", ["203.0.113.0/24", "example.com"], "body.auth.ip_allowlist[1]"],
    ["host bits after the prefix", ["203.0.113.7/24"], "body.auth.ip_allowlist[0]"],
    ["a prefix too long", ["2001:db8::/32", "10.0.0.0/33"], "body.auth.ip_allowlist[1]"],
  ] as const;

  it.each(invalidAllowlists)(
    "refuses to create a network whose allowlist has %s (422 naming the entry)",
    async (_, ip_allowlist, location) => {
      const id = uniqueId("net");
      const response = await admin("/v1/networks", {
        method: "POST",
        body: JSON.stringify({ id, name: "Bad allowlist", auth: { methods: ["token"], ip_allowlist } }),
      });
      const problem = await expectProblem(response, 422, "validation_failed");
      expect(locationsOf(problem)).toEqual([location]);
      await expectProblem(await admin(`/v1/networks/${id}`), 404, "not_found");
    },
  );

  it.each(invalidAllowlists)(
    "refuses a PATCH whose allowlist has %s (422 naming the entry) and keeps the old one",
    async (_, ip_allowlist, location) => {
      const existing = await allowlisted();
      const patched = await patchNetwork(existing.id, { auth: { methods: ["token"], ip_allowlist } });
      expect(locationsOf(await expectProblem(patched, 422, "validation_failed"))).toEqual([location]);
      expect((await networkDetail(existing.id)).auth.ip_allowlist).toEqual(["203.0.113.0/24", "2001:db8::/32"]);
    },
  );
});

describe("token rotation", () => {
  interface RotatedToken {
    token_id: string;
    token: string;
    previous_tokens_expire_at: string;
  }

  const rotateToken = async (network: InboundNetwork, body?: Record<string, unknown>) =>
    expectStatus<RotatedToken>(
      await admin(`/v1/networks/${network.id}/tokens`, {
        method: "POST",
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
      201,
    );
  const sendWith = (network: InboundNetwork, token: string, txid = uniqueId("tx")) =>
    getPostback(network.id, { txid, payout: "1.00", status: "1", token });

  it("issues a new token and keeps the old one working for the grace period", async () => {
    const network = await tokenNetwork();
    const before = Date.now();
    const rotated = await rotateToken(network);
    expect(rotated.token).toMatch(/^pbt_/);
    expect(rotated.token).not.toBe(network.token);
    expect(rotated.token_id).toMatch(/^tok_/);
    const graceMs = Number(env.SECRET_GRACE_PERIOD_SECONDS) * 1000;
    expect(Date.parse(rotated.previous_tokens_expire_at)).toBeGreaterThanOrEqual(before + graceMs - 1000);

    const oldTx = uniqueId("tx");
    const newTx = uniqueId("tx");
    await expectStatus(await sendWith(network, tokenOf(network), oldTx), 200);
    await expectStatus(await sendWith(network, rotated.token, newTx), 200);
    await storedConversion(network.id, oldTx);
    await storedConversion(network.id, newTx);
  });

  it("stops the old token at once with grace_period_seconds 0", async () => {
    const network = await tokenNetwork();
    const rotated = await rotateToken(network, { grace_period_seconds: 0 });
    const refused = uniqueId("tx");
    expectLocations(await expectProblem(await sendWith(network, tokenOf(network), refused), 401, "unauthorized"), [
      "query.token",
    ]);
    await expectStatus(await sendWith(network, rotated.token), 200);
    await expectNotStored(network.id, [refused], (txid) => sendWith(network, rotated.token, txid));
  });

  it("leaves the signing secret alone (a token rotation rotates tokens only)", async () => {
    const network = await createInboundNetwork({
      auth: { methods: ["standard_webhooks", "token"], ip_allowlist: [] },
      mapping: TRACKER_MAPPING,
    });
    await rotateToken(network, { grace_period_seconds: 0 });
    await expectStatus(await postback(network, makePostback()), 200);
    const detail = await networkDetail(network.id);
    expect(detail.secrets.filter((s) => s.kind === "signing").map((s) => s.expires_at)).toEqual([null]);
  });

  it("records when each credential was last used: set on the one used, null on the others", async () => {
    const network = await tokenNetwork();
    const before = await networkDetail(network.id);
    const oldToken = before.secrets.find((s) => s.kind === "token");
    const signing = before.secrets.find((s) => s.kind === "signing");
    if (!oldToken || !signing) throw new Error(`expected a token and a signing secret: ${JSON.stringify(before)}`);
    expect(oldToken.last_used_at).toBeNull();
    const rotated = await rotateToken(network);

    await expectStatus(await sendWith(network, tokenOf(network)), 200);
    const used = await eventually(async () => {
      const detail = await networkDetail(network.id);
      return detail.secrets.find((s) => s.id === oldToken.id)?.last_used_at ? detail : null;
    });
    const byId = new Map(used.secrets.map((s) => [s.id, s]));
    expect(Date.parse(String(byId.get(oldToken.id)?.last_used_at))).not.toBeNaN();
    expect(byId.get(rotated.token_id)?.last_used_at).toBeNull();
    expect(byId.get(signing.id)?.last_used_at).toBeNull();

    await expectStatus(await sendWith(network, rotated.token), 200);
    await eventually(async () =>
      (await networkDetail(network.id)).secrets.find((s) => s.id === rotated.token_id)?.last_used_at ? true : null,
    );
  });

  it("records the use of a signing secret too", async () => {
    const network = await createInboundNetwork({});
    const [signing] = (await networkDetail(network.id)).secrets;
    await expectStatus(await postback(network, makePostback()), 200);
    await eventually(async () =>
      (await networkDetail(network.id)).secrets.find((s) => s.id === signing?.id)?.last_used_at ? true : null,
    );
  });
});

describe("a fixed answer for senders that expect one", () => {
  it("answers OK as text/plain with the verdict and event id in headers, for a duplicate too", async () => {
    const network = await tokenNetwork({ answer: { content_type: "text/plain", body: "OK" } });
    const params = { txid: uniqueId("tx"), payout: "2.00", status: "1" };
    const first = await trackerGet(network, params);
    expect(first.status).toBe(200);
    expect(await first.text()).toBe("OK");
    expect(first.headers.get("content-type")).toMatch(/^text\/plain(;|$)/);
    expect(first.headers.get("x-postback-status")).toBe("accepted");
    const eventId = first.headers.get("x-event-id");
    expect(eventId).toMatch(/^evt_/);
    expect(first.headers.get("idempotent-replayed")).toBeNull();

    const again = await trackerGet(network, params);
    expect(again.status).toBe(200);
    expect(await again.text()).toBe("OK");
    expect(again.headers.get("x-postback-status")).toBe("duplicate");
    expect(again.headers.get("x-event-id")).toBe(eventId);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
  });

  it("still answers a rejection as problem+json", async () => {
    const network = await tokenNetwork({ answer: { content_type: "text/plain", body: "OK" } });
    const response = await getPostback(network.id, { txid: uniqueId("tx"), token: "pbt_wrong" });
    await expectProblem(response, 401, "unauthorized");
  });
});

describe("test mode", () => {
  async function expectFlags(networkId: string, txid: string, flag: 0 | 1) {
    await storedConversion(networkId, txid);
    const flags = await eventually(async () => {
      const found = await testFlags(networkId, txid);
      return found.events.length > 0 ? found : null;
    });
    expect(flags).toEqual({ conversion: flag, events: [flag] });
  }

  it.each([
    ["the x-postback-test: 1 header", {}, { "x-postback-test": "1" }],
    ["the x-postback-test: true header", {}, { "x-postback-test": "true" }],
    ["pb_test=1 on a GET", { pb_test: "1" }, {}],
  ])("flags a postback marked by %s as test in conversions and conversion_events", async (_, extra, headers) => {
    const network = await tokenNetwork({ mapping: { ...TRACKER_MAPPING, meta_params: "*" } });
    const txid = uniqueId("tx");
    await expectStatus(
      await trackerGet(network, { txid, payout: "1.00", status: "1", sub1: "s", ...extra }, headers),
      200,
    );
    await expectFlags(network.id, txid, 1);
    // pb_test and token are never data, even when every other parameter is kept in meta.
    expect(JSON.parse(String((await conversionInD1(network.id, txid))?.meta))).toEqual({ sub1: "s" });
  });

  it("flags every postback of a network in test mode (set by PATCH), and none once it is off", async () => {
    const network = await tokenNetwork();
    const patched = await expectStatus<{ test_mode: boolean }>(
      await patchNetwork(network.id, { test_mode: true }),
      200,
    );
    expect(patched.test_mode).toBe(true);
    const testTx = uniqueId("tx");
    await expectStatus(await trackerGet(network, { txid: testTx, payout: "1.00", status: "1" }), 200);
    await expectFlags(network.id, testTx, 1);

    await expectStatus(await patchNetwork(network.id, { test_mode: false }), 200);
    const liveTx = uniqueId("tx");
    await expectStatus(await trackerGet(network, { txid: liveTx, payout: "1.00", status: "1" }), 200);
    await expectFlags(network.id, liveTx, 0);
  });

  it("leaves a postback live without a test marker, or with x-postback-test: 0", async () => {
    const network = await tokenNetwork();
    const txid = uniqueId("tx");
    await expectStatus(
      await trackerGet(network, { txid, payout: "1.00", status: "1" }, { "x-postback-test": "0" }),
      200,
    );
    await expectFlags(network.id, txid, 0);
  });

  it("delivers a test event only to partners that take test traffic, and a live one to both", async () => {
    const network = await tokenNetwork();
    const prefix = `/ok/${uniqueId("test-mode")}`;
    const only = { networks: [network.id] };
    const takesTests = await createPartner({
      url_template: `${PARTNER}${prefix}/tests?tx={transaction_id}&test={test}`,
      filters: only,
      receives_test_traffic: true,
    });
    const liveOnly = await createPartner({
      url_template: `${PARTNER}${prefix}/live?tx={transaction_id}`,
      filters: only,
      receives_test_traffic: false,
    });

    const testTx = uniqueId("tx");
    await expectStatus(await trackerGet(network, { txid: testTx, payout: "1.00", status: "1", pb_test: "1" }), 200);
    const [testDelivery] = await eventually(async () => {
      const log = await partnerLog(`${prefix}/tests`);
      return log.length >= 1 ? log : null;
    }, 20_000);
    expect(new URL(String(testDelivery?.url)).searchParams.get("tx")).toBe(testTx);
    // The consumer routed the event to every partner at once: the live-only one got no delivery.
    expect(await deliveriesOf(liveOnly.id)).toEqual([]);

    const liveTx = uniqueId("tx");
    await expectStatus(await trackerGet(network, { txid: liveTx, payout: "1.00", status: "1" }), 200);
    const toLive = await eventually(async () => {
      const log = await partnerLog(`${prefix}/live`);
      return log.length >= 1 ? log : null;
    }, 20_000);
    await eventually(async () => ((await partnerLog(`${prefix}/tests`)).length >= 2 ? true : null), 20_000);
    expect(toLive.map((r) => new URL(r.url).searchParams.get("tx"))).toEqual([liveTx]);
    expect((await partnerLog(`${prefix}/tests`)).map((r) => new URL(r.url).searchParams.get("tx"))).toEqual([
      testTx,
      liveTx,
    ]);
    expect(await deliveriesOf(liveOnly.id)).toHaveLength(1);
    expect(await deliveriesOf(takesTests.id)).toHaveLength(2);
  });
});

describe("PATCH /v1/networks/{network_id}", () => {
  it("answers a new token, once, when the token method is added to a network without one", async () => {
    const network = await createInboundNetwork({ mapping: TRACKER_MAPPING });
    const added = await expectStatus<{ token?: string; auth: { methods: string[] } }>(
      await patchNetwork(network.id, { auth: { methods: ["standard_webhooks", "token"], ip_allowlist: [] } }),
      200,
    );
    expect(added.auth.methods).toEqual(["standard_webhooks", "token"]);
    expect(added.token).toMatch(/^pbt_/);
    const token = String(added.token);

    const txid = uniqueId("tx");
    await expectStatus(await getPostback(network.id, { txid, payout: "1.00", status: "1", token }), 200);
    await storedConversion(network.id, txid);
    // The Standard Webhooks secret still works.
    await expectStatus(await postback(network, makePostback()), 200);

    const again = await expectStatus<{ token?: string }>(
      await patchNetwork(network.id, { auth: { methods: ["token", "standard_webhooks"], ip_allowlist: [] } }),
      200,
    );
    expect(again.token).toBeUndefined();
    const detail = await admin(`/v1/networks/${network.id}`);
    expect(await detail.text()).not.toContain(token);
  });

  it("takes away a method: a token stops working once the network no longer accepts tokens", async () => {
    const network = await tokenNetwork();
    await expectStatus(await patchNetwork(network.id, { auth: { methods: ["signed_query"], ip_allowlist: [] } }), 200);
    const response = await trackerGet(network, { txid: uniqueId("tx"), payout: "1.00", status: "1" });
    expectLocations(await expectProblem(response, 401, "unauthorized"), ["query.token"]);
  });

  it("changes the mapping: a GET is read with the new parameter names", async () => {
    const network = await tokenNetwork();
    await expectStatus(
      await patchNetwork(network.id, {
        mapping: { preset: "keitaro", default_currency: "EUR", status_values: { Sale: "approved" } },
      }),
      200,
    );
    const tid = uniqueId("tx");
    await expectStatus(await trackerGet(network, { tid, subid: "clk-9", payout: "3.30", status: "sale" }), 200);
    expect(await storedConversion(network.id, tid)).toMatchObject({
      amount: "3.30",
      currency: "EUR",
      status: "approved",
      click_id: "clk-9",
    });
  });

  it("answers 422 with paths under body.mapping for an invalid mapping, and keeps the old one", async () => {
    const network = await tokenNetwork();
    const response = await patchNetwork(network.id, {
      mapping: {
        preset: "nope",
        fields: { transaction_id: ["token"], amount: ["bad name!"], colour: ["c"] },
        status_values: { "1": "paid-ish" },
        default_currency: "usd",
        meta_params: ["pb_sig"],
        extra: true,
      },
    });
    const problem = await expectProblem(response, 422, "validation_failed");
    expectLocations(problem, [
      "body.mapping.preset",
      "body.mapping.fields.transaction_id[0]",
      "body.mapping.fields.amount[0]",
      "body.mapping.fields.colour",
      "body.mapping.status_values.1",
      "body.mapping.default_currency",
      "body.mapping.extra",
    ]);
    for (const location of problem.errors.map((e) => e.location)) expect(location).toMatch(/^body\.mapping\./);
    expect((await networkDetail(network.id)).mapping).toEqual(TRACKER_MAPPING);
  });

  it("answers 422 for an invalid auth or answer setting", async () => {
    const network = await tokenNetwork();
    const response = await patchNetwork(network.id, {
      auth: { methods: [], ip_allowlist: [] },
      answer: { content_type: "text/csv", body: "OK" },
    });
    expectLocations(await expectProblem(response, 422, "validation_failed"), [
      "body.auth.methods",
      "body.answer.content_type",
    ]);
  });
});

describe("rate limiting per network", () => {
  // The local limiter counts in windows aligned to the clock; a run that straddles a window edge
  // proves nothing and is tried again with fresh networks.
  const WINDOW_MS = 60_000;
  const LIMIT = 3;

  async function limitedFetch(request: Request): Promise<Response> {
    const ctx = createExecutionContext();
    const response = await worker.fetch(request, { ...env, INGEST_RATE_LIMITER: env.TEST_RATE_LIMITER }, ctx);
    await waitOnExecutionContext(ctx);
    return response;
  }

  const trackerRequest = (network: InboundNetwork, txid: string) =>
    new Request(postbackUrl(network.id, { txid, payout: "1.00", status: "1", token: tokenOf(network) }));

  it(`answers 429 rate_limited with Retry-After once a network has sent ${LIMIT} postbacks, and only to that network`, async () => {
    for (let attempt = 1; ; attempt++) {
      const network = await tokenNetwork();
      const other = await tokenNetwork();
      const startedAt = Date.now();
      const accepted: Response[] = [];
      const acceptedTxids: string[] = [];
      for (let i = 0; i < LIMIT; i++) {
        const txid = uniqueId("tx");
        acceptedTxids.push(txid);
        accepted.push(await limitedFetch(trackerRequest(network, txid)));
      }
      const limitedTx = uniqueId("tx");
      const limited = await limitedFetch(trackerRequest(network, limitedTx));
      const otherResponse = await limitedFetch(trackerRequest(other, uniqueId("tx")));
      const endedAt = Date.now();
      const sameWindow = Math.floor((startedAt - 1000) / WINDOW_MS) === Math.floor((endedAt + 1000) / WINDOW_MS);
      if (!sameWindow && attempt < 3) continue;

      for (const response of accepted) await expectStatus(response, 200);
      const retryAfter = limited.headers.get("retry-after");
      expect(await expectProblem(limited, 429, "rate_limited")).toMatchObject({ errors: [] });
      expect(Number(retryAfter)).toBeGreaterThan(0);
      await expectStatus(otherResponse, 200);

      for (const txid of acceptedTxids) await storedConversion(network.id, txid);
      expect(await conversionInD1(network.id, limitedTx)).toBeNull();
      return;
    }
  });

  const batchRequest = (network: InboundNetwork, events: Record<string, unknown>[]) =>
    new Request(postbackUrl(network.id, {}, "/batch"), {
      method: "POST",
      headers: { "content-type": "application/json", "x-postback-token": tokenOf(network) },
      body: JSON.stringify({ events }),
    });

  it(`makes a batch pay per event: ${LIMIT + 1} events are over a limit of ${LIMIT}, ${LIMIT} use it up`, async () => {
    for (let attempt = 1; ; attempt++) {
      const network = await tokenNetwork();
      const startedAt = Date.now();
      const tooMany = Array.from({ length: LIMIT + 1 }, () => makePostback());
      const over = await limitedFetch(batchRequest(network, tooMany));
      const fresh = await tokenNetwork();
      const exact = Array.from({ length: LIMIT }, () => makePostback());
      const fits = await limitedFetch(batchRequest(fresh, exact));
      const afterTx = uniqueId("tx");
      const after = await limitedFetch(trackerRequest(fresh, afterTx));
      const endedAt = Date.now();
      const sameWindow = Math.floor((startedAt - 1000) / WINDOW_MS) === Math.floor((endedAt + 1000) / WINDOW_MS);
      if (!sameWindow && attempt < 3) continue;

      const problem = await expectProblem(over, 429, "rate_limited");
      expect(problem.detail).toContain(`this batch counts as ${LIMIT + 1} postbacks`);
      const items = await expectStatus<{ results: { status: number }[] }>(fits, 200);
      expect(items.results.map((item) => item.status)).toEqual(exact.map(() => 200));
      await expectProblem(after, 429, "rate_limited");
      for (const event of exact) await storedConversion(fresh.id, String(event.transaction_id));
      for (const event of tooMany) expect(await conversionInD1(network.id, String(event.transaction_id))).toBeNull();
      expect(await conversionInD1(fresh.id, afterTx)).toBeNull();
      return;
    }
  });
  // A network's own key is handed to people outside the hub (its portal): its dry runs are that
  // network's traffic and spend its limit; the operator's do not.
  it(`limits explain with a network's own key like its postbacks, but not the operator's`, async () => {
    for (let attempt = 1; ; attempt++) {
      const network = await tokenNetwork();
      const key = await createApiKey({ scope: "network", subject_id: network.id });
      const startedAt = Date.now();
      const explain = (bearer: string) => {
        const request = new Request(
          postbackUrl(
            network.id,
            { txid: uniqueId("tx"), payout: "1.00", status: "1", token: tokenOf(network) },
            "/explain",
          ),
          { headers: { authorization: `Bearer ${bearer}` } },
        );
        return limitedFetch(request);
      };
      const within: Response[] = [];
      for (let i = 0; i < LIMIT; i++) within.push(await explain(key.key));
      const over = await explain(key.key);
      const operator = await explain(env.ADMIN_TOKEN);
      const endedAt = Date.now();
      const sameWindow = Math.floor((startedAt - 1000) / WINDOW_MS) === Math.floor((endedAt + 1000) / WINDOW_MS);
      if (!sameWindow && attempt < 3) continue;

      for (const response of within) await expectStatus(response, 200);
      await expectProblem(over, 429, "rate_limited");
      await expectStatus(operator, 200);
      return;
    }
  });
});

describe("the OpenAPI document", () => {
  it("secures the network settings routes with the admin token but none of the postback routes", async () => {
    const response = await exports.default.fetch(`${BASE}/openapi.json`);
    const document = await expectStatus<{ paths: Record<string, Record<string, { security?: unknown[] }>> }>(
      response,
      200,
    );
    const security = (path: string, method: string) => document.paths[path]?.[method]?.security ?? [];
    expect(security("/v1/networks/{network_id}", "patch")).toEqual([{ apiKey: [] }]);
    expect(security("/v1/networks/{network_id}/tokens", "post")).toEqual([{ apiKey: [] }]);
    // The postback routes take the network's own credentials, each a way on its own (explain takes
    // the admin token as one more way); none needs the admin token.
    const body = [{ webhookSignature: [] }, { postbackToken: [] }, { postbackTokenQuery: [] }, { signedQuery: [] }];
    const query = [{ postbackTokenQuery: [] }, { postbackToken: [] }, { signedQuery: [] }];
    for (const [path, method, ways] of [
      ["/v1/postbacks/{network_id}", "get", query],
      ["/v1/postbacks/{network_id}", "post", body],
      ["/v1/postbacks/{network_id}/batch", "post", body],
      ["/v1/postbacks/{network_id}/explain", "post", [{ apiKey: [] }, ...body]],
    ] as const) {
      expect(document.paths[path]?.[method], `${method} ${path} is documented`).toBeDefined();
      expect(security(path, method), `${method} ${path}`).toEqual(ways);
    }
  });
});
