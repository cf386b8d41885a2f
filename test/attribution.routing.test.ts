/**
 * Attribution through the real pipeline (ingest → Durable Object → EVENTS consumer → D1 and
 * deliveries → the partners' coordinators → the fake partner): a click's partner alone hears of its
 * conversion, with its payout and sub ids; filter-routed partners keep hearing of everything their
 * filters match; forged, foreign, expired and unknown credits go to nobody, with the reason kept.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Offer } from "../src/domain/offer";
import { mintClickId } from "../src/lib/click-id";
import { hmacKey } from "../src/lib/keys";
import { click, clickIdOf, clickRows, seedOffer } from "./support/attribution";
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
  signedRequest,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, postbackUrl, tokenOf } from "./support/inbound";

const MACROS =
  "tx={transaction_id}&status={status}&payout={payout}&was={previous_payout}&cur={payout_currency}&amount={amount}&offer={offer_id}&by={attribution}&s1={sub1}&s2={sub2}&cid={click_id}&p={partner_id}";

async function attributedPartner(path: string, extra: Record<string, unknown> = {}) {
  return createPartner({ url_template: `${PARTNER}/ok/${path}?${MACROS}`, routing: "attributed", ...extra });
}

async function setUp(offerFields: Partial<Offer> = {}) {
  const tag = uniqueId("attr");
  const network = await createNetwork();
  const alice = await attributedPartner(`${tag}/alice`);
  const bob = await attributedPartner(`${tag}/bob`);
  const warehouse = await createPartner({
    url_template: `${PARTNER}/ok/${tag}/warehouse?${MACROS}`,
    filters: { networks: [network.id] },
  });
  const offer = await seedOffer(network.id, {
    payouts: {
      default: [
        { status: "approved", fixed: { amount: "5", currency: "USD" } },
        { status: "pending", percent: "10" },
      ],
      partners: {},
    },
    revenue: [{ percent: "100" }],
    ...offerFields,
  });
  return { tag, network, alice, bob, warehouse, offer };
}

type Received = Record<string, string>;

async function received(path: string, count: number): Promise<Received[]> {
  const log = await eventually(async () => {
    const entries = await partnerLog(`/ok/${path}`);
    return entries.length >= count ? entries : null;
  });
  return log.map((entry) => Object.fromEntries(new URL(entry.url).searchParams));
}

async function recorded(network: TestNetwork, transactionId: string) {
  return eventually(async () => {
    const row = await conversionInD1(network.id, transactionId);
    return row?.attribution ? row : null;
  });
}

async function clickFor(offer: Offer, partnerId: string, query = "") {
  const response = await click(`/c/${offer.id}?p=${partnerId}${query}`);
  expect(response.status).toBe(302);
  return clickIdOf(response);
}

describe("owner routing", () => {
  it("tells only the click's partner, with its payout and sub ids, and every filter partner", async () => {
    const { tag, network, alice, offer } = await setUp();
    const clickId = await clickFor(offer, alice.id, "&sub1=banner-7&sub2=a%20b");
    await eventually(async () => ((await clickRows(offer.id)).length > 0 ? true : null));
    const tx = uniqueId("tx");
    await expectStatus(await postback(network, makePostback({ transaction_id: tx, click_id: clickId })), 200);

    const [toAlice] = await received(`${tag}/alice`, 1);
    expect(toAlice).toMatchObject({
      tx,
      status: "approved",
      payout: "5.00",
      was: "",
      cur: "USD",
      // An attributed partner sees the network's amount only when the operator shares it.
      amount: "",
      offer: offer.id,
      by: "click",
      s1: "banner-7",
      s2: "a b",
      cid: clickId,
      p: alice.id,
    });
    const [toWarehouse] = await received(`${tag}/warehouse`, 1);
    expect(toWarehouse).toMatchObject({ tx, amount: "29.99", payout: "5.00", by: "click", p: alice.id });
    expect(await partnerLog(`/ok/${tag}/bob`)).toEqual([]);

    const row = await recorded(network, tx);
    expect(row).toMatchObject({
      attribution: "click",
      offer_id: offer.id,
      attributed_partner_id: alice.id,
      payout: "5.00",
      payout_currency: "USD",
      revenue: "29.99",
      revenue_currency: "USD",
    });
    expect(String(row.clicked_at)).toMatch(/^\d{4}-\d\d-\d\dT/);
    // The conversion's API record joins the click: its sub ids, country and device.
    const detail = await expectStatus<{ attribution: Record<string, unknown>; source: string }>(
      await admin(`/v1/conversions/${network.id}/${tx}`),
      200,
    );
    expect(detail.source).toBe("s2s");
    expect(detail.attribution).toMatchObject({
      verdict: "click",
      offer_id: offer.id,
      partner_id: alice.id,
      payout: { amount: "5.00", currency: "USD" },
      revenue: { amount: "29.99", currency: "USD" },
      click: { sub1: "banner-7", sub2: "a b", sub3: null, device: "desktop", os: "Windows", browser: "Chrome" },
    });
  });

  it("shares the amount with an attributed partner only when it is allowed to see it", async () => {
    const { tag, network, offer } = await setUp();
    const carol = await attributedPartner(`${tag}/carol`, { share_amount: true });
    const clickId = await clickFor(offer, carol.id);
    await expectStatus(await postback(network, makePostback({ click_id: clickId })), 200);
    const [toCarol] = await received(`${tag}/carol`, 1);
    expect(toCarol).toMatchObject({ amount: "29.99", payout: "5.00" });
  });

  it("never credits one partner's conversion to another", async () => {
    const { tag, network, alice, bob, offer } = await setUp();
    const aliceClick = await clickFor(offer, alice.id);
    const bobClick = await clickFor(offer, bob.id);
    const [a, b] = [uniqueId("tx"), uniqueId("tx")];
    await expectStatus(await postback(network, makePostback({ transaction_id: a, click_id: aliceClick })), 200);
    await expectStatus(await postback(network, makePostback({ transaction_id: b, click_id: bobClick })), 200);
    expect((await received(`${tag}/alice`, 1)).map((r) => r.tx)).toEqual([a]);
    expect((await received(`${tag}/bob`, 1)).map((r) => r.tx)).toEqual([b]);
    // Nothing more arrives later: the warehouse has both, so both were routed.
    expect((await received(`${tag}/warehouse`, 2)).map((r) => r.tx).sort()).toEqual([a, b].sort());
    expect((await partnerLog(`/ok/${tag}/alice`)).length).toBe(1);
  });
});

describe("payouts through the lifecycle", () => {
  it("pays pending by percentage, approved by the fixed amount, and takes it back when reversed", async () => {
    const { tag, network, alice, offer } = await setUp();
    const clickId = await clickFor(offer, alice.id);
    const tx = uniqueId("tx");
    for (const status of ["pending", "approved", "reversed"]) {
      await expectStatus(
        await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status, amount: "29.95" })),
        200,
      );
      // One at a time, so each delivery's previous payout is the one before it.
      await eventually(async () => ((await conversionInD1(network.id, tx))?.status === status ? true : null));
    }
    const told = await received(`${tag}/alice`, 3);
    const byStatus = Object.fromEntries(told.map((r) => [r.status, r]));
    // 10 % of 29.95 is 2.995: half to even at two digits is 3.00 (2.995 → 3.00, 2.985 → 2.98).
    expect(byStatus.pending).toMatchObject({ payout: "3.00", was: "", cur: "USD" });
    expect(byStatus.approved).toMatchObject({ payout: "5.00", was: "3.00", cur: "USD" });
    expect(byStatus.reversed).toMatchObject({ payout: "0.00", was: "5.00", cur: "USD" });
    const row = await recorded(network, tx);
    expect(row).toMatchObject({ status: "reversed", payout: "0.00", revenue: null });
  });

  it("prices a partner by its own rules when the offer has them, in the currency's minor units", async () => {
    const network = await createNetwork();
    const tag = uniqueId("attr");
    const dave = await attributedPartner(`${tag}/dave`);
    const offer = await seedOffer(network.id, {
      payouts: {
        default: [{ fixed: { amount: "1", currency: "USD" } }],
        partners: { [dave.id]: [{ event_type: "purchase", percent: "12.5" }] },
      },
    });
    const clickId = await clickFor(offer, dave.id);
    // 12.5 % of 1234 JPY is 154.25: JPY has no minor unit, so 154.
    await expectStatus(
      await postback(network, makePostback({ click_id: clickId, amount: "1234", currency: "JPY" })),
      200,
    );
    const [told] = await received(`${tag}/dave`, 1);
    expect(told).toMatchObject({ payout: "154", cur: "JPY" });
  });
});

describe("attribution verdicts", () => {
  async function verdictOf(network: TestNetwork, fields: Record<string, unknown>) {
    const tx = uniqueId("tx");
    await expectStatus(await postback(network, makePostback({ transaction_id: tx, ...fields })), 200);
    return recorded(network, tx);
  }

  it("records a forged click id as click_invalid and credits nobody", async () => {
    const { tag, network, alice, offer } = await setUp();
    const real = await clickFor(offer, alice.id);
    const forged = real.slice(0, -1) + (real.endsWith("0") ? "1" : "0");
    const row = await verdictOf(network, { click_id: forged });
    expect(row).toMatchObject({ attribution: "click_invalid", attributed_partner_id: null, payout: null });
    expect(String(row.attribution_detail)).toContain("does not verify");
    await received(`${tag}/warehouse`, 1);
    expect(await partnerLog(`/ok/${tag}/alice`)).toEqual([]);
  });

  it("refuses a click on another network's offer", async () => {
    const { tag, alice, offer } = await setUp();
    const other = await createNetwork();
    const row = await verdictOf(other, { click_id: await clickFor(offer, alice.id) });
    expect(row).toMatchObject({ attribution: "click_invalid", attributed_partner_id: null });
    expect(String(row.attribution_detail)).toContain("another network");
    expect(await partnerLog(`/ok/${tag}/alice`)).toEqual([]);
  });

  it("lets a click expire after the offer's window", async () => {
    const { tag, network, alice, offer } = await setUp({ attribution_window_days: 7 });
    const key = await hmacKey(env.ENCRYPTION_KEY, "click-id v1");
    const eightDaysAgo = Math.floor(Date.now() / 1000) - 8 * 86_400;
    const sixDaysAgo = Math.floor(Date.now() / 1000) - 6 * 86_400;
    const old = await mintClickId(key, { offer_id: offer.id, partner_id: alice.id, clicked_at: eightDaysAgo });
    const recent = await mintClickId(key, { offer_id: offer.id, partner_id: alice.id, clicked_at: sixDaysAgo });
    const expired = await verdictOf(network, { click_id: old });
    expect(expired).toMatchObject({ attribution: "click_expired", attributed_partner_id: null, offer_id: offer.id });
    expect(String(expired.attribution_detail)).toContain("7-day window");
    const inside = await verdictOf(network, { click_id: recent });
    expect(inside).toMatchObject({ attribution: "click", attributed_partner_id: alice.id });
    // Attributed from the id alone: no click row exists for either.
    expect(await clickRows(offer.id)).toEqual([]);
    expect((await received(`${tag}/alice`, 1)).map((r) => r.tx)).toEqual([String(inside.transaction_id)]);
  });

  it("credits a partner the network names, priced by the offer with its campaign id", async () => {
    const { tag, network, alice } = await setUp();
    await seedOffer(network.id, {
      campaign_id: "summer-24",
      payouts: { default: [{ fixed: { amount: "7.5", currency: "EUR" } }], partners: {} },
    });
    const row = await verdictOf(network, { partner_id: alice.id, campaign_id: "summer-24", click_id: "network-own-1" });
    expect(row).toMatchObject({
      attribution: "direct",
      attributed_partner_id: alice.id,
      payout: "7.50",
      payout_currency: "EUR",
    });
    const [told] = await received(`${tag}/alice`, 1);
    expect(told).toMatchObject({ by: "direct", payout: "7.50", cur: "EUR", p: alice.id });
  });

  it("records an unknown partner as partner_invalid, and a network's own click id as unattributed", async () => {
    const { tag, network } = await setUp();
    const unknown = await verdictOf(network, { partner_id: "ptn_01jd5x4m2k8c7r1q0s9t6v3w2y" });
    expect(unknown).toMatchObject({ attribution: "partner_invalid", attributed_partner_id: null });
    const own = await verdictOf(network, { click_id: "clk_1f3a9" });
    expect(own).toMatchObject({ attribution: "unattributed", attributed_partner_id: null, offer_id: null });
    await received(`${tag}/warehouse`, 2);
    expect(await partnerLog(`/ok/${tag}/alice`)).toEqual([]);
    expect(await partnerLog(`/ok/${tag}/bob`)).toEqual([]);
  });
});

describe("explain's attribution step", () => {
  interface Explained {
    attribution: Record<string, unknown> | null;
    partners: { partner_id: string; notified: boolean; reason: string }[];
  }

  async function explain(network: TestNetwork, body: Record<string, unknown>, asAdmin: boolean) {
    const signed = await signedRequest(network.id, body, network.secret);
    const headers = new Headers(signed.headers);
    if (asAdmin) headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    const request = new Request(`${signed.url}/explain`, { method: "POST", headers, body: JSON.stringify(body) });
    return expectStatus<Explained>(await exports.default.fetch(request), 200);
  }

  it("shows the click's verdict, window, partner and payout, and routes attributed partners by it", async () => {
    const { network, alice, bob, warehouse, offer } = await setUp({ attribution_window_days: 14 });
    const clickId = await clickFor(offer, alice.id);
    const body = makePostback({ click_id: clickId, status: "approved" });
    const asAdmin = await explain(network, body, true);
    expect(asAdmin.attribution).toMatchObject({
      verdict: "click",
      offer_id: offer.id,
      partner_id: alice.id,
      attribution_window_days: 14,
      payout: { amount: "5.00", currency: "USD", previous: null },
    });
    const verdicts = Object.fromEntries(asAdmin.partners.map((p) => [p.partner_id, p]));
    expect(verdicts[alice.id]).toMatchObject({ notified: true });
    expect(verdicts[warehouse.id]).toMatchObject({ notified: true });
    expect(verdicts[bob.id]).toMatchObject({
      notified: false,
      reason: "is an attributed partner, and this conversion is not attributed to it",
    });
    // The network itself learns whose conversion it is, but not what the partner is paid.
    const asNetwork = await explain(network, body, false);
    expect(asNetwork.attribution).toMatchObject({ verdict: "click", partner_id: alice.id });
    expect(asNetwork.attribution).not.toHaveProperty("payout");
    // A dry run: nothing was recorded.
    expect(await conversionInD1(network.id, String(body.transaction_id))).toBeNull();
  });

  it("explains a forged click id as click_invalid", async () => {
    const { network, alice, offer } = await setUp();
    const real = await clickFor(offer, alice.id);
    const forged = `${real.slice(0, 40)}${real[40] === "0" ? "1" : "0"}${real.slice(41)}`;
    const explained = await explain(network, makePostback({ click_id: forged }), true);
    expect(explained.attribution).toMatchObject({ verdict: "click_invalid", partner_id: null, payout: null });
  });
});

describe("a tracker naming its affiliate in a GET", () => {
  it("reads aff_id as the partner the network names", async () => {
    const tag = uniqueId("attr");
    const network = await createInboundNetwork({ auth: { methods: ["token"], ip_allowlist: [] } });
    const erin = await attributedPartner(`${tag}/erin`);
    await seedOffer(network.id, {
      campaign_id: "camp-get",
      payouts: { default: [{ fixed: { amount: "1.5", currency: "USD" } }], partners: {} },
    });
    const tx = uniqueId("tx");
    const response = await exports.default.fetch(
      postbackUrl(network.id, {
        txid: tx,
        status: "approved",
        campaign_id: "camp-get",
        aff_id: erin.id,
        token: tokenOf(network),
      }),
    );
    await expectStatus(response, 200);
    const row = await recorded({ id: network.id, secret: "" }, tx);
    expect(row).toMatchObject({
      attribution: "direct",
      partner_id: erin.id,
      attributed_partner_id: erin.id,
      payout: "1.50",
    });
    const [told] = await received(`${tag}/erin`, 1);
    expect(told).toMatchObject({ tx, by: "direct", payout: "1.50", p: erin.id });
  });
});

describe("an erased click id", () => {
  it("keeps the conversion's partner: it still hears of the reversal, with its payout taken back", async () => {
    const { tag, network, alice, offer } = await setUp();
    const clickId = await clickFor(offer, alice.id, "&sub1=to-erase");
    await eventually(async () => ((await clickRows(offer.id)).length > 0 ? true : null));
    const tx = uniqueId("tx");
    await expectStatus(await postback(network, makePostback({ transaction_id: tx, click_id: clickId })), 200);
    await received(`${tag}/alice`, 1);
    await expectStatus(
      await admin("/v1/erasure", { method: "POST", body: JSON.stringify({ click_id: clickId }) }),
      201,
    );
    expect(String((await conversionInD1(network.id, tx))?.click_id)).toMatch(/^erased:/);
    expect(await clickRows(offer.id)).toMatchObject([{ sub1: null, ip_prefix: null }]);

    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, status: "reversed", click_id: undefined })),
      200,
    );
    const told = await received(`${tag}/alice`, 2);
    expect(told[1]).toMatchObject({ tx, status: "reversed", payout: "0.00", was: "5.00", by: "click", p: alice.id });
    const row = await recorded(network, tx);
    expect(row).toMatchObject({ status: "reversed", attribution: "click", attributed_partner_id: alice.id });
    expect(String(row.attribution_detail)).toContain("kept: the click id was erased since");
  });
});
