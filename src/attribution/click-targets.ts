/**
 * What the click redirect knows of offers and partners, cached in the isolate for
 * NETWORK_CACHE_TTL_SECONDS (as networks are for ingest), so that a click in steady state costs no
 * D1 query before its 302. A miss reads D1 through a Sessions API session (a nearby replica).
 */
import type { Offer } from "../domain/offer";
import type { Partner } from "../domain/partner";
import { IsolateCache } from "../lib/isolate-cache";
import { getOffer } from "../storage/offers";
import { getPartner } from "../storage/partners";

/**
 * Only what a click needs of a partner: never its secrets or templates. A disabled partner's
 * links keep working (its postback endpoint failing is no reason to lose its traffic); its
 * deliveries wait until it is enabled.
 */
export type ClickPartner = Pick<Partner, "id">;

const offers = new IsolateCache<Offer | null>();
const partners = new IsolateCache<ClickPartner | null>();

export interface ClickTargetSource {
  db: D1Database;
  ttlSeconds: number;
  nowMs: number;
}

export function loadClickOffer(id: string, source: ClickTargetSource): Promise<Offer | null> {
  return offers.get(id, source.nowMs, source.ttlSeconds * 1000, () =>
    getOffer(source.db.withSession("first-unconstrained"), id),
  );
}

export function loadClickPartner(id: string, source: ClickTargetSource): Promise<ClickPartner | null> {
  return partners.get(id, source.nowMs, source.ttlSeconds * 1000, async () => {
    const partner = await getPartner(source.db.withSession("first-unconstrained"), id);
    return partner && { id: partner.id };
  });
}

/** After an admin write to the offer, so this isolate sees it at once; others within the TTL. */
export function invalidateClickOffer(id: string): void {
  offers.invalidate(id);
}

export function invalidateClickPartner(id: string): void {
  partners.invalidate(id);
}
