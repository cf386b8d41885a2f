/**
 * Attribution against the real `wrangler dev`, as a partner, a visitor and an advertiser meet it:
 * the partner's tracking link answers a 302 with a click id; the advertiser network posts the
 * conversion with that click id (an affiliate GET with a token, and a JSON postback signed by the
 * Standard Webhooks library); only the clicking partner's own HTTP server hears of it, with its
 * payout and sub ids, and the other partner's clicks are never credited to it.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, type ReceivedRequest, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, signedPostback, sleep } from "./support";

/** After the last expected delivery, how long to keep listening for a stray one. */
const QUIET_MS = 3_000;
const BROWSER_UA =
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15";

let hub: SharedHub;
let alicesServer: PartnerServer;
let bobsServer: PartnerServer;

beforeAll(async () => {
  [alicesServer, bobsServer] = await Promise.all([
    startPartnerServer(() => ({ status: 200, body: "ok" })),
    startPartnerServer(() => ({ status: 200, body: "ok" })),
  ]);
  hub = sharedHub();
});

afterAll(async () => {
  await Promise.all([alicesServer?.close(), bobsServer?.close()]);
});

function admin(route: string, init: RequestInit = {}) {
  return adminRequest(hub, route, init);
}

/** Follows a tracking link as a browser would, without following the redirect. */
async function follow(link: string): Promise<URL> {
  const response = await fetch(link, { redirect: "manual", headers: { "user-agent": BROWSER_UA } });
  expect(response.status, await response.clone().text()).toBe(302);
  return new URL(response.headers.get("location") ?? "");
}

function query(request: ReceivedRequest): Record<string, string> {
  return Object.fromEntries(new URL(request.url, "http://partner").searchParams);
}

describe("a partner's click, the advertiser's postback, the partner's payout", () => {
  it("credits only the partner whose click converted, with its payout and sub ids", async () => {
    const networkId = `e2e-attr-${randomUUID().slice(0, 8)}`;
    const network = await expectStatus<{ id: string; secret: string; token: string }>(
      await admin("/v1/networks", {
        method: "POST",
        body: JSON.stringify({
          id: networkId,
          name: "E2E Advertiser",
          auth: { methods: ["token", "standard_webhooks"], ip_allowlist: [] },
          mapping: { preset: "generic", default_currency: "USD" },
        }),
      }),
      201,
    );
    const template = (origin: string) =>
      `${origin}/postback?tx={transaction_id}&status={status}&payout={payout}&was={previous_payout}` +
      "&cur={payout_currency}&amount={amount}&cid={click_id}&s1={sub1}&s2={sub2}&offer={offer_id}&by={attribution}";
    const createPartner = async (name: string, server: PartnerServer) =>
      expectStatus<{ id: string }>(
        await admin("/v1/partners", {
          method: "POST",
          body: JSON.stringify({
            name,
            url_template: template(server.origin),
            routing: "attributed",
            retry_schedule_seconds: [1, 1, 1],
          }),
        }),
        201,
      );
    const alice = await createPartner("Alice's blog", alicesServer);
    const bob = await createPartner("Bob's coupons", bobsServer);
    const offer = await expectStatus<{ id: string; tracking_link: string }>(
      await admin("/v1/offers", {
        method: "POST",
        body: JSON.stringify({
          network_id: networkId,
          name: "Spring shoes",
          landing_url: "https://shop.example/shoes?clickid={click_id}&aff={partner_id}",
          payouts: {
            default: [{ fixed: { amount: "2.50", currency: "USD" }, percent: "5" }],
            partners: { [bob.id]: [{ fixed: { amount: "1", currency: "USD" } }] },
          },
        }),
      }),
      201,
    );
    expect(offer.tracking_link).toBe(`${hub.baseUrl}/c/${offer.id}?p={partner_id}`);
    const linkOf = (partnerId: string) => offer.tracking_link.replace("{partner_id}", partnerId);

    // 1. Visitors click: two on Alice's link (with her sub ids), one on Bob's.
    const alicesFirst = await follow(`${linkOf(alice.id)}&sub1=spring-banner&sub2=${encodeURIComponent("hero slot")}`);
    expect(`${alicesFirst.origin}${alicesFirst.pathname}`).toBe("https://shop.example/shoes");
    expect(alicesFirst.searchParams.get("aff")).toBe(alice.id);
    const aliceClick = alicesFirst.searchParams.get("clickid") ?? "";
    expect(aliceClick).toMatch(/^[0-9a-z]{84}$/);
    const aliceSecondClick = (await follow(`${linkOf(alice.id)}&sub1=sidebar`)).searchParams.get("clickid") ?? "";
    const bobClick = (await follow(linkOf(bob.id))).searchParams.get("clickid") ?? "";
    expect(new Set([aliceClick, aliceSecondClick, bobClick]).size).toBe(3);

    // 2. The advertiser converts Alice's first click: a GET with its token, as its tracker fires it.
    const getTx = `ord-${randomUUID().slice(0, 8)}`;
    const viaGet = await fetch(
      `${hub.baseUrl}/v1/postbacks/${networkId}?txid=${getTx}&status=approved&payout=40.00&click_id=${aliceClick}&token=${network.token}`,
    );
    expect((await expectStatus<{ status: string }>(viaGet, 200)).status).toBe("accepted");
    // 3. …and Bob's click with a signed JSON postback; then Alice's second click, also signed.
    const jsonTx = `ord-${randomUUID().slice(0, 8)}`;
    const bobTx = `ord-${randomUUID().slice(0, 8)}`;
    for (const [tx, clickId] of [
      [bobTx, bobClick],
      [jsonTx, aliceSecondClick],
    ] as const) {
      const answer = await signedPostback(hub, networkId, network.secret, {
        transaction_id: tx,
        status: "approved",
        amount: "19.99",
        currency: "USD",
        click_id: clickId,
      });
      expect((await expectStatus<{ status: string }>(answer, 200)).status).toBe("accepted");
    }

    // 4. Alice's server gets her two conversions, Bob's his one, each with its own payout.
    await eventually(
      async () => (alicesServer.requests.length >= 2 && bobsServer.requests.length >= 1 ? true : null),
      "every partner's postback",
      { context: () => hub.log().slice(-3000) },
    );
    await sleep(QUIET_MS);
    const toAlice = alicesServer.requests.map(query).sort((a, b) => (a.tx ?? "").localeCompare(b.tx ?? ""));
    const expectedAlice = [
      // 2.50 + 5 % of 40.00 = 4.50
      {
        tx: getTx,
        status: "approved",
        payout: "4.50",
        cur: "USD",
        cid: aliceClick,
        s1: "spring-banner",
        s2: "hero slot",
      },
      // 2.50 + 5 % of 19.99 = 3.4995, rounded half to even: 3.50
      { tx: jsonTx, status: "approved", payout: "3.50", cur: "USD", cid: aliceSecondClick, s1: "sidebar", s2: "" },
    ].sort((a, b) => a.tx.localeCompare(b.tx));
    expect(toAlice).toMatchObject(
      expectedAlice.map((e) => ({ ...e, offer: offer.id, by: "click", amount: "", was: "" })),
    );
    expect(alicesServer.requests).toHaveLength(2);
    expect(bobsServer.requests.map(query)).toEqual([
      expect.objectContaining({ tx: bobTx, payout: "1.00", cid: bobClick, by: "click" }),
    ]);

    // 5. The hub's record says the same: whose each conversion is, and what it pays.
    const detail = await expectStatus<Record<string, unknown>>(
      await admin(`/v1/conversions/${networkId}/${getTx}`),
      200,
    );
    expect(detail).toMatchObject({
      transaction_id: getTx,
      status: "approved",
      attribution: {
        verdict: "click",
        offer_id: offer.id,
        partner_id: alice.id,
        payout: { amount: "4.50", currency: "USD" },
        click: { sub1: "spring-banner", sub2: "hero slot", device: "desktop", os: "macOS", browser: "Safari" },
      },
    });

    // 6. The advertiser reverses Alice's GET conversion: she hears that her payout is taken back.
    const reversed = await fetch(
      `${hub.baseUrl}/v1/postbacks/${networkId}?txid=${getTx}&status=reversed&click_id=${aliceClick}&token=${network.token}`,
    );
    expect((await expectStatus<{ status: string }>(reversed, 200)).status).toBe("updated");
    await eventually(async () => (alicesServer.requests.length >= 3 ? true : null), "the reversal's postback");
    expect(query(alicesServer.requests[2] as ReceivedRequest)).toMatchObject({
      tx: getTx,
      status: "reversed",
      payout: "0.00",
      was: "4.50",
    });
    await sleep(QUIET_MS);
    expect(bobsServer.requests).toHaveLength(1);
  });
});
