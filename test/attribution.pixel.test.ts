/**
 * The browser pixel: authenticated by the offer's click id and allowed origins, recorded with
 * source pixel in the same conversion as the network's postback, which confirms it without ever
 * making a second conversion; partners hear of a pixel-only conversion only if the offer says so.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Offer } from "../src/domain/offer";
import { mintClickId } from "../src/lib/click-id";
import { hmacKey } from "../src/lib/keys";
import { click, clickIdOf, seedOffer } from "./support/attribution";
import {
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

const SHOP = "https://shop.example";

async function setUp(notify: boolean, extra: Partial<Offer> = {}) {
  const tag = uniqueId("pixel");
  const network = await createNetwork();
  const partner = await createPartner({
    url_template: `${PARTNER}/ok/${tag}?tx={transaction_id}&status={status}&payout={payout}&was={previous_payout}&source={source}&verdict={verdict}`,
    routing: "attributed",
  });
  const offer = await seedOffer(network.id, {
    pixel: { allowed_origins: [SHOP], notify_before_confirmation: notify },
    payouts: { default: [{ fixed: { amount: "4", currency: "USD" } }], partners: {} },
    ...extra,
  });
  const clickId = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}`));
  return { tag, network, partner, offer, clickId };
}

async function recordedPixel(response: Response): Promise<Response> {
  expect(response.status, await response.clone().text()).toBe(200);
  return response;
}

function firePixel(
  offerId: string,
  params: Record<string, string>,
  headers: Record<string, string> = { referer: `${SHOP}/thank-you?order=1` },
) {
  const query = new URLSearchParams(params);
  return exports.default.fetch(new Request(`${BASE}/p/${offerId}.gif?${query}`, { headers }));
}

async function told(tag: string, count: number) {
  const log = await eventually(async () => {
    const entries = await partnerLog(`/ok/${tag}`);
    return entries.length >= count ? entries : null;
  });
  return log.map((entry) => Object.fromEntries(new URL(entry.url).searchParams));
}

/** Waits for the conversion's D1 row to show `check`, then a moment for any delivery it caused. */
async function settled(networkId: string, tx: string, check: (row: Record<string, unknown>) => boolean) {
  return eventually(async () => {
    const row = await conversionInD1(networkId, tx);
    return row && check(row) ? row : null;
  });
}

describe("GET /p/{offer_id}.gif", () => {
  it("records a pixel from an allowed page as the click's conversion, answering a GIF nothing caches", async () => {
    const { network, partner, offer, clickId } = await setUp(false);
    const tx = uniqueId("tx");
    const response = await firePixel(offer.id, {
      click_id: clickId,
      transaction_id: tx,
      amount: "19.90",
      currency: "usd",
    });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(response.headers.get("content-type")).toBe("image/gif");
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("x-postback-status")).toBe("accepted");
    const bytes = new Uint8Array(await response.arrayBuffer());
    expect(new TextDecoder().decode(bytes.subarray(0, 6))).toBe("GIF89a");
    const row = await settled(network.id, tx, (r) => r.attribution !== null);
    expect(row).toMatchObject({
      source: "pixel",
      status: "pending",
      amount: "19.90",
      currency: "USD",
      click_id: clickId,
      attribution: "click",
      attributed_partner_id: partner.id,
    });
    // The same pixel again is a duplicate of it.
    const again = await firePixel(offer.id, {
      click_id: clickId,
      transaction_id: tx,
      amount: "19.90",
      currency: "usd",
    });
    expect(again.headers.get("x-postback-status")).toBe("duplicate");
  });

  it("waits for the network's postback before telling partners, then tells them once, as a new conversion", async () => {
    const { tag, network, partner, offer, clickId } = await setUp(false);
    const tx = uniqueId("tx");
    await recordedPixel(await firePixel(offer.id, { click_id: clickId, transaction_id: tx }));
    // Deliveries are written in the same D1 batch as the attribution: none was made.
    await settled(network.id, tx, (r) => r.attribution === "click");
    expect(await deliveriesOf(partner.id)).toEqual([]);
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status: "pending" })),
      200,
    );
    const [only] = await told(tag, 1);
    expect(only).toMatchObject({ tx, status: "pending", source: "s2s", verdict: "accepted", payout: "4.00" });
    const row = await settled(network.id, tx, (r) => r.source === "s2s");
    expect(row.status).toBe("pending");
    // One conversion, two events: the pixel's and the postback's.
    const { results } = await env.DB.prepare(
      "SELECT source, verdict FROM conversion_events WHERE network_id = ? AND transaction_id = ? ORDER BY seq",
    )
      .bind(network.id, tx)
      .all();
    expect(results).toEqual([
      { source: "pixel", verdict: "accepted" },
      { source: "s2s", verdict: "updated" },
    ]);
  });

  it("tells partners of the pixel at once when the offer says so, and not again for a confirmation that changes nothing", async () => {
    const { tag, network, partner, offer, clickId } = await setUp(true);
    const tx = uniqueId("tx");
    await recordedPixel(await firePixel(offer.id, { click_id: clickId, transaction_id: tx }));
    const [first] = await told(tag, 1);
    expect(first).toMatchObject({ tx, status: "pending", source: "pixel", verdict: "accepted", payout: "4.00" });
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status: "pending" })),
      200,
    );
    await settled(network.id, tx, (r) => r.source === "s2s");
    expect(await deliveriesOf(partner.id)).toHaveLength(1);
    // Then a real change: approved.
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status: "approved" })),
      200,
    );
    const all = await told(tag, 2);
    expect(all.map((r) => [r.status, r.source, r.verdict])).toEqual([
      ["pending", "pixel", "accepted"],
      ["approved", "s2s", "updated"],
    ]);
    expect(await deliveriesOf(partner.id)).toHaveLength(2);
  });

  it("never lets a pixel overrule the network's postback", async () => {
    const { network, offer, clickId } = await setUp(false);
    const tx = uniqueId("tx");
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status: "approved" })),
      200,
    );
    const response = await firePixel(offer.id, { click_id: clickId, transaction_id: tx, status: "pending" });
    expect(response.headers.get("x-postback-status")).toBe("stale");
    const row = await settled(network.id, tx, (r) => r.attribution !== null);
    expect(row).toMatchObject({ status: "approved", source: "s2s" });
  });
});

describe("pixels the hub refuses", () => {
  async function refused(response: Response, status: number, code: string, locations: string[]) {
    expectLocations(await expectProblem(response, status, code), locations);
  }

  it("refuses a page the offer does not allow, and any pixel for an offer that allows none", async () => {
    const { offer, clickId } = await setUp(false);
    const tx = uniqueId("tx");
    await refused(
      await firePixel(offer.id, { click_id: clickId, transaction_id: tx }, { referer: "https://evil.example/x" }),
      403,
      "forbidden_origin",
      ["header.origin"],
    );
    await refused(await firePixel(offer.id, { click_id: clickId, transaction_id: tx }, {}), 403, "forbidden_origin", [
      "header.referer",
    ]);
    const closed = await setUp(false, { pixel: { allowed_origins: [], notify_before_confirmation: false } });
    await refused(
      await firePixel(closed.offer.id, { click_id: closed.clickId, transaction_id: tx }),
      403,
      "forbidden_origin",
      [],
    );
    expect(await conversionInD1(offer.network_id, tx)).toBeNull();
  });

  it("refuses a pixel without a click id of this offer", async () => {
    const { offer, clickId } = await setUp(false);
    const other = await setUp(false);
    const tx = uniqueId("tx");
    const forged = clickId.slice(0, -1) + (clickId.endsWith("0") ? "1" : "0");
    const attempts: Record<string, string>[] = [
      { transaction_id: tx },
      { click_id: forged, transaction_id: tx },
      { click_id: other.clickId, transaction_id: tx },
    ];
    for (const params of attempts) {
      await refused(await firePixel(offer.id, params), 401, "unauthorized", ["query.click_id"]);
    }
    expect(await conversionInD1(offer.network_id, tx)).toBeNull();
  });

  it("names each invalid field, and stores nothing", async () => {
    const { offer, clickId } = await setUp(false);
    await refused(await firePixel(offer.id, { click_id: clickId, amount: "12" }), 422, "validation_failed", [
      "query.transaction_id",
    ]);
    const tx = uniqueId("tx");
    await refused(
      await firePixel(offer.id, { click_id: clickId, transaction_id: tx, amount: "-3", currency: "XXXX" }),
      422,
      "validation_failed",
      ["query.amount", "query.currency"],
    );
    expect(await conversionInD1(offer.network_id, tx)).toBeNull();
  });

  it("answers 404 for an unknown offer and 410 for a paused one", async () => {
    const network = await createNetwork();
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("paused")}`, routing: "attributed" });
    const pausedOffer = await seedOffer(network.id, {
      status: "paused",
      pixel: { allowed_origins: [SHOP], notify_before_confirmation: true },
    });
    const key = await hmacKey(env.ENCRYPTION_KEY, "click-id v1");
    const pausedClick = await mintClickId(key, {
      offer_id: pausedOffer.id,
      partner_id: partner.id,
      clicked_at: Math.floor(Date.now() / 1000),
    });
    await refused(
      await firePixel("ofr_01jd5x4m2k8c7r1q0s9t6v3w2y", { click_id: "x", transaction_id: "t" }),
      404,
      "not_found",
      ["path.offer_id"],
    );
    await refused(
      await firePixel(pausedOffer.id, { click_id: pausedClick, transaction_id: "t" }),
      410,
      "offer_paused",
      [],
    );
  });
});
