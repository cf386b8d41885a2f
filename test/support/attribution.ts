/** Offers, clicks and click ids for the attribution tests. */
import { env, exports } from "cloudflare:workers";
import type { Offer } from "../../src/domain/offer";
import { newId } from "../../src/lib/bytes";
import { readClickId } from "../../src/lib/click-id";
import { hmacKey } from "../../src/lib/keys";
import { insertOffer } from "../../src/storage/offers";
import { BASE, uniqueId } from "./helpers";

export const LANDING = "https://shop.test/landing";

/** An offer written straight to D1 (the admin API's own tests cover creating one through it). */
export async function seedOffer(networkId: string, overrides: Partial<Offer> = {}): Promise<Offer> {
  const now = new Date().toISOString();
  const offer: Offer = {
    id: newId("ofr"),
    network_id: networkId,
    name: uniqueId("offer"),
    status: "active",
    landing_url: `${LANDING}?cid={click_id}&aff={partner_id}&s1={sub1}`,
    attribution_window_days: 30,
    campaign_id: null,
    revenue: [],
    payouts: { default: [], partners: {} },
    partners: null,
    pixel: { allowed_origins: [], notify_before_confirmation: false },
    created_at: now,
    updated_at: now,
    ...overrides,
  };
  await insertOffer(env.DB, offer);
  return offer;
}

/** A browser's User-Agent: counted as a click. */
export const BROWSER_UA =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
export const PHONE_UA =
  "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

/** Follows a tracking link the way a browser does (without following the redirect). */
export function click(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has("user-agent")) headers.set("user-agent", BROWSER_UA);
  return exports.default.fetch(new Request(`${BASE}${path}`, { redirect: "manual", ...init, headers }));
}

/** The click id a redirect carries in its landing URL's `cid` parameter. */
export function clickIdOf(response: Response): string {
  const location = response.headers.get("location");
  if (!location) throw new Error(`no Location in a ${response.status} answer`);
  const id = new URL(location).searchParams.get("cid");
  if (!id) throw new Error(`no click id in ${location}`);
  return id;
}

export async function readTestClickId(value: string) {
  return readClickId(await hmacKey(env.ENCRYPTION_KEY, "click-id v1"), value);
}

export function clickRows(offerId: string) {
  return env.DB.prepare("SELECT * FROM clicks WHERE offer_id = ? ORDER BY clicked_at, click_id")
    .bind(offerId)
    .all<Record<string, unknown>>()
    .then((r) => r.results);
}
