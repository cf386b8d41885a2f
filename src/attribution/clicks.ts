/**
 * A click on a tracking link, as plain functions: whether it counts, where it lands, what of it
 * is kept. The route (routes/clicks.ts) mints the id and redirects; everything stored is sent to
 * the CLICKS queue after the answer and written by queues/clicks-consumer.ts.
 */
import Bowser from "bowser";
import { isbot } from "isbot";
import { type Click, type ClickSeen, SUB_ID_MAX_LENGTH } from "../domain/click";
import { SUB_ID_NAMES, type SubIdName } from "../domain/offer";
import { truncatedAddress } from "../lib/cidr";
import { renderLandingUrl } from "./landing-url";

/**
 * Why a request is redirected but not counted: a HEAD (link checkers, unfurlers), a browser's
 * speculative prefetch, or a client that says it is a crawler (isbot's list) or says nothing.
 * A bot still reaches the landing page; it just earns no click id a conversion could credit.
 */
export function uncountedReason(request: Request): "head" | "prefetch" | "bot" | null {
  if (request.method === "HEAD") return "head";
  const purpose = request.headers.get("sec-purpose") ?? request.headers.get("purpose") ?? "";
  if (/prefetch|prerender/i.test(purpose)) return "prefetch";
  const userAgent = request.headers.get("user-agent");
  if (!userAgent || isbot(userAgent)) return "bot";
  return null;
}

export type SubIds = Partial<Record<SubIdName, string>>;

/** The sub ids a tracking link passed, or the first name whose value is too long. */
export function readSubIds(query: URLSearchParams): { ok: true; subIds: SubIds } | { ok: false; name: SubIdName } {
  const subIds: SubIds = {};
  for (const name of SUB_ID_NAMES) {
    const value = query.get(name);
    if (value === null || value === "") continue;
    if (value.length > SUB_ID_MAX_LENGTH) return { ok: false, name };
    subIds[name] = value;
  }
  return { ok: true, subIds };
}

export interface LandingValues {
  click_id: string;
  offer_id: string;
  partner_id: string;
  subIds: SubIds;
}

/** The offer's landing URL with the click's values filled in (landing-url.ts, each percent-encoded). */
export function landingUrl(template: string, values: LandingValues): string {
  return renderLandingUrl(template, {
    click_id: values.click_id,
    offer_id: values.offer_id,
    partner_id: values.partner_id,
    ...values.subIds,
  });
}

/** What the queue carries: the client address already truncated, the referrer already an origin. */
export function clickSeen(request: Request, values: LandingValues, clickedAtSeconds: number): ClickSeen {
  const cf = (request as { cf?: { country?: unknown } }).cf;
  const ip = request.headers.get("cf-connecting-ip");
  return {
    click_id: values.click_id,
    offer_id: values.offer_id,
    partner_id: values.partner_id,
    clicked_at: new Date(clickedAtSeconds * 1000).toISOString(),
    sub_ids: values.subIds,
    country: typeof cf?.country === "string" ? cf.country : null,
    user_agent: request.headers.get("user-agent")?.slice(0, 512) ?? null,
    referrer: originOf(request.headers.get("referer")),
    ip_prefix: ip ? truncatedAddress(ip) : null,
  };
}

/** The stored click: the User-Agent reduced to device class, OS and browser family. */
export function clickRecord(message: ClickSeen): Click {
  const agent = message.user_agent ? Bowser.parse(message.user_agent) : null;
  return {
    click_id: message.click_id,
    offer_id: message.offer_id,
    partner_id: message.partner_id,
    clicked_at: message.clicked_at,
    sub1: message.sub_ids.sub1 ?? null,
    sub2: message.sub_ids.sub2 ?? null,
    sub3: message.sub_ids.sub3 ?? null,
    sub4: message.sub_ids.sub4 ?? null,
    sub5: message.sub_ids.sub5 ?? null,
    country: message.country,
    device: agent?.platform.type ?? null,
    os: agent?.os.name ?? null,
    browser: agent?.browser.name ?? null,
    referrer: message.referrer,
    ip_prefix: message.ip_prefix,
  };
}

function originOf(referrer: string | null): string | null {
  if (!referrer || !URL.canParse(referrer)) return null;
  const origin = new URL(referrer).origin;
  return origin === "null" ? null : origin;
}
