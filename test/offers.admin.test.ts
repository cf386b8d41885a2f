/**
 * The offers admin API through the real app and local D1: what an offer is created with and
 * answers (defaults, tracking link, click count), lists paged and by network, updates that replace
 * what they name and never the network, pause and resume, and every refusal: a 4xx problem naming
 * the field, with nothing stored.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app";
import { loadClickOffer } from "../src/attribution/click-targets";
import {
  ADMIN_TOKEN,
  admin,
  BASE,
  createNetwork,
  createOffer,
  createPartner,
  expectStatus,
  PARTNER,
  type TestOffer,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

interface OfferPage {
  data: (Omit<TestOffer, "clicks"> & { clicks?: number })[];
  next_cursor: string | null;
}

const LANDING = "https://shop.test/landing?clickid={click_id}";
/** A well-formed partner id that no partner has. */
const NO_SUCH_PARTNER = "ptn_01jd5x4m2k8c7r1q0s9t6v3w2y";

function post(body: Record<string, unknown>): Promise<Response> {
  return admin("/v1/offers", { method: "POST", body: JSON.stringify(body) });
}

function patch(id: string, body: Record<string, unknown>): Promise<Response> {
  return admin(`/v1/offers/${id}`, { method: "PATCH", body: JSON.stringify(body) });
}

async function getOffer(id: string): Promise<TestOffer> {
  return expectStatus<TestOffer>(await admin(`/v1/offers/${id}`), 200);
}

async function offersOf(networkId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM offers WHERE network_id = ?")
    .bind(networkId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

function partnerUrl(): string {
  return `${PARTNER}/offers/${uniqueId("p")}?tx={transaction_id}`;
}

describe("POST /v1/offers", () => {
  it("creates an active offer with the defaults, its tracking link and no clicks", async () => {
    const network = await createNetwork();
    const created = await expectStatus<TestOffer>(
      await post({ network_id: network.id, name: "  Spring sale  ", landing_url: LANDING }),
      201,
    );
    expect(created.id).toMatch(/^ofr_[0-9a-hjkmnp-tv-z]{26}$/);
    expect(created).toMatchObject({
      network_id: network.id,
      name: "Spring sale",
      status: "active",
      landing_url: LANDING,
      attribution_window_days: 30,
      campaign_id: null,
      revenue: [],
      payouts: { default: [], partners: {} },
      partners: null,
      pixel: { allowed_origins: [], notify_before_confirmation: false },
      clicks: 0,
      tracking_link: `${BASE}/c/${created.id}?p={partner_id}`,
    });
    expect(created.created_at).toBe(created.updated_at);
    expect(await getOffer(created.id)).toEqual(created);
  });

  it("keeps every field it is given, with currencies upper-cased and event types lower-cased", async () => {
    const network = await createNetwork();
    const [first, second] = [
      await createPartner({ url_template: partnerUrl() }),
      await createPartner({ url_template: partnerUrl() }),
    ];
    if (!first || !second) throw new Error("no partners");
    const created = await createOffer({
      network_id: network.id,
      landing_url: "https://shop.test/p/{offer_id}?clk={click_id}&aff={partner_id}&s={sub1}{sub2}{sub3}{sub4}{sub5}",
      attribution_window_days: 7,
      campaign_id: "camp-all",
      revenue: [{ event_type: "Purchase", percent: "12.5" }],
      payouts: {
        default: [
          { event_type: "purchase", status: "approved", fixed: { amount: "2.50", currency: "usd" }, percent: "5" },
          { fixed: { amount: "0.40", currency: "EUR" } },
        ],
        partners: { [first.id]: [{ percent: "50" }] },
      },
      partners: [first.id, second.id],
      pixel: { allowed_origins: ["https://shop.test"], notify_before_confirmation: true },
    });
    expect(created).toMatchObject({
      attribution_window_days: 7,
      campaign_id: "camp-all",
      revenue: [{ event_type: "purchase", percent: "12.5" }],
      payouts: {
        default: [
          { event_type: "purchase", status: "approved", fixed: { amount: "2.50", currency: "USD" }, percent: "5" },
          { fixed: { amount: "0.40", currency: "EUR" } },
        ],
        partners: { [first.id]: [{ percent: "50" }] },
      },
      partners: [first.id, second.id],
      pixel: { allowed_origins: ["https://shop.test"], notify_before_confirmation: true },
    });
    expect(await getOffer(created.id)).toEqual(created);
  });

  it("builds the tracking link from the origin the request was sent to", async () => {
    const network = await createNetwork();
    const response = await createApp().fetch(
      new Request("https://track.example.net/v1/offers", {
        method: "POST",
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
        body: JSON.stringify({ network_id: network.id, name: "Elsewhere", landing_url: LANDING }),
      }),
      env,
    );
    const created = await expectStatus<TestOffer>(response, 201);
    expect(created.tracking_link).toBe(`https://track.example.net/c/${created.id}?p={partner_id}`);
  });

  it("accepts an http landing URL only when ALLOW_INSECURE_PARTNER_URLS is true", async () => {
    const network = await createNetwork();
    const send = (allow: string) =>
      createApp().fetch(
        new Request(`${BASE}/v1/offers`, {
          method: "POST",
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
          body: JSON.stringify({
            network_id: network.id,
            name: "Local shop",
            landing_url: "http://localhost:3000/?c={click_id}",
          }),
        }),
        { ...env, ALLOW_INSECURE_PARTNER_URLS: allow },
      );
    const refused = await expectProblem(await send("false"), 422, "validation_failed");
    expect(refused.errors).toEqual([
      { location: "body.landing_url", message: expect.stringMatching(/must use https.*ALLOW_INSECURE_PARTNER_URLS/) },
    ]);
    expect(await offersOf(network.id)).toBe(0);
    await expectStatus(await send("true"), 201);
    expect(await offersOf(network.id)).toBe(1);
  });
});

describe("refusals: a problem naming the field, and nothing stored", () => {
  const long = (n: number) => "x".repeat(n);
  const cases: [string, Record<string, unknown>, string, RegExp?][] = [
    ["no network_id", { network_id: undefined }, "body.network_id"],
    ["a malformed network_id", { network_id: "Not A Network!" }, "body.network_id"],
    ["an unknown network", { network_id: "no-such-network" }, "body.network_id", /no such network/],
    ["no name", { name: undefined }, "body.name"],
    ["a blank name", { name: "   " }, "body.name"],
    ["a name over 200 characters", { name: long(201) }, "body.name"],
    ["no landing_url", { landing_url: undefined }, "body.landing_url"],
    [
      "a landing_url without {click_id}",
      { landing_url: "https://shop.test/?aff={partner_id}" },
      "body.landing_url",
      /^must contain \{click_id\}/,
    ],
    [
      "a landing_url with an unknown macro",
      { landing_url: "https://shop.test/?c={click_id}&x={clickid}" },
      "body.landing_url",
      /unknown macro \{clickid\}; known: \{click_id\}, \{partner_id\}, \{offer_id\}, \{sub1\}, \{sub2\}, \{sub3\}, \{sub4\}, \{sub5\}/,
    ],
    ["an http landing_url", { landing_url: "http://shop.test/?c={click_id}" }, "body.landing_url", /must use https/],
    [
      "a javascript: landing_url",
      { landing_url: "javascript:alert({click_id})" },
      "body.landing_url",
      /must use https/,
    ],
    ["a relative landing_url", { landing_url: "/landing?c={click_id}" }, "body.landing_url", /valid absolute URL/],
    [
      "a macro in the landing host",
      { landing_url: "https://{sub1}.shop.test/?c={click_id}" },
      "body.landing_url",
      /scheme or host/,
    ],
    [
      "credentials in the landing URL",
      { landing_url: "https://shop.test@evil.test/?c={click_id}" },
      "body.landing_url",
      /user name/,
    ],
    [
      "a landing_url over 2048 characters",
      { landing_url: `https://shop.test/?c={click_id}&p=${long(2048)}` },
      "body.landing_url",
    ],
    ["an attribution window of 0 days", { attribution_window_days: 0 }, "body.attribution_window_days"],
    ["an attribution window of 366 days", { attribution_window_days: 366 }, "body.attribution_window_days"],
    ["a fractional attribution window", { attribution_window_days: 1.5 }, "body.attribution_window_days"],
    ["an empty campaign_id", { campaign_id: "" }, "body.campaign_id"],
    ["a campaign_id over 128 characters", { campaign_id: long(129) }, "body.campaign_id"],
    [
      "a revenue rule without a price",
      { revenue: [{ event_type: "purchase" }] },
      "body.revenue[0]",
      /fixed, percent or both/,
    ],
    ["a float amount", { revenue: [{ fixed: { amount: 2.5, currency: "USD" } }] }, "body.revenue[0].fixed.amount"],
    [
      "an unknown currency",
      { revenue: [{ fixed: { amount: "2.50", currency: "XYZ" } }] },
      "body.revenue[0].fixed.currency",
    ],
    ["a percent over 100", { payouts: { default: [{ percent: "100.5" }] } }, "body.payouts.default[0].percent"],
    [
      "a payout rule for declined",
      { payouts: { default: [{ status: "declined", percent: "5" }] } },
      "body.payouts.default[0].status",
    ],
    [
      "a malformed partner id in payouts",
      { payouts: { partners: { "not-a-partner": [] } } },
      "body.payouts.partners.not-a-partner",
    ],
    [
      "an unknown partner in payouts",
      { payouts: { partners: { [NO_SUCH_PARTNER]: [{ percent: "5" }] } } },
      `body.payouts.partners.${NO_SUCH_PARTNER}`,
      /no such partner/,
    ],
    ["an unknown partner in partners", { partners: [NO_SUCH_PARTNER] }, "body.partners[0]", /no such partner/],
    ["a malformed partner in partners", { partners: ["nope"] }, "body.partners[0]"],
    [
      "a pixel origin with a path",
      { pixel: { allowed_origins: ["https://shop.test/cart"] } },
      "body.pixel.allowed_origins[0]",
    ],
    ["an unknown field", { payout: "2.50" }, "body.payout", /not a known field/],
    ["a status (set by pause and resume)", { status: "paused" }, "body.status"],
  ];

  it.each(cases)("%s", async (_, overrides, location, message) => {
    const network = await createNetwork();
    const body: Record<string, unknown> = { network_id: network.id, name: uniqueId("offer"), landing_url: LANDING };
    for (const [key, value] of Object.entries(overrides)) {
      if (value === undefined) delete body[key];
      else body[key] = value;
    }
    const problem = await expectProblem(await post(body), 422, "validation_failed");
    expectLocations(problem, [location]);
    if (message) {
      const named = problem.errors.filter((error) => error.location === location).map((error) => error.message);
      expect(named, JSON.stringify(problem)).toEqual(expect.arrayContaining([expect.stringMatching(message)]));
    }
    expect(await offersOf(network.id)).toBe(0);
    if (typeof body.network_id === "string") expect(await offersOf(body.network_id)).toBe(0);
  });

  it("names every problem in one answer, the landing URL's included when other fields fail the schema", async () => {
    const network = await createNetwork();
    const problem = await expectProblem(
      await post({
        network_id: network.id,
        name: "",
        landing_url: "http://shop.test/?x={nope}",
        attribution_window_days: 0,
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.name", "body.attribution_window_days", "body.landing_url"]);
    const landing = problem.errors.filter((error) => error.location === "body.landing_url").map((e) => e.message);
    expect(landing).toEqual([
      expect.stringMatching(/^unknown macro \{nope\}/),
      expect.stringMatching(/^must contain \{click_id\}/),
      expect.stringMatching(/must use https/),
    ]);
    expect(await offersOf(network.id)).toBe(0);
  });

  it("refuses a body that is not JSON", async () => {
    const response = await admin("/v1/offers", { method: "POST", body: "{nope" });
    await expectProblem(response, 400, "malformed_json");
  });

  it("refuses a campaign_id another offer of the network has (409), but not one of another network", async () => {
    const network = await createNetwork();
    const first = await createOffer({ network_id: network.id, campaign_id: "camp-1" });
    const problem = await expectProblem(
      await post({ network_id: network.id, name: "Copy", landing_url: LANDING, campaign_id: "camp-1" }),
      409,
      "already_exists",
    );
    expectLocations(problem, ["body.campaign_id"]);
    expect(problem.detail).toContain(first.id);
    expect(await offersOf(network.id)).toBe(1);
    // Offers without a campaign id never collide.
    await createOffer({ network_id: network.id });
    await createOffer({ network_id: network.id });
    const elsewhere = await createOffer({ campaign_id: "camp-1" });
    expect(elsewhere.campaign_id).toBe("camp-1");
  });

  it("refuses a request without the admin token, and stores nothing", async () => {
    const network = await createNetwork();
    const body = JSON.stringify({ network_id: network.id, name: "Stranger", landing_url: LANDING });
    const response = await createApp().fetch(
      new Request(`${BASE}/v1/offers`, { method: "POST", headers: { "content-type": "application/json" }, body }),
      env,
    );
    await expectProblem(response, 401, "unauthorized");
    expect(await offersOf(network.id)).toBe(0);
  });
});

describe("GET /v1/offers/{offer_id}", () => {
  it("counts the offer's clicks, every partner's", async () => {
    const offer = await createOffer();
    const other = await createOffer();
    const click = (offerId: string, partnerId: string) =>
      env.DB.prepare(
        "INSERT INTO clicks (click_id, offer_id, partner_id, clicked_at, recorded_at) VALUES (?, ?, ?, ?, ?)",
      ).bind(uniqueId("clk"), offerId, partnerId, new Date().toISOString(), new Date().toISOString());
    await env.DB.batch([
      click(offer.id, "ptn_a"),
      click(offer.id, "ptn_a"),
      click(offer.id, "ptn_b"),
      click(other.id, "ptn_a"),
    ]);
    expect((await getOffer(offer.id)).clicks).toBe(3);
    expect((await getOffer(other.id)).clicks).toBe(1);
  });

  it("answers 404 naming the path parameter for an unknown offer", async () => {
    const problem = await expectProblem(await admin(`/v1/offers/${uniqueId("ofr")}`), 404, "not_found");
    expectLocations(problem, ["path.offer_id"]);
  });
});

describe("GET /v1/offers", () => {
  it("pages through a network's offers in id order, and only that network's", async () => {
    const network = await createNetwork();
    const mine = [];
    for (let i = 0; i < 5; i++) mine.push(await createOffer({ network_id: network.id }));
    await createOffer();
    const seen: OfferPage["data"] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query = new URLSearchParams({ network_id: network.id, limit: "2" });
      if (cursor) query.set("cursor", cursor);
      const body: OfferPage = await expectStatus<OfferPage>(await admin(`/v1/offers?${query}`), 200);
      expect(body.data.length).toBeLessThanOrEqual(2);
      seen.push(...body.data);
      cursor = body.next_cursor;
      pages += 1;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen.map((offer) => offer.id)).toEqual(mine.map((offer) => offer.id).sort());
    for (const item of seen) {
      const { clicks: _, ...created } = mine.find((offer) => offer.id === item.id) ?? ({} as TestOffer);
      expect(item).toEqual(created);
    }
  });

  it("lists every network's offers without a filter", async () => {
    const [a, b] = [await createOffer(), await createOffer()];
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=200&cursor=${cursor}` : "?limit=200";
      const body: OfferPage = await expectStatus<OfferPage>(await admin(`/v1/offers${query}`), 200);
      ids.push(...body.data.map((offer) => offer.id));
      cursor = body.next_cursor;
    } while (cursor !== null);
    expect(ids).toEqual(expect.arrayContaining([a.id, b.id]));
  });

  it("refuses a bad filter, limit or cursor, naming the parameter", async () => {
    expectLocations(await expectProblem(await admin("/v1/offers?network_id=Bad!"), 422, "validation_failed"), [
      "query.network_id",
    ]);
    expectLocations(await expectProblem(await admin("/v1/offers?limit=0"), 422, "validation_failed"), ["query.limit"]);
    expectLocations(await expectProblem(await admin("/v1/offers?cursor=forged"), 400, "invalid_request"), [
      "query.cursor",
    ]);
  });
});

describe("PATCH /v1/offers/{offer_id}", () => {
  it("replaces the fields it names, keeps the others, and moves updated_at", async () => {
    const partner = await createPartner({ url_template: partnerUrl() });
    const offer = await createOffer({
      campaign_id: "camp-patch",
      payouts: { default: [{ percent: "10" }] },
      pixel: { allowed_origins: ["https://shop.test"], notify_before_confirmation: true },
    });
    const updated = await expectStatus<TestOffer>(
      await patch(offer.id, {
        name: "Renamed",
        landing_url: "https://shop.test/new?c={click_id}",
        attribution_window_days: 90,
        campaign_id: null,
        partners: [partner.id],
        payouts: { partners: { [partner.id]: [{ fixed: { amount: "1", currency: "JPY" } }] } },
        pixel: { allowed_origins: [] },
      }),
      200,
    );
    expect(updated).toMatchObject({
      id: offer.id,
      network_id: offer.network_id,
      name: "Renamed",
      status: "active",
      landing_url: "https://shop.test/new?c={click_id}",
      attribution_window_days: 90,
      campaign_id: null,
      revenue: [],
      // Sent whole: the default list and notify_before_confirmation fall back to their defaults.
      payouts: { default: [], partners: { [partner.id]: [{ fixed: { amount: "1", currency: "JPY" } }] } },
      partners: [partner.id],
      pixel: { allowed_origins: [], notify_before_confirmation: false },
      created_at: offer.created_at,
      tracking_link: offer.tracking_link,
    });
    expect(updated.updated_at >= offer.updated_at).toBe(true);
    expect(await getOffer(offer.id)).toEqual(updated);

    const cleared = await expectStatus<TestOffer>(await patch(offer.id, { partners: null }), 200);
    expect(cleared).toMatchObject({ partners: null, name: "Renamed", attribution_window_days: 90 });
  });

  it("never changes the network: a patch naming network_id is refused, naming it", async () => {
    const offer = await createOffer();
    const other = await createNetwork();
    const problem = await expectProblem(
      await patch(offer.id, { network_id: other.id, name: "Moved" }),
      422,
      "validation_failed",
    );
    expect(problem.errors).toEqual([
      { location: "body.network_id", message: expect.stringMatching(/^cannot be changed/) },
    ]);
    expect(await getOffer(offer.id)).toEqual(offer);
    expect(await offersOf(other.id)).toBe(0);
  });

  it.each([
    ["a landing_url without {click_id}", { landing_url: "https://shop.test/" }, "body.landing_url"],
    [
      "an unknown partner in payouts",
      { payouts: { partners: { [NO_SUCH_PARTNER]: [] } } },
      `body.payouts.partners.${NO_SUCH_PARTNER}`,
    ],
    ["an unknown partner in partners", { partners: [NO_SUCH_PARTNER] }, "body.partners[0]"],
    ["a null name", { name: null }, "body.name"],
    ["an attribution window over 365 days", { attribution_window_days: 400 }, "body.attribution_window_days"],
    ["a status", { status: "paused" }, "body.status"],
  ])("refuses %s and changes nothing", async (_, body, location) => {
    const offer = await createOffer();
    const problem = await expectProblem(await patch(offer.id, body), 422, "validation_failed");
    expectLocations(problem, [location]);
    expect(await getOffer(offer.id)).toEqual(offer);
  });

  it("refuses a campaign_id another offer of the network has (409), and changes nothing", async () => {
    const network = await createNetwork();
    await createOffer({ network_id: network.id, campaign_id: "camp-taken" });
    const offer = await createOffer({ network_id: network.id, campaign_id: "camp-mine" });
    const problem = await expectProblem(
      await patch(offer.id, { campaign_id: "camp-taken", name: "Thief" }),
      409,
      "already_exists",
    );
    expectLocations(problem, ["body.campaign_id"]);
    expect(await getOffer(offer.id)).toEqual(offer);
    // Its own campaign id again is no conflict.
    await expectStatus(await patch(offer.id, { campaign_id: "camp-mine" }), 200);
  });

  it("answers 404 for an unknown offer", async () => {
    const problem = await expectProblem(await patch(uniqueId("ofr"), { name: "x" }), 404, "not_found");
    expectLocations(problem, ["path.offer_id"]);
  });
});

describe("the click redirect's cache of offers", () => {
  it("sees every write at once in this isolate: patch, pause, resume", async () => {
    const offer = await createOffer();
    // A TTL far longer than the test: only the routes' invalidation can make the cache read D1 again.
    const cached = () => loadClickOffer(offer.id, { db: env.DB, ttlSeconds: 3600, nowMs: Date.now() });
    expect((await cached())?.name).toBe(offer.name);
    await expectStatus(await patch(offer.id, { name: "Fresh" }), 200);
    expect((await cached())?.name).toBe("Fresh");
    await expectStatus(await admin(`/v1/offers/${offer.id}/pause`, { method: "POST" }), 200);
    expect((await cached())?.status).toBe("paused");
    await expectStatus(await admin(`/v1/offers/${offer.id}/resume`, { method: "POST" }), 200);
    expect((await cached())?.status).toBe("active");
  });
});

describe("POST /v1/offers/{offer_id}/pause and /resume", () => {
  it("pause and resume set the status, and each is idempotent", async () => {
    const offer = await createOffer();
    const paused = await expectStatus<TestOffer>(await admin(`/v1/offers/${offer.id}/pause`, { method: "POST" }), 200);
    expect(paused).toMatchObject({ id: offer.id, status: "paused", name: offer.name, clicks: 0 });
    expect((await getOffer(offer.id)).status).toBe("paused");
    await expectStatus(await admin(`/v1/offers/${offer.id}/pause`, { method: "POST" }), 200);
    expect((await getOffer(offer.id)).status).toBe("paused");
    // A patch leaves the status alone.
    await expectStatus(await patch(offer.id, { name: "Still paused" }), 200);
    expect(await getOffer(offer.id)).toMatchObject({ status: "paused", name: "Still paused" });

    const resumed = await expectStatus<TestOffer>(
      await admin(`/v1/offers/${offer.id}/resume`, { method: "POST" }),
      200,
    );
    expect(resumed.status).toBe("active");
    expect(await getOffer(offer.id)).toEqual(resumed);
  });

  it("answers 404 for an unknown offer", async () => {
    for (const action of ["pause", "resume"]) {
      const response = await admin(`/v1/offers/${uniqueId("ofr")}/${action}`, { method: "POST" });
      expectLocations(await expectProblem(response, 404, "not_found"), ["path.offer_id"]);
    }
  });

  it("has no delete: pausing is the way", async () => {
    const offer = await createOffer();
    const response = await admin(`/v1/offers/${offer.id}`, { method: "DELETE" });
    expect(response.status).toBe(404);
    await response.body?.cancel();
    expect(await getOffer(offer.id)).toEqual(offer);
  });
});
