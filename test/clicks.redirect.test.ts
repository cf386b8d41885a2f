/**
 * Tracking links: the 302 with an authenticated click id, the click recorded after the answer
 * (sub ids, country, device class, referrer origin, truncated address), bots and prefetches
 * redirected but not counted, a click recorded twice still one click, and bad links refused with
 * nothing stored.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ClickMessage } from "../src/domain/click";
import worker from "../src/index";
import { CLICK_ID_LENGTH } from "../src/lib/click-id";
import { click, clickIdOf, clickRows, LANDING, PHONE_UA, readTestClickId, seedOffer } from "./support/attribution";
import { createNetwork, createPartner, eventually, PARTNER } from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

async function refused(response: Response, status: number, code: string, locations: string[]) {
  expectLocations(await expectProblem(response, status, code), locations);
}

async function setUp(overrides: Parameters<typeof seedOffer>[1] = {}) {
  const network = await createNetwork();
  const partner = await createPartner({ url_template: `${PARTNER}/clicks?tx={transaction_id}`, routing: "attributed" });
  const offer = await seedOffer(network.id, overrides);
  return { network, partner, offer };
}

describe("GET /c/{offer_id}", () => {
  it("redirects to the landing URL with a click id that proves offer, partner and time", async () => {
    const { partner, offer } = await setUp({
      landing_url: `${LANDING}?cid={click_id}&aff={partner_id}&o={offer_id}&s1={sub1}&s5={sub5}&keep=1`,
    });
    const before = Math.floor(Date.now() / 1000);
    const response = await click(`/c/${offer.id}?p=${partner.id}&sub1=${encodeURIComponent("spring sale&co")}`);
    expect(response.status, await response.clone().text()).toBe(302);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const location = new URL(response.headers.get("location") ?? "");
    expect(`${location.origin}${location.pathname}`).toBe(LANDING);
    expect(location.searchParams.get("aff")).toBe(partner.id);
    expect(location.searchParams.get("o")).toBe(offer.id);
    expect(location.searchParams.get("s1")).toBe("spring sale&co");
    expect(location.searchParams.get("s5")).toBe("");
    expect(location.searchParams.get("keep")).toBe("1");
    const clickId = clickIdOf(response);
    expect(clickId).toHaveLength(CLICK_ID_LENGTH);
    const reading = await readTestClickId(clickId);
    if (!reading.ok) throw new Error(`the hub's own click id does not verify: ${reading.reason}`);
    expect(reading.click.offer_id).toBe(offer.id);
    expect(reading.click.partner_id).toBe(partner.id);
    expect(reading.click.clicked_at).toBeGreaterThanOrEqual(before);
    expect(reading.click.clicked_at).toBeLessThanOrEqual(Math.floor(Date.now() / 1000));
  });

  it("gives every click its own id", async () => {
    const { partner, offer } = await setUp();
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add(clickIdOf(await click(`/c/${offer.id}?p=${partner.id}`)));
    expect(ids.size).toBe(5);
  });

  it("records the click after the answer: sub ids, country, device, referrer origin, a truncated address", async () => {
    const { partner, offer } = await setUp();
    const response = await click(`/c/${offer.id}?p=${partner.id}&sub1=banner-7&sub3=${"x".repeat(255)}`, {
      headers: {
        "user-agent": PHONE_UA,
        referer: "https://blog.example/reviews/best-shoes?utm=secret#top",
        "cf-connecting-ip": "203.0.113.77",
      },
    });
    const clickId = clickIdOf(response);
    const [row] = await eventually(async () => {
      const rows = await clickRows(offer.id);
      return rows.length > 0 ? rows : null;
    });
    expect(row).toMatchObject({
      click_id: clickId,
      offer_id: offer.id,
      partner_id: partner.id,
      sub1: "banner-7",
      sub2: null,
      sub3: "x".repeat(255),
      device: "mobile",
      os: "iOS",
      browser: "Safari",
      referrer: "https://blog.example",
      ip_prefix: "203.0.113.0/24",
    });
    const reading = await readTestClickId(clickId);
    expect(reading.ok && new Date(reading.click.clicked_at * 1000).toISOString()).toBe(row?.clicked_at);
  });

  it("keeps an IPv6 client's /48 only", async () => {
    const { partner, offer } = await setUp();
    await click(`/c/${offer.id}?p=${partner.id}`, { headers: { "cf-connecting-ip": "2001:db8:1234:5678:9abc::1" } });
    const [row] = await eventually(async () => {
      const rows = await clickRows(offer.id);
      return rows.length > 0 ? rows : null;
    });
    expect(row?.ip_prefix).toBe("2001:db8:1234::/48");
    expect(JSON.stringify(row)).not.toContain("5678");
  });

  it("redirects bots, HEAD requests and prefetches without counting them", async () => {
    const { partner, offer } = await setUp();
    const link = `/c/${offer.id}?p=${partner.id}`;
    const uncounted = [
      await click(link, { method: "HEAD" }),
      await click(link, {
        headers: { "user-agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)" },
      }),
      await click(link, { headers: { "user-agent": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)" } }),
      await click(link, { headers: { "user-agent": "" } }),
      await click(link, { headers: { "sec-purpose": "prefetch;prerender" } }),
      await click(link, { headers: { purpose: "prefetch" } }),
    ];
    for (const response of uncounted) {
      expect(response.status).toBe(302);
      expect(response.headers.get("location")).toContain(LANDING);
    }
    // One human click after them: once it is in D1, anything counted before it would be too.
    const human = clickIdOf(await click(link));
    const rows = await eventually(async () => {
      const found = await clickRows(offer.id);
      return found.some((r) => r.click_id === human) ? found : null;
    });
    expect(rows.map((r) => r.click_id)).toEqual([human]);
  });

  it("counts a click once however often its message arrives", async () => {
    const { partner, offer } = await setUp();
    const clickId = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}&sub2=twice`));
    await eventually(async () => ((await clickRows(offer.id)).length > 0 ? true : null));
    const [row] = await clickRows(offer.id);
    const again: ClickMessage = {
      v: 1,
      clicks: [
        {
          click_id: clickId,
          offer_id: offer.id,
          partner_id: partner.id,
          clicked_at: String(row?.clicked_at),
          sub_ids: { sub2: "changed on the way" },
          country: null,
          user_agent: null,
          referrer: null,
          ip_prefix: null,
        },
      ],
    };
    const batch = createMessageBatch(env.CLICKS_QUEUE_NAME, [
      { id: "m1", timestamp: new Date(), attempts: 1, body: again },
      { id: "m2", timestamp: new Date(), attempts: 2, body: again },
    ]);
    const ctx = createExecutionContext();
    const handler: ExportedHandler<Env> = worker;
    await handler.queue?.(batch, env, ctx);
    const result = await getQueueResult(batch, ctx);
    expect(result.ackAll).toBe(true);
    expect(result.retryMessages).toEqual([]);
    const rows = await clickRows(offer.id);
    expect(rows).toHaveLength(1);
    expect(rows[0]?.sub2).toBe("twice");
  });
});

describe("bad tracking links", () => {
  it("refuses a link without a partner, or with a malformed one", async () => {
    const { offer } = await setUp();
    await refused(await click(`/c/${offer.id}`), 400, "invalid_request", ["query.p"]);
    await refused(await click(`/c/${offer.id}?p=acme`), 400, "invalid_request", ["query.p"]);
  });

  it("answers 404 for an unknown offer or partner, and for a partner the offer does not list", async () => {
    const { partner, offer } = await setUp();
    const other = await createPartner({ url_template: `${PARTNER}/other` });
    const listed = await seedOffer(offer.network_id, { partners: [partner.id] });
    await refused(await click(`/c/ofr_01jd5x4m2k8c7r1q0s9t6v3w2y?p=${partner.id}`), 404, "not_found", [
      "path.offer_id",
    ]);
    await refused(await click(`/c/not-an-offer?p=${partner.id}`), 404, "not_found", ["path.offer_id"]);
    await refused(await click(`/c/${offer.id}?p=ptn_01jd5x4m2k8c7r1q0s9t6v3w2y`), 404, "not_found", ["query.p"]);
    await refused(await click(`/c/${listed.id}?p=${other.id}`), 404, "not_found", ["query.p"]);
    expect((await click(`/c/${listed.id}?p=${partner.id}`)).status).toBe(302);
  });

  it("answers 410 for a paused offer", async () => {
    const { partner, offer } = await setUp({ status: "paused" });
    await refused(await click(`/c/${offer.id}?p=${partner.id}`), 410, "offer_paused", []);
  });

  it("refuses a sub id longer than 255 characters, and counts nothing of a refused link", async () => {
    const { partner, offer } = await setUp();
    await refused(await click(`/c/${offer.id}?p=${partner.id}&sub4=${"y".repeat(256)}`), 400, "invalid_request", [
      "query.sub4",
    ]);
    await refused(await click(`/c/${offer.id}`), 400, "invalid_request", ["query.p"]);
    const good = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}`));
    const rows = await eventually(async () => {
      const found = await clickRows(offer.id);
      return found.some((r) => r.click_id === good) ? found : null;
    });
    expect(rows).toHaveLength(1);
  });
});

describe("the click id", () => {
  it("refuses forged, tampered, truncated and foreign ids", async () => {
    const { partner, offer } = await setUp();
    const id = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}`));
    expect((await readTestClickId(id.toUpperCase())).ok).toBe(true);
    const flip = (at: number) => id.slice(0, at) + (id[at] === "0" ? "1" : "0") + id.slice(at + 1);
    // The partner (char 27 onwards), the time, the random part and the MAC: each one changed fails.
    for (const at of [5, 30, 60, 65, 70, id.length - 1]) {
      expect(await readTestClickId(flip(at))).toEqual({ ok: false, reason: "forged" });
    }
    expect(await readTestClickId(id.slice(0, -1))).toEqual({ ok: false, reason: "malformed" });
    expect(await readTestClickId(`${id}0`)).toEqual({ ok: false, reason: "malformed" });
    expect(await readTestClickId(`2${id.slice(1)}`)).toEqual({ ok: false, reason: "malformed" });
    expect(await readTestClickId("clk_1f3a9")).toEqual({ ok: false, reason: "malformed" });
    // Minted under another hub's key: the same shape, a MAC that does not verify here.
    const { mintClickId } = await import("../src/lib/click-id");
    const { hmacKey } = await import("../src/lib/keys");
    const otherKey = await hmacKey("ZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY=", "click-id v1");
    const foreign = await mintClickId(otherKey, {
      offer_id: offer.id,
      partner_id: partner.id,
      clicked_at: 1_700_000_000,
    });
    expect(await readTestClickId(foreign)).toEqual({ ok: false, reason: "forged" });
  });
});
