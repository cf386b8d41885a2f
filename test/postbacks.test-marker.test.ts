/**
 * The test marker changes how a postback is handled (kept apart, delivered only to test partners),
 * so for the signature methods it counts only inside what was signed. A captured signed request
 * replayed with `x-postback-test: 1` or an unsigned `pb_test=1` is refused, and the real postback
 * that follows is still live and new. A token vouches for the whole request, so every marker
 * counts with a token.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { utf8 } from "../src/lib/bytes";
import { BASE, createNetwork, eventually, expectStatus, makePostback, uniqueId } from "./support/helpers";
import {
  createInboundNetwork,
  formPostback,
  getPostback,
  type IngestAnswer,
  postbackUrl,
  signedQuery,
  TOKEN_ONLY,
  TRACKER_MAPPING,
  testFlags,
  tokenOf,
} from "./support/inbound";
import { expectProblem, signedHeaders } from "./support/problems";

/** Sends exactly `headers` and `raw` to `url`: a replay of a captured request, with extras. */
function send(url: string, headers: Headers, raw: string, extra: Record<string, string> = {}) {
  const sent = new Headers(headers);
  for (const [name, value] of Object.entries(extra)) sent.set(name, value);
  return exports.default.fetch(new Request(url, { method: "POST", headers: sent, body: raw }));
}

/** The test flags of a transaction's conversion and events, once D1 has its first event. */
function flagsOnce(networkId: string, transactionId: string) {
  return eventually(async () => {
    const flags = await testFlags(networkId, transactionId);
    return flags.events.length > 0 ? flags : null;
  });
}

describe("the test marker of a Standard Webhooks postback", () => {
  it.each([
    ["the x-postback-test header", "", { "x-postback-test": "1" }, "header.x-postback-test"],
    ["an unsigned pb_test=1 in the query string", "?pb_test=1", {}, "query.pb_test"],
  ])(
    "refuses a captured signed request replayed with %s, and the real one stays live and new",
    async (_, query, extra, location) => {
      const network = await createNetwork();
      const body = makePostback();
      const raw = JSON.stringify(body);
      const captured = await signedHeaders(network.secret, utf8(raw));
      const url = `${BASE}/v1/postbacks/${network.id}`;

      const replay = await expectProblem(await send(`${url}${query}`, captured, raw, extra), 401, "unauthorized");
      expect(replay.errors).toEqual([
        { location, message: expect.stringContaining('put "test": true in the signed JSON body') },
      ]);

      const real = await expectStatus<IngestAnswer>(await send(url, captured, raw), 200);
      expect(real.status).toBe("accepted");
      expect(await flagsOnce(network.id, String(body.transaction_id))).toEqual({ conversion: 0, events: [0] });
    },
  );

  it('takes "test": true inside the signed JSON body', async () => {
    const network = await createNetwork();
    const body = makePostback({ test: true });
    const raw = JSON.stringify(body);
    const answer = await send(
      `${BASE}/v1/postbacks/${network.id}`,
      await signedHeaders(network.secret, utf8(raw)),
      raw,
    );
    expect((await expectStatus<IngestAnswer>(answer, 200)).status).toBe("accepted");
    expect(await flagsOnce(network.id, String(body.transaction_id))).toEqual({ conversion: 1, events: [1] });
  });

  it('refuses a "test" that is not a boolean, naming the field', async () => {
    const network = await createNetwork();
    const raw = JSON.stringify(makePostback({ test: "yes" }));
    const problem = await expectProblem(
      await send(`${BASE}/v1/postbacks/${network.id}`, await signedHeaders(network.secret, utf8(raw)), raw),
      422,
      "validation_failed",
    );
    expect(problem.errors).toEqual([{ location: "body.test", message: "must be true or false" }]);
  });

  it("takes pb_test=1 among the signed fields of a form body", async () => {
    const network = await createInboundNetwork({ mapping: TRACKER_MAPPING });
    const txid = uniqueId("tx");
    const raw = new URLSearchParams({ txid, payout: "2.00", status: "1", pb_test: "1" }).toString();
    const headers = await signedHeaders(network.secret, utf8(raw), {
      contentType: "application/x-www-form-urlencoded",
    });
    await expectStatus(await send(postbackUrl(network.id), headers, raw), 200);
    expect(await flagsOnce(network.id, txid)).toEqual({ conversion: 1, events: [1] });
  });

  it("leaves a signed postback live with x-postback-test: 0", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const headers = await signedHeaders(network.secret, utf8(raw), { headers: { "x-postback-test": "0" } });
    await expectStatus(await send(`${BASE}/v1/postbacks/${network.id}`, headers, raw), 200);
    expect(await flagsOnce(network.id, String(body.transaction_id))).toEqual({ conversion: 0, events: [0] });
  });
});

describe("the test marker of a signed query", () => {
  const network = () =>
    createInboundNetwork({ auth: { methods: ["signed_query"], ip_allowlist: [] }, mapping: TRACKER_MAPPING });

  it("takes pb_test=1 when it is signed", async () => {
    const signer = await network();
    const txid = uniqueId("tx");
    const signed = await signedQuery(signer.secret, { txid, payout: "1.00", status: "1", pb_test: "1" });
    await expectStatus(await getPostback(signer.id, signed), 200);
    expect(await flagsOnce(signer.id, txid)).toEqual({ conversion: 1, events: [1] });
  });

  it("refuses the x-postback-test header on a signed query, and pb_test=1 added after signing", async () => {
    const signer = await network();
    const txid = uniqueId("tx");
    const signed = await signedQuery(signer.secret, { txid, payout: "1.00", status: "1" });
    const header = await expectProblem(
      await getPostback(signer.id, signed, { "x-postback-test": "true" }),
      401,
      "unauthorized",
    );
    expect(header.errors).toEqual([
      { location: "header.x-postback-test", message: expect.stringContaining("pb_test=1 among the signed parameters") },
    ]);
    const added = await expectProblem(await getPostback(signer.id, [...signed, ["pb_test", "1"]]), 401, "unauthorized");
    expect(added.errors.map((error) => error.location)).toEqual(["query.pb_sig"]);
    await expectStatus(await getPostback(signer.id, signed), 200);
    expect(await flagsOnce(signer.id, txid)).toEqual({ conversion: 0, events: [0] });
  });
});

describe("the test marker with a token", () => {
  it.each([
    ["the header", {}, { "x-postback-test": "1" }],
    ["pb_test=1", { pb_test: "1" }, {}],
  ])("counts %s, since the token vouches for the whole request", async (_, params, headers) => {
    const network = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
    const txid = uniqueId("tx");
    const query = { txid, payout: "1.00", status: "1", token: tokenOf(network), ...params };
    await expectStatus(await getPostback(network.id, query, headers), 200);
    expect(await flagsOnce(network.id, txid)).toEqual({ conversion: 1, events: [1] });
  });

  it("counts pb_test=1 in a token network's form body", async () => {
    const network = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
    const txid = uniqueId("tx");
    const fields = { txid, payout: "1.00", status: "1", pb_test: "1", token: tokenOf(network) };
    await expectStatus(await formPostback(network.id, fields), 200);
    expect(await flagsOnce(network.id, txid)).toEqual({ conversion: 1, events: [1] });
  });
});
