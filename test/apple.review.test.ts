/**
 * A security review of Apple's postbacks (docs/apple-postbacks.md), as an attacker would try them:
 * postbacks Apple (here: the tests' trusted key) signed with values the hub's PostbackSchema would
 * refuse, foreign postbacks posted to another network's path, look-alike ad network ids, malformed
 * JWS and DER, and bodies meant to make a 5xx. Each refusal is a 4xx naming Apple's field, and
 * nothing of it is stored.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { derToP1363 } from "../src/ingest/skadnetwork";
import {
  AAK_PATH,
  appleExample,
  b64url,
  json64,
  postApple,
  type Raw,
  SKAN_PATH,
  signedAak,
  signedSkan,
  signedSkan4,
  TEST_KID,
} from "./support/apple";
import { seedOffer } from "./support/attribution";
import {
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  PARTNER,
  type TestNetwork,
  type TestPartner,
  uniqueId,
} from "./support/helpers";

interface Problem {
  code: string;
  detail: string;
  errors: { location: string; message: string }[];
}

let network: TestNetwork;
let alice: TestPartner;
let skanId: string;
let aakId: string;

async function configure(networkId: string, apple: unknown) {
  return admin(`/v1/networks/${networkId}`, { method: "PATCH", body: JSON.stringify({ apple }) });
}

async function conversionCount(networkId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM conversions WHERE network_id = ?")
    .bind(networkId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

beforeAll(async () => {
  network = await createNetwork(uniqueId("review"));
  skanId = `${uniqueId("rv")}.skadnetwork`.toLowerCase();
  aakId = `${uniqueId("rv")}.adattributionkit`.toLowerCase();
  alice = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("alice")}?tx={transaction_id}` });
  await seedOffer(network.id, {
    campaign_id: "ios-review",
    payouts: { default: [{ status: "approved", fixed: { amount: "2", currency: "USD" } }], partners: {} },
  });
  await expectStatus(
    await configure(network.id, {
      ad_network_ids: [skanId, aakId],
      sources: {
        "42": { campaign_id: "ios-review", partner_id: alice.id },
        "39": { campaign_id: "ios-review", partner_id: alice.id },
      },
    }),
    200,
  );
});

const skan = (fields: Raw = {}) => signedSkan4({ "ad-network-id": skanId, "source-identifier": "5239", ...fields });
const aak = (payload: Raw = {}, siblings: Raw = {}, header?: Raw) =>
  signedAak({ "ad-network-identifier": aakId, ...payload }, siblings, header);

describe("signed values the hub's postback schema refuses", () => {
  it("a 4.0 transaction-id that only its window suffix makes too long: 422 naming body.transaction-id", async () => {
    const before = await conversionCount(network.id);
    const problem = await expectStatus<Problem>(
      await postApple(SKAN_PATH, await skan({ "transaction-id": "a".repeat(127) })),
      422,
    );
    expect(problem.errors.map((e) => e.location)).toEqual(["body.transaction-id"]);
    expect(await conversionCount(network.id)).toBe(before);
  });

  it("a 3.0 transaction-id of 200 characters: 422 naming body.transaction-id", async () => {
    const body = await signedSkan({
      version: "3.0",
      "ad-network-id": skanId,
      "campaign-id": 42,
      "app-id": 525463029,
      "transaction-id": "t".repeat(200),
      redownload: false,
      "fidelity-type": 1,
      "did-win": true,
    });
    const problem = await expectStatus<Problem>(await postApple(SKAN_PATH, body), 422);
    expect(problem.errors.map((e) => e.location)).toEqual(["body.transaction-id"]);
  });

  it("control and zero-width characters in a signed transaction-id: 422 naming body.transaction-id", async () => {
    for (const id of [`tx\u0001${crypto.randomUUID()}`, `tx\u200b${crypto.randomUUID()}`]) {
      const problem = await expectStatus<Problem>(
        await postApple(SKAN_PATH, await skan({ "transaction-id": id })),
        422,
      );
      expect(problem.errors.map((e) => e.location)).toEqual(["body.transaction-id"]);
    }
  });

  it("a control character in a signed 4.0 source-domain: 422 naming body.source-domain", async () => {
    const body = await skan({ "source-app-id": undefined, "source-domain": "example.com\u0007" });
    const problem = await expectStatus<Problem>(await postApple(SKAN_PATH, body), 422);
    expect(problem.errors.map((e) => e.location)).toEqual(["body.source-domain"]);
  });

  it("an AdAttributionKit postback-identifier of 128 characters: a 4xx naming it", async () => {
    const before = await conversionCount(network.id);
    const response = await postApple(AAK_PATH, await aak({ "postback-identifier": "P".repeat(128) }));
    expect(response.status).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    const problem = (await response.json()) as Problem;
    expect(JSON.stringify(problem.errors)).toContain("postback-identifier");
    expect(JSON.stringify(problem.errors)).not.toContain("transaction_id");
    expect(await conversionCount(network.id)).toBe(before);
  });

  it("a control character in a signed marketplace-identifier: 422 naming it in the JWS payload", async () => {
    const problem = await expectStatus<Problem>(
      await postApple(AAK_PATH, await aak({ "marketplace-identifier": "com.apple\u0000AppStore" })),
      422,
    );
    expect(problem.errors.map((e) => e.location)).toEqual(["body.jws-string.marketplace-identifier"]);
  });

  it("explain shows such a postback's refusal instead of failing", async () => {
    const response = await admin(`/v1/postbacks/${network.id}/apple/explain`, {
      method: "POST",
      body: JSON.stringify(await skan({ "transaction-id": `tx\u0001${crypto.randomUUID()}` })),
    });
    const explained = await expectStatus<{ verification: { ok: boolean }; validation: Problem & { ok: boolean } }>(
      response,
      200,
    );
    expect(explained.verification.ok).toBe(true);
    expect(explained.validation.ok).toBe(false);
    expect(explained.validation.errors.map((e) => e.location)).toEqual(["body.transaction-id"]);
  });
});

describe("another network's postback on this network's path", () => {
  it("is logged as not authenticated for this network (no body excerpt, no Apple credential)", async () => {
    const victim = await createNetwork(uniqueId("victim"));
    // Apple's own published example, signed by Apple: anyone can post it anywhere.
    const response = await postApple(`/v1/postbacks/${victim.id}/apple`, appleExample("v3.0 winning"));
    const requestId = response.headers.get("x-request-id") ?? response.headers.get("request-id");
    await expectStatus(response, 403);
    const logged = await eventually(async () => {
      const page = await expectStatus<{
        data: {
          request_id: string;
          auth_method: string | null;
          credential_id: string | null;
          excerpt: { body: string | null };
        }[];
      }>(await admin(`/v1/networks/${victim.id}/requests`), 200);
      return page.data.find((entry) => requestId === null || entry.request_id === requestId) ?? null;
    });
    expect(logged).toMatchObject({ auth_method: null, credential_id: null, excerpt: { body: null } });
  });
});

describe("look-alike ad network ids", () => {
  it("a signed id with a Kelvin sign (U+212A) is not the network whose id it lowercases to", async () => {
    const other = await createNetwork(uniqueId("kelvin"));
    const plain = `k${uniqueId("kv")}.skadnetwork`.toLowerCase();
    await expectStatus(await configure(other.id, { ad_network_ids: [plain] }), 200);
    const lookalike = `\u212a${plain.slice(1)}`;
    expect(lookalike.toLowerCase()).toBe(plain);
    const response = await postApple(SKAN_PATH, await skan({ "ad-network-id": lookalike }));
    expect(response.status).toBe(404);
    expect(await conversionCount(other.id)).toBe(0);
  });

  it("a receiver's ad network id with a Kelvin sign is refused, not silently made ASCII", async () => {
    const other = await createNetwork(uniqueId("kelvin"));
    const problem = await expectStatus<Problem>(
      await configure(other.id, { ad_network_ids: [`\u212a${uniqueId("kv")}.skadnetwork`] }),
      422,
    );
    expect(problem.errors.map((e) => e.location)).toEqual(["body.apple.ad_network_ids[0]"]);
  });

  it("an upper-case signed id still reaches its network (Apple's ids compare lowercased)", async () => {
    const response = await postApple(SKAN_PATH, await skan({ "ad-network-id": skanId.toUpperCase() }));
    expect((await expectStatus<{ network_id: string }>(response, 200)).network_id).toBe(network.id);
  });
});

describe("what held up", () => {
  it("no 5xx on malformed bodies, JWS tricks or odd keys; nothing stored", async () => {
    const before = await conversionCount(network.id);
    const good = String((await aak())["jws-string"]);
    const [header = "", payload = "", signature = ""] = good.split(".");
    const bodies: unknown[] = [
      "",
      "null",
      "[]",
      "42",
      '"x"',
      "{}",
      '{"__proto__":{"version":"4.0"}}',
      '{"constructor":{"prototype":{"did-win":true}}}',
      '{"version":"3.0","version":"4.0"}',
      { "jws-string": null },
      { "jws-string": "" },
      { "jws-string": "a.b" },
      { "jws-string": "a.b.c.d" },
      { "jws-string": "...." },
      { "jws-string": `${header}.${payload}.${signature}=` },
      { "jws-string": `${header}.${payload}.${signature.slice(0, -1)}` },
      { "jws-string": `${header}.${payload}.${signature}AA` },
      { "jws-string": `${json64({ alg: "ES256", kid: "__proto__" })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: "constructor" })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: "toString" })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: { a: 1 } })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: TEST_KID, crit: ["b64"] })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: TEST_KID, jwk: {} })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "HS256", kid: TEST_KID })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "es256", kid: TEST_KID })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: ["ES256"], kid: TEST_KID })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: "apple-cas-identifier/0" })}.${payload}.${signature}` },
      { "jws-string": `${json64({ alg: "ES256", kid: "apple-development-identifier/0" })}.${payload}.${signature}` },
      { "jws-string": `${b64url(new Uint8Array([0xff, 0xfe]))}.${payload}.${signature}` },
      { "jws-string": `${header}.${b64url(new Uint8Array([0xc3, 0x28]))}.${signature}` },
      { "jws-string": "x".repeat(9000) },
      { ...appleExample("v3.0 winning"), "attribution-signature": "" },
      { ...appleExample("v3.0 winning"), "attribution-signature": "AAAA" },
      { ...appleExample("v3.0 winning"), "attribution-signature": "MAA=" },
      { ...appleExample("v3.0 winning"), "attribution-signature": "!!!!" },
      { ...appleExample("v3.0 winning"), "attribution-signature": "x".repeat(2000) },
      { ...appleExample("v3.0 winning"), "campaign-id": 2 ** 53 },
      JSON.stringify(appleExample("v3.0 winning")).replace('"campaign-id":42', '"campaign-id":1e400'),
      { ...appleExample("v3.0 winning"), "campaign-id": "42" },
      { ...appleExample("v3.0 winning"), "app-id": -1 },
      { ...appleExample("v3.0 winning"), "transaction-id": "\ud800" },
      { ...appleExample("v3.0 winning"), "transaction-id": "a\u2063b" },
      { ...appleExample("v3.0 winning"), version: 3 },
      { ...appleExample("v3.0 winning"), version: "5.0" },
      { ...appleExample("v3.0 winning"), version: "1.0" },
      { ...appleExample("v4.0 web ad, fine value"), "source-identifier": "５２３９" },
      { ...appleExample("v4.0 web ad, fine value"), "source-identifier": "5239\n" },
      { ...appleExample("v4.0 web ad, fine value"), "postback-sequence-index": 3 },
      { ...appleExample("v4.0 web ad, fine value"), "postback-sequence-index": 0.5 },
      { ...appleExample("v4.0 web ad, fine value"), "source-app-id": 1 },
    ];
    for (const body of bodies) {
      for (const path of [SKAN_PATH, AAK_PATH, `/v1/postbacks/${network.id}/apple`]) {
        const response = await postApple(path, body);
        expect(response.status, `${path} ${JSON.stringify(body).slice(0, 120)}`).toBeGreaterThanOrEqual(400);
        expect(response.status, `${path} ${JSON.stringify(body).slice(0, 120)}`).toBeLessThan(500);
      }
    }
    expect(await conversionCount(network.id)).toBe(before);
  });

  it("a 2.x postback with a did-win: false sibling is still a winner (2.x signs no did-win; only winners got one)", async () => {
    const body = await signedSkan({
      version: "2.2",
      "ad-network-id": skanId,
      "campaign-id": 42,
      "app-id": 525463029,
      "transaction-id": crypto.randomUUID(),
      redownload: false,
      "fidelity-type": 1,
    });
    const answer = await expectStatus<{ transaction_id: string }>(
      await postApple(SKAN_PATH, { ...body, "did-win": false, "source-identifier": "9999" }),
      200,
    );
    const row = await eventually(() => conversionInD1(network.id, answer.transaction_id, false));
    expect(JSON.parse(String(row.meta))).toMatchObject({ did_win: true, source_identifier: "42" });
  });

  it("a losing 3.0 postback is never credited, however its unsigned siblings look", async () => {
    const body = await signedSkan({
      version: "3.0",
      "ad-network-id": skanId,
      "campaign-id": 42,
      "app-id": 525463029,
      "transaction-id": crypto.randomUUID(),
      redownload: false,
      "fidelity-type": 1,
      "did-win": false,
    });
    const answer = await expectStatus<{ transaction_id: string }>(
      await postApple(SKAN_PATH, { ...body, "conversion-value": 63 }),
      200,
    );
    const row = await eventually(() => conversionInD1(network.id, answer.transaction_id, false));
    expect(row).toMatchObject({ partner_id: null, attributed_partner_id: null });
  });

  it("a did-win: false sibling beside an AdAttributionKit JWS does not uncredit it, nor a true one credit a loser", async () => {
    const lost = await expectStatus<{ transaction_id: string }>(
      await postApple(AAK_PATH, await aak({ "did-win": false, "source-identifier": "42" }, { "did-win": true })),
      200,
    );
    const row = await eventually(() => conversionInD1(network.id, lost.transaction_id, false));
    expect(row).toMatchObject({ partner_id: null, attributed_partner_id: null });
  });

  it("a JWS with duplicate kid in its header verifies only against the key of the kid JSON.parse keeps", async () => {
    const input = `${b64url(new TextEncoder().encode(`{"kid":"${TEST_KID}","alg":"ES256","kid":"apple-development-identifier/1"}`))}`;
    const signed = String((await aak())["jws-string"]).split(".");
    const response = await postApple(AAK_PATH, { "jws-string": `${input}.${signed[1]}.${signed[2]}` });
    expect(response.status).toBe(401);
  });
});

describe("derToP1363 edge cases", () => {
  const der = (...bytes: number[]) => new Uint8Array(bytes);
  it("refuses zero-length integers, long-form lengths, truncation and trailing bytes", () => {
    expect(derToP1363(der())).toBeNull();
    expect(derToP1363(der(0x30))).toBeNull();
    expect(derToP1363(der(0x30, 0x00))).toBeNull();
    expect(derToP1363(der(0x30, 0x04, 0x02, 0x00, 0x02, 0x00))).toBeNull();
    expect(derToP1363(der(0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01))).toBeNull();
    expect(derToP1363(der(0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00))).toBeNull();
    expect(derToP1363(der(0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00))).toBeNull();
    expect(derToP1363(der(0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x05, 0x01))).toBeNull();
    expect(derToP1363(der(0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01))).toBeNull();
    expect(derToP1363(der(0x30, 0x06, 0x03, 0x01, 0x01, 0x02, 0x01, 0x01))).toBeNull();
    expect(
      derToP1363(new Uint8Array([0x30, 0x24, 0x02, 0x21, 0x01, ...new Array(32).fill(1), 0x02, 0x01, 0x01])),
    ).toBeNull();
  });
  it("reads a 33-byte integer with its sign byte, and r = s = 0 never verifies", () => {
    const out = derToP1363(
      new Uint8Array([0x30, 0x26, 0x02, 0x21, 0x00, ...new Array(32).fill(0xff), 0x02, 0x01, 0x01]),
    );
    expect(out?.length).toBe(64);
    expect(out?.[0]).toBe(0xff);
    expect(out?.[63]).toBe(1);
  });
});
