/**
 * Tracking links: `GET /c/{offer_id}?p={partner_id}&sub1=…` answers a 302 to the offer's landing
 * URL with a new click id. In steady state nothing waits before the answer but the isolate's
 * cache and one HMAC: no D1 query, no Durable Object call, no queue send (the click's record is
 * sent after the answer, packed with others; test/clicks.hot-path.test.ts proves it).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { loadClickOffer, loadClickPartner } from "../attribution/click-targets";
import { clickSeen, landingUrl, readSubIds, uncountedReason } from "../attribution/clicks";
import { configOf } from "../config";
import type { ClickMessage, ClickSeen } from "../domain/click";
import { OFFER_ID_PATTERN, SUB_ID_NAMES } from "../domain/offer";
import { PARTNER_ID_PATTERN } from "../domain/partner";
import { ProblemError } from "../errors";
import { mintClickId } from "../lib/click-id";
import { hmacKey } from "../lib/keys";
import { PackedSender } from "../lib/packed-sender";
import { type App, problem } from "./common";

/** Clicks of this isolate waiting to be sent, packed up to 200 to a message. */
const clicks = new PackedSender<ClickSeen, ClickMessage>({
  flushEveryMs: 250,
  itemsPerMessage: 200,
  messageBytes: 100_000,
  maxWaiting: 10_000,
  message: (seen) => ({ v: 1, clicks: seen }),
  what: "clicks",
});

const OfferPath = z.object({
  offer_id: z.string().openapi({ param: { name: "offer_id", in: "path" }, example: "ofr_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
});

const subIdParam = (name: string) =>
  z
    .string()
    .max(255)
    .optional()
    .openapi({ description: `A value the partner tracks (\`{${name}}\` in its postback).`, example: "banner-7" });

const ClickQuery = z.object({
  p: z.string().openapi({ description: "The partner whose link this is.", example: "ptn_01jd5x4m2k8c7r1q0s9t6v3w2z" }),
  ...Object.fromEntries(SUB_ID_NAMES.map((name) => [name, subIdParam(name)])),
});

export function registerClickRoutes(app: App): void {
  const route = createRoute({
    method: "get",
    path: "/c/{offer_id}",
    operationId: "followTrackingLink",
    tags: ["Tracking links"],
    summary: "Follow a partner's tracking link",
    // No credential: a visitor's browser follows it (the pixel proves itself by its click id and origin).
    security: [],
    description:
      "Redirects to the offer's landing URL with a new click id (and the partner, offer and sub ids) filled in. The click is counted after the answer; a HEAD, a prefetch or a crawler's User-Agent is redirected but not counted. Unauthenticated by design: the click id it mints is what a conversion is later attributed by.",
    request: { params: OfferPath, query: ClickQuery },
    responses: {
      302: {
        description: "To the landing page.",
        headers: { Location: { description: "The landing URL, filled in.", schema: { type: "string" as const } } },
      },
      400: problem("`p` is missing or not a partner id, or a sub id is longer than 255 characters."),
      404: problem("No such offer, no such partner, or the partner does not promote the offer."),
      410: problem("The offer is paused."),
    },
  });
  // Validation by hand: `p` and the sub ids are read; any other parameter is ignored (not passed on).
  app.get(route.path.replace("{offer_id}", ":offer_id"), async (c) => {
    const offerId = c.req.param("offer_id") ?? "";
    const query = new URL(c.req.url).searchParams;
    const partnerId = query.get("p");
    if (!partnerId || !PARTNER_ID_PATTERN.test(partnerId)) {
      throw new ProblemError("invalid_request", "A tracking link names its partner: ?p=ptn_….", [
        { location: "query.p", message: partnerId ? "must be a partner id (ptn_…)" : "is required" },
      ]);
    }
    const config = configOf(c.env);
    const nowMs = Date.now();
    const source = { db: c.env.DB, ttlSeconds: config.NETWORK_CACHE_TTL_SECONDS, nowMs };
    const [offer, partner] = await Promise.all([
      OFFER_ID_PATTERN.test(offerId) ? loadClickOffer(offerId, source) : null,
      loadClickPartner(partnerId, source),
    ]);
    if (!offer) {
      throw new ProblemError("not_found", `No offer "${offerId}".`, [
        { location: "path.offer_id", message: "not found" },
      ]);
    }
    if (!partner || (offer.partners !== null && !offer.partners.includes(partner.id))) {
      throw new ProblemError("not_found", `The offer has no partner "${partnerId}".`, [
        { location: "query.p", message: partner ? "does not promote this offer" : "not found" },
      ]);
    }
    if (offer.status === "paused") throw new ProblemError("offer_paused", `The offer "${offerId}" is paused.`);
    const read = readSubIds(query);
    if (!read.ok) {
      throw new ProblemError("invalid_request", `${read.name} is too long.`, [
        { location: `query.${read.name}`, message: "must be at most 255 characters" },
      ]);
    }
    const clickedAtSeconds = Math.floor(nowMs / 1000);
    const key = await hmacKey(config.ENCRYPTION_KEY, "click-id v1");
    const values = {
      click_id: await mintClickId(key, { offer_id: offer.id, partner_id: partner.id, clicked_at: clickedAtSeconds }),
      offer_id: offer.id,
      partner_id: partner.id,
      subIds: read.subIds,
    };
    if (uncountedReason(c.req.raw) === null) {
      const seen = clickSeen(c.req.raw, values, clickedAtSeconds);
      c.executionCtx.waitUntil(
        (async () => {
          // After the answer (a macrotask later): a flood from one address range is redirected
          // but not recorded.
          await new Promise((resolve) => setTimeout(resolve, 0));
          const key = `${offer.id}|${seen.ip_prefix ?? "unknown"}`;
          if (!(await c.env.CLICK_RECORD_LIMITER.limit({ key })).success) return;
          clicks.add(seen);
          await clicks.scheduleFlush(c.env.CLICKS);
        })(),
      );
    }
    // Every click has its own id: nothing on the way may keep this answer for another visitor.
    c.header("cache-control", "no-store");
    return c.redirect(landingUrl(offer.landing_url, values), 302);
  });
  app.openAPIRegistry.registerPath(route);
}
