/**
 * Apple's postbacks against the real `wrangler dev`, as Apple's devices send them: Apple's own
 * published example postbacks (SKAdNetwork 2.2, 3.0 winning and losing, 4.0; AdAttributionKit's
 * example, signed with Apple's development key), posted with plain fetch to Apple's well-known
 * paths. Each becomes a conversion the admin API reads back, and the winners reach the owning
 * partner's own HTTP server with its payout; the loser reaches only the filter partner; a repeat
 * is a duplicate; a tampered one is refused and leaves nothing.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fixture from "../fixtures/skadnetwork.json" with { type: "json" };
import { type PartnerServer, type ReceivedRequest, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, sleep } from "./support";

const SKAN_PATH = "/.well-known/skadnetwork/report-attribution/";
const AAK_PATH = "/.well-known/appattribution/report-attribution/";
/** Apple's AdAttributionKit example stanza ("Identifying the parameters in a postback"). */
const AAK_EXAMPLE = {
  "jws-string":
    "eyJraWQiOiJhcHBsZS1kZXZlbG9wbWVudC1pZGVudGlmaWVyXC8xIiwiYWxnIjoiRVMyNTYifQ.eyJwb3N0YmFjay1pZGVudGlmaWVyIjoiODU1NDZFQjctRkQzOS00NEJDLTg5OTAtQzk4QTRBQzM2QTQ5IiwicHVibGlzaGVyLWl0ZW0taWRlbnRpZmllciI6MCwibWFya2V0cGxhY2UtaWRlbnRpZmllciI6ImNvbS5hcHBsZS5BcHBTdG9yZSIsImltcHJlc3Npb24tdHlwZSI6ImFwcC1pbXByZXNzaW9uIiwiYWQtbmV0d29yay1pZGVudGlmaWVyIjoiZGV2ZWxvcG1lbnQuYWRhdHRyaWJ1dGlvbmtpdCIsImRpZC13aW4iOnRydWUsInBvc3RiYWNrLXNlcXVlbmNlLWluZGV4IjowLCJjb252ZXJzaW9uLXR5cGUiOiJyZS1lbmdhZ2VtZW50Iiwic291cmNlLWlkZW50aWZpZXIiOiIxMjM0IiwiYWR2ZXJ0aXNlZC1pdGVtLWlkZW50aWZpZXIiOjEwNzM4MDI3NzU2fQ.bAdNwKd6OfHK9tofvjjua4X_JPcFTxXPQSspD9gZkinw97pY7R1aI-LSjl-oxZZF3_K2H5JK5TSEBee4_1U4oQ",
  "conversion-value": 24,
  "ad-interaction-type": "click",
  "country-code": "US",
};
/** After the last expected delivery, how long to keep listening for a stray one. */
const QUIET_MS = 3_000;

type Example = { name: string; postback: Record<string, unknown> };
const example = (name: string) => {
  const found = (fixture.valid as Example[]).find((vector) => vector.name === name);
  if (!found) throw new Error(`no Apple example "${name}"`);
  return found.postback;
};

let hub: SharedHub;
let owner: PartnerServer;
let warehouse: PartnerServer;

beforeAll(async () => {
  [owner, warehouse] = await Promise.all([
    startPartnerServer(() => ({ status: 200, body: "ok" })),
    startPartnerServer(() => ({ status: 200, body: "ok" })),
  ]);
  hub = sharedHub();
});

afterAll(async () => {
  await Promise.all([owner?.close(), warehouse?.close()]);
});

const admin = (route: string, init: RequestInit = {}) => adminRequest(hub, route, init);

/** As Apple's device posts: JSON, no credential but the signature inside. */
function postLikeApple(path: string, body: unknown): Promise<Response> {
  return fetch(`${hub.baseUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
}

const query = (request: ReceivedRequest) => Object.fromEntries(new URL(request.url, "http://partner").searchParams);

/** One ad network: its network, an offer with the campaign its sources name, and Apple's settings. */
async function adNetwork(adNetworkIds: string[], ownerId: string): Promise<string> {
  const networkId = `e2e-apple-${randomUUID().slice(0, 8)}`;
  await expectStatus(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: networkId, name: "E2E ad network" }) }),
    201,
  );
  await expectStatus(
    await admin("/v1/offers", {
      method: "POST",
      body: JSON.stringify({
        network_id: networkId,
        name: "iOS launch",
        landing_url: "https://apps.apple.com/app/id525463029?ct={click_id}",
        campaign_id: "ios-launch",
        payouts: { default: [{ fixed: { amount: "1.50", currency: "USD" } }] },
      }),
    }),
    201,
  );
  const source = { campaign_id: "ios-launch", partner_id: ownerId };
  await expectStatus(
    await admin(`/v1/networks/${networkId}`, {
      method: "PATCH",
      body: JSON.stringify({ apple: { ad_network_ids: adNetworkIds, sources: { "42": source, "39": source } } }),
    }),
    200,
  );
  return networkId;
}

describe("Apple's example postbacks through the real wrangler dev", () => {
  it("become conversions, the winners reach the owning partner with its payout, the loser only the filter partner", async () => {
    const macros = "tx={transaction_id}&payout={payout}&by={attribution}&win={meta.did_win}&net={network_id}";
    const ownerPartner = await expectStatus<{ id: string }>(
      await admin("/v1/partners", {
        method: "POST",
        body: JSON.stringify({
          name: "E2E source owner",
          url_template: `${owner.origin}/pb?${macros}`,
          routing: "attributed",
        }),
      }),
      201,
    );
    // Apple's 3.0 and 2.2 examples share a transaction id under two ad network ids: two ad networks.
    const skan3 = await adNetwork(["example123.skadnetwork", "development.adattributionkit"], ownerPartner.id);
    const skan4 = await adNetwork(["com.example"], ownerPartner.id);
    await expectStatus(
      await admin("/v1/partners", {
        method: "POST",
        body: JSON.stringify({
          name: "E2E warehouse",
          url_template: `${warehouse.origin}/pb?${macros}`,
          filters: { networks: [skan3] },
        }),
      }),
      201,
    );

    const posted = [
      { name: "v3.0 winning", network: skan3, tx: "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28", won: true },
      {
        name: "v3.0 not winning (no source-app-id, no conversion-value)",
        network: skan3,
        tx: "f9ac267a-a889-44ce-b5f7-0166d11461f0",
        won: false,
      },
      { name: "v2.2", network: skan4, tx: "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28", won: true },
      { name: "v4.0 web ad, fine value", network: skan4, tx: "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30:0", won: true },
      { name: "v4.0 web ad, coarse value", network: skan4, tx: "6aafb7a5-0170-41b5-bbe4-fe71dedf1e31:0", won: true },
    ];
    for (const { name, network, tx } of posted) {
      const answer = await expectStatus<{ status: string; network_id: string; transaction_id: string }>(
        await postLikeApple(SKAN_PATH, example(name)),
        200,
      );
      expect(answer, name).toEqual(
        expect.objectContaining({ status: "accepted", network_id: network, transaction_id: tx }),
      );
    }
    // Apple's device retries until it gets its 200: the repeat is the first answer, replayed.
    const repeat = await postLikeApple(SKAN_PATH, example("v3.0 winning"));
    expect(repeat.headers.get("idempotent-replayed")).toBe("true");
    expect((await expectStatus<{ status: string }>(repeat, 200)).status).toBe("duplicate");
    // A tampered postback (did-win flipped) is refused, and is nobody's conversion.
    const tampered = { ...example("v3.0 not winning (no source-app-id, no conversion-value)"), "did-win": true };
    await expectStatus(await postLikeApple(SKAN_PATH, tampered), 401);

    for (const { name, network, tx, won } of posted) {
      const conversion = await eventually(
        async () => {
          const response = await admin(`/v1/conversions/${network}/${encodeURIComponent(tx)}`);
          return response.status === 200 ? ((await response.json()) as Record<string, unknown>) : null;
        },
        `${name} as a conversion`,
        { ready: (c) => !won || c.partner_id === ownerPartner.id, context: () => hub.log() },
      );
      expect(conversion, name).toMatchObject({ status: "approved", event_type: "install", campaign_id: "ios-launch" });
      expect((conversion.meta as Record<string, unknown>).did_win, name).toBe(won);
    }

    const winners = posted.filter((p) => p.won);
    await eventually(
      async () => (owner.requests.length >= winners.length ? owner.requests : null),
      "the owner's deliveries",
      { context: () => JSON.stringify(owner.requests.map((r) => r.url)) },
    );
    await eventually(
      async () => (warehouse.requests.length >= 2 ? warehouse.requests : null),
      "the warehouse's deliveries",
    );
    await sleep(QUIET_MS);
    expect(owner.requests.map((r) => [query(r).net, query(r).tx]).sort()).toEqual(
      winners.map((p) => [p.network, p.tx]).sort(),
    );
    for (const request of owner.requests)
      expect(query(request)).toMatchObject({ payout: "1.50", by: "direct", win: "true" });
    expect(warehouse.requests.map((r) => [query(r).tx, query(r).win]).sort()).toEqual([
      ["6aafb7a5-0170-41b5-bbe4-fe71dedf1e28", "true"],
      ["f9ac267a-a889-44ce-b5f7-0166d11461f0", "false"],
    ]);

    // AdAttributionKit's example, signed with Apple's development key: a test re-engagement.
    const aak = await expectStatus<{ status: string; network_id: string; transaction_id: string }>(
      await postLikeApple(AAK_PATH, AAK_EXAMPLE),
      200,
    );
    expect(aak).toMatchObject({
      status: "accepted",
      network_id: skan3,
      transaction_id: "85546EB7-FD39-44BC-8990-C98A4AC36A49:0",
    });
    const test = await eventually(async () => {
      const response = await admin(`/v1/conversions/${skan3}/${encodeURIComponent(aak.transaction_id)}?test=true`);
      return response.status === 200 ? ((await response.json()) as Record<string, unknown>) : null;
    }, "the AdAttributionKit example as a test conversion");
    expect(test).toMatchObject({ test: true, event_type: "re-engagement" });
  });
});
