/**
 * Apple's postbacks through the real pipeline in workerd: Apple's published examples (signed by
 * Apple) and postbacks signed with the tests' own trusted key, posted to Apple's well-known paths
 * and the per-network path; verified, recorded as conversions by their Durable Objects, attributed
 * to the source's partner only when they won, delivered, and explained. Refused ones leave nothing.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { parseApple, verifyApple } from "../src/ingest/apple";
import testKey from "./fixtures/apple-test-key.json";
import {
  AAK_EXAMPLE,
  AAK_PATH,
  appleExample,
  postApple,
  SKAN_PATH,
  signedAak,
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
  partnerLog,
  type TestNetwork,
  type TestPartner,
  uniqueId,
} from "./support/helpers";

const MACROS = "tx={transaction_id}&payout={payout}&by={attribution}&p={partner_id}&win={meta.did_win}";

let tag: string;
let network: TestNetwork;
let alice: TestPartner;
let warehouse: TestPartner;
let offerId: string;

async function configure(networkId: string, apple: unknown) {
  return admin(`/v1/networks/${networkId}`, { method: "PATCH", body: JSON.stringify({ apple }) });
}

async function answerOf(response: Response, status = 200) {
  return expectStatus<{ status: string; event_id: string; transaction_id: string; network_id: string }>(
    response,
    status,
  );
}

async function conversionCount(networkId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM conversions WHERE network_id = ?")
    .bind(networkId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

beforeAll(async () => {
  tag = uniqueId("apple");
  network = await createNetwork(uniqueId("ads"));
  alice = await createPartner({ url_template: `${PARTNER}/ok/${tag}/alice?${MACROS}`, routing: "attributed" });
  warehouse = await createPartner({
    url_template: `${PARTNER}/ok/${tag}/warehouse?${MACROS}`,
    filters: { networks: [network.id] },
  });
  const offer = await seedOffer(network.id, {
    campaign_id: "ios-launch",
    payouts: { default: [{ status: "approved", fixed: { amount: "2", currency: "USD" } }], partners: {} },
  });
  offerId = offer.id;
  await expectStatus(
    await configure(network.id, {
      // Apple's examples name these two ad networks; the tests' own postbacks name the test ones.
      ad_network_ids: [
        "example123.skadnetwork",
        "com.example",
        "test.skadnetwork",
        "test.adattributionkit",
        "development.adattributionkit",
      ],
      sources: {
        "42": { campaign_id: "ios-launch", partner_id: alice.id },
        "39": { campaign_id: "ios-launch", partner_id: alice.id },
        "1234": { campaign_id: "ios-launch", partner_id: alice.id },
      },
    }),
    200,
  );
});

describe("SKAdNetwork postbacks at Apple's well-known path", () => {
  it("records Apple's winning 3.0 example as an install, credits the source's partner and delivers it", async () => {
    const example = appleExample("v3.0 winning");
    const answer = await answerOf(await postApple(SKAN_PATH, example));
    expect(answer).toMatchObject({
      status: "accepted",
      network_id: network.id,
      transaction_id: "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28",
    });
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, answer.transaction_id, false);
      return found?.attributed_partner_id ? found : null;
    });
    expect(row).toMatchObject({ event_type: "install", campaign_id: "ios-launch", attributed_partner_id: alice.id });
    expect(JSON.parse(String(row.meta))).toMatchObject({
      apple_framework: "skadnetwork",
      skadnetwork_version: "3.0",
      ad_network_id: "example123.skadnetwork",
      did_win: true,
      source_identifier: "42",
      source_app_id: 1234567891,
      unsigned_conversion_value: 20,
    });
    const credited = await eventually(async () => {
      const log = await partnerLog(`/ok/${tag}/alice`);
      return log.find((request) => request.url.includes(`tx=${answer.transaction_id}`));
    });
    const query = new URL(credited.url).searchParams;
    expect(Object.fromEntries(query)).toMatchObject({ payout: "2.00", p: alice.id, win: "true" });
    await eventually(async () => {
      const log = await partnerLog(`/ok/${tag}/warehouse`);
      return log.find((request) => request.url.includes(`tx=${answer.transaction_id}`));
    });

    // Apple's device retries until it gets a 200: the repeat is the first answer, replayed.
    const repeat = await postApple(SKAN_PATH, example);
    expect(repeat.headers.get("idempotent-replayed")).toBe("true");
    expect(await answerOf(repeat)).toEqual({ ...answer, status: "duplicate" });
  });

  it("records a losing postback without crediting anyone; filter partners still hear of it", async () => {
    const example = appleExample("v3.0 not winning (no source-app-id, no conversion-value)");
    const answer = await answerOf(await postApple(SKAN_PATH, example));
    expect(answer.status).toBe("accepted");
    await eventually(async () => {
      const log = await partnerLog(`/ok/${tag}/warehouse`);
      return log.find((request) => request.url.includes(`tx=${answer.transaction_id}`));
    });
    const row = await conversionInD1(network.id, answer.transaction_id, false);
    expect(row).toMatchObject({ campaign_id: "ios-launch", attributed_partner_id: null, partner_id: null });
    expect(JSON.parse(String(row?.meta))).toMatchObject({ did_win: false });
    const credited = await partnerLog(`/ok/${tag}/alice`);
    expect(credited.filter((request) => request.url.includes(answer.transaction_id))).toEqual([]);
  });

  it("takes the 4.0 examples as their conversion window's transaction, the 4-digit source falling back to its 2 digits", async () => {
    const fine = await answerOf(await postApple(SKAN_PATH, appleExample("v4.0 web ad, fine value")));
    expect(fine.transaction_id).toBe("6aafb7a5-0170-41b5-bbe4-fe71dedf1e30:0");
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, fine.transaction_id, false);
      return found?.attributed_partner_id ? found : null;
    });
    expect(row).toMatchObject({ attributed_partner_id: alice.id, campaign_id: "ios-launch" });
    expect(JSON.parse(String(row.meta))).toMatchObject({
      source_identifier: "5239",
      source_domain: "example.com",
      postback_sequence_index: 0,
      unsigned_conversion_value: 63,
    });
    const coarse = await answerOf(await postApple(SKAN_PATH, appleExample("v4.0 web ad, coarse value")));
    const coarseRow = await eventually(() => conversionInD1(network.id, coarse.transaction_id, false));
    expect(JSON.parse(String(coarseRow.meta))).toMatchObject({ unsigned_coarse_conversion_value: "high" });
  });

  it("keeps each of an install's conversion windows apart, and replays a repeat of any of them", async () => {
    const transaction = crypto.randomUUID();
    const answers = [];
    for (const index of [0, 1, 2]) {
      const body = await signedSkan4({ "transaction-id": transaction, "postback-sequence-index": index });
      answers.push(await answerOf(await postApple(SKAN_PATH, body)));
    }
    expect(answers.map((answer) => [answer.transaction_id, answer.status])).toEqual([
      [`${transaction}:0`, "accepted"],
      [`${transaction}:1`, "accepted"],
      [`${transaction}:2`, "accepted"],
    ]);
    const again = await answerOf(
      await postApple(SKAN_PATH, await signedSkan4({ "transaction-id": transaction, "postback-sequence-index": 1 })),
    );
    // The signature is ECDSA (randomised): a new signature over the same fields is the same postback.
    expect(again).toEqual({ ...answers[1], status: "duplicate" });
  });

  it("refuses a tampered postback (did-win flipped) with 401 and keeps nothing", async () => {
    const losing = appleExample("v3.0 not winning (no source-app-id, no conversion-value)");
    // Recorded first (or already, by the test above): the tampered copy must not change it.
    const recorded = await answerOf(await postApple(SKAN_PATH, losing));
    const before = await conversionCount(network.id);
    const problem = await expectStatus<{ code: string; errors: { location: string; message: string }[] }>(
      await postApple(SKAN_PATH, { ...losing, "did-win": true }),
      401,
    );
    expect(problem.code).toBe("unauthorized");
    expect(problem.errors[0]).toMatchObject({ location: "body.attribution-signature" });
    expect(await conversionCount(network.id)).toBe(before);
    const kept = await eventually(() => conversionInD1(network.id, recorded.transaction_id, false));
    expect(JSON.parse(String(kept.meta))).toMatchObject({ did_win: false });
    expect(kept.attributed_partner_id).toBeNull();
  });

  it("refuses 2.0 (P-192) with the reason, rather than accepting it unverified", async () => {
    const v20 = { ...appleExample("v2.2"), version: "2.0" } as Record<string, unknown>;
    delete v20["fidelity-type"];
    const problem = await expectStatus<{ errors: { message: string }[] }>(await postApple(SKAN_PATH, v20), 401);
    expect(problem.errors[0]?.message).toContain("P-192");
  });

  it("answers 422 naming the field, 404 for an ad network no network receives, and stores nothing", async () => {
    const before = await conversionCount(network.id);
    const bad = await expectStatus<{ errors: { location: string }[] }>(
      await postApple(SKAN_PATH, { ...appleExample("v3.0 winning"), "did-win": "yes" }),
      422,
    );
    expect(bad.errors.map((error) => error.location)).toContain("body.did-win");
    await expectStatus(await postApple(SKAN_PATH, "not json"), 400);
    const stranger = await expectStatus<{ errors: { location: string }[] }>(
      await postApple(SKAN_PATH, await signedSkan4({ "ad-network-id": "nobody.skadnetwork" })),
      404,
    );
    expect(stranger.errors[0]?.location).toBe("body.ad-network-id");
    expect(await conversionCount(network.id)).toBe(before);
  });
});

describe("AdAttributionKit postbacks", () => {
  it("verifies Apple's example with Apple's development key, and records it as a test re-engagement", async () => {
    const answer = await answerOf(await postApple(AAK_PATH, AAK_EXAMPLE));
    expect(answer.transaction_id).toBe("85546EB7-FD39-44BC-8990-C98A4AC36A49:0");
    const row = await eventually(() => conversionInD1(network.id, answer.transaction_id, true));
    expect(row).toMatchObject({ test: 1, event_type: "re-engagement" });
    expect(JSON.parse(String(row.meta))).toMatchObject({
      apple_framework: "adattributionkit",
      jws_kid: "apple-development-identifier/1",
      unsigned_conversion_value: 24,
      unsigned_country_code: "US",
    });
    expect(await conversionInD1(network.id, answer.transaction_id, false)).toBeNull();
  });

  it("reads the postback from the signed payload only, never from unsigned siblings", async () => {
    const stanza = await signedAak(
      { "did-win": true, "source-identifier": "1234" },
      // Beside the JWS, unsigned: a forger's attempt to change the signed fields.
      { "did-win": false, "source-identifier": "9999", "conversion-value": 7 },
    );
    const answer = await answerOf(await postApple(`/v1/postbacks/${network.id}/apple`, stanza));
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, answer.transaction_id, false);
      return found?.attributed_partner_id ? found : null;
    });
    expect(row).toMatchObject({ attributed_partner_id: alice.id, event_type: "install" });
    expect(JSON.parse(String(row.meta))).toMatchObject({
      did_win: true,
      source_identifier: "1234",
      jws_kid: TEST_KID,
      unsigned_conversion_value: 7,
    });
  });

  it("refuses an untrusted kid, alg none and a tampered payload, and keeps nothing", async () => {
    const before = await conversionCount(network.id);
    const foreign = await signedAak({}, {}, { kid: "someone-else/1", alg: "ES256" });
    expect((await expectStatus<{ detail: string }>(await postApple(AAK_PATH, foreign), 401)).detail).toContain(
      "not a trusted key",
    );
    const [header, payload, signature] = String((await signedAak({}))["jws-string"]).split(".");
    const none = `${btoa(JSON.stringify({ alg: "none", kid: TEST_KID })).replaceAll("=", "")}.${payload}.`;
    await expectStatus(await postApple(AAK_PATH, { "jws-string": none }), 401);
    const other = String((await signedAak({ "did-win": false }))["jws-string"]).split(".")[1];
    await expectStatus(await postApple(AAK_PATH, { "jws-string": `${header}.${other}.${signature}` }), 401);
    expect(await conversionCount(network.id)).toBe(before);
  });
});

describe("added keys", () => {
  it("never stand in for one of Apple's kids, and a kid named __proto__ is only a name", async () => {
    const publicJwk = testKey.public_jwk as JsonWebKey;
    for (const kid of ["apple-cas-identifier/0", "apple-development-identifier/1", "__proto__"]) {
      const stanza = await signedAak({}, {}, { kid, alg: "ES256" });
      const parsed = parseApple(stanza);
      if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
      const verdict = await verifyApple(parsed.parsed, { skadnetwork: [], adattributionkit: { [kid]: publicJwk } });
      // Apple's kids keep Apple's keys; an added "__proto__" is an own entry, trusted as any added kid.
      expect(verdict.ok, kid).toBe(kid === "__proto__");
      if (verdict.ok && verdict.verified.kind === "adattributionkit") expect(verdict.verified.test).toBe(false);
    }
  });
});

describe("the per-network path", () => {
  it("refuses a postback whose signed ad network is not the network's (403), and one for an unknown network (404)", async () => {
    const other = await createNetwork(uniqueId("other"));
    const body = await signedSkan4({});
    const problem = await expectStatus<{ errors: { location: string }[] }>(
      await postApple(`/v1/postbacks/${other.id}/apple`, body),
      403,
    );
    expect(problem.errors[0]?.location).toBe("body.ad-network-id");
    await expectStatus(await postApple("/v1/postbacks/no-such-network/apple", body), 404);
    expect(await conversionCount(other.id)).toBe(0);
  });
});

describe("the network's apple settings", () => {
  it("refuses sources naming no offer or no partner (422) and an ad network id another network holds (409)", async () => {
    const other = await createNetwork(uniqueId("other"));
    const missing = await expectStatus<{ errors: { location: string }[] }>(
      await configure(other.id, {
        ad_network_ids: ["fresh.skadnetwork"],
        sources: { "7": { campaign_id: "no-such-campaign", partner_id: "ptn_00000000000000000000000000" } },
      }),
      422,
    );
    expect(missing.errors.map((error) => error.location).sort()).toEqual([
      "body.apple.sources.7.campaign_id",
      "body.apple.sources.7.partner_id",
    ]);
    const taken = await expectStatus<{ errors: { location: string; message: string }[] }>(
      await configure(other.id, { ad_network_ids: ["Example123.SKAdNetwork"] }),
      409,
    );
    expect(taken.errors[0]).toMatchObject({ location: "body.apple.ad_network_ids[0]" });
    const bad = await expectStatus<{ errors: { location: string }[] }>(
      await configure(other.id, { ad_network_ids: ["not an id"], sources: { "12345": {} } }),
      422,
    );
    expect(bad.errors.map((error) => error.location)).toEqual(
      expect.arrayContaining(["body.apple.ad_network_ids[0]", "body.apple.sources.12345"]),
    );
    const got = await expectStatus<{ apple: unknown }>(await admin(`/v1/networks/${other.id}`), 200);
    expect(got.apple).toBeNull();
  });

  it("routes a well-known postback anew once its ad network id moves to another network", async () => {
    const first = await createNetwork(uniqueId("first"));
    const second = await createNetwork(uniqueId("second"));
    const id = `${uniqueId("moving")}.skadnetwork`.toLowerCase();
    await expectStatus(await configure(first.id, { ad_network_ids: [id] }), 200);
    const a = await answerOf(await postApple(SKAN_PATH, await signedSkan4({ "ad-network-id": id })));
    expect(a.network_id).toBe(first.id);
    await expectStatus(await configure(first.id, null), 200);
    await expectStatus(await configure(second.id, { ad_network_ids: [id] }), 200);
    const b = await answerOf(await postApple(SKAN_PATH, await signedSkan4({ "ad-network-id": id })));
    expect(b.network_id).toBe(second.id);
  });
});

describe("the inbound log", () => {
  it("keeps each Apple request with its route, Apple's key as the credential, and a refusal's reason", async () => {
    const accepted = await signedSkan4({});
    const answer = await answerOf(await postApple(SKAN_PATH, accepted));
    const forged = { ...(await signedSkan4({})), "did-win": false };
    await expectStatus(await postApple(`/v1/postbacks/${network.id}/apple`, forged), 401);
    const rows = await eventually(async () => {
      const { results } = await env.DB.prepare(
        "SELECT route, auth_method, credential_id, transaction_id, status, verdict, errors FROM inbound_requests WHERE network_id = ? AND route = 'apple' AND (transaction_id = ? OR status = 401)",
      )
        .bind(network.id, answer.transaction_id)
        .all<Record<string, unknown>>();
      return results.length >= 2 ? results : null;
    });
    expect(rows).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          auth_method: "apple",
          // The tests' own key, the first of APPLE_POSTBACK_KEYS.skadnetwork (Apple's would be apple:skadnetwork-p256).
          credential_id: "apple:skadnetwork-added-1",
          transaction_id: answer.transaction_id,
          status: 200,
          verdict: "accepted",
        }),
        expect.objectContaining({ auth_method: null, status: 401, verdict: "unauthorized" }),
      ]),
    );
  });
});

describe("explain", () => {
  const explain = (body: unknown) =>
    admin(`/v1/postbacks/${network.id}/apple/explain`, { method: "POST", body: JSON.stringify(body) });

  it("shows the signed string it rebuilt from Apple's example, and what the source maps to", async () => {
    const explained = await expectStatus<Record<string, unknown>>(await explain(appleExample("v2.2")), 200);
    expect(explained).toMatchObject({
      framework: "skadnetwork",
      verification: {
        ok: true,
        signed_string: [
          "2.2",
          "com.example",
          "42",
          "525463029",
          "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28",
          "true",
          "1234567891",
          "1",
        ].join("\u2063"),
      },
      ad_network_id: "com.example",
      receives: true,
      did_win: true,
      source: { key: "42", mapped_key: "42", campaign_id: "ios-launch", partner_id: alice.id },
    });
    const refused = await expectStatus<{ verification: { ok: boolean; reason: string; signed_string: string } }>(
      await explain({ ...appleExample("v2.2"), "fidelity-type": 0 }),
      200,
    );
    expect(refused.verification).toMatchObject({ ok: false, signed_string: expect.stringMatching(/\u20630$/) });
    expect(refused.verification.reason).toContain("does not verify");
  });

  it("shows the decision, the owning partner and each partner's verdict, and stores nothing", async () => {
    const body = await signedSkan4({ "source-identifier": "7739" });
    const explained = await expectStatus<Record<string, unknown>>(await explain(body), 200);
    expect(explained).toMatchObject({
      source: { key: "7739", mapped_key: "39", partner_id: alice.id },
      decision: { verdict: "accepted" },
      attribution: { partner_id: alice.id, offer_id: offerId },
    });
    const partners = explained.partners as { partner_id: string; notified: boolean }[];
    expect(partners.find((p) => p.partner_id === alice.id)?.notified).toBe(true);
    expect(partners.find((p) => p.partner_id === warehouse.id)?.notified).toBe(true);
    expect(await conversionInD1(network.id, `${body["transaction-id"]}:0`)).toBeNull();
    // Without a hub key, explain is refused: Apple's signature alone does not open it.
    await expectStatus(await postApple(`/v1/postbacks/${network.id}/apple/explain`, body), 401);
  });
});
