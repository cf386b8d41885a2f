/**
 * Attribution for one queue batch of events, in the events consumer: every click id read with the
 * hub's key (CPU only), then a few D1 reads for the whole batch, each only when needed (the offers
 * the clicks name, the offers the campaign ids name, the stored attribution of conversions whose
 * click id was erased, the payouts recorded before the credited events), then a verdict and a
 * payout per applied event. Nothing of it runs on the ingest path: the network's answer never waits for it.
 */
import { conversionKeyOf } from "../domain/conversion";
import { ERASED_PREFIX } from "../domain/erasure";
import type { EventMessage } from "../domain/messages";
import type { Offer } from "../domain/offer";
import type { DeliveryAttribution, Partner } from "../domain/partner";
import { type ClickIdReading, readClickId } from "../lib/click-id";
import type { D1 } from "../storage/d1";
import {
  type AttributionRecord,
  campaignKey,
  offersByCampaign,
  offersById,
  payoutsBefore,
  type RecordedPayout,
  storedAttributions,
} from "../storage/offers";
import { type Attribution, attribute, hasHubClickId } from "./attribute";
import { isPayable, type Payout, type Price, payoutFor, priceOf, revenueFor } from "./pricing";

export interface EventAttribution {
  attribution: Attribution;
  offer: Offer | null;
  /** The partner the conversion's previous applied event credited, when known. */
  previous_partner_id: string | null;
  payout: Payout | null;
  revenue: Price | null;
}

type Applied = EventMessage & { verdict: "accepted" | "updated" };

/** Attributes each applied event of the batch; the map is keyed by event id. */
export async function attributeBatch(
  db: D1,
  clickKey: CryptoKey,
  events: readonly EventMessage[],
  partners: readonly Pick<Partner, "id">[],
): Promise<Map<string, EventAttribution>> {
  const applied = events.filter((e): e is Applied => e.verdict !== "stale");
  const readings = new Map<string, ClickIdReading>();
  for (const event of applied) {
    const clickId = event.conversion.click_id;
    if (hasHubClickId(clickId) && !readings.has(clickId)) readings.set(clickId, await readClickId(clickKey, clickId));
  }
  const directs = applied.filter(
    (e) =>
      (!hasHubClickId(e.conversion.click_id) || namesPartnerNow(e)) &&
      e.conversion.partner_id &&
      e.conversion.campaign_id,
  );
  // A click id erased (privacy/erasure.ts) no longer proves anything, but the verdict it earned
  // stands: the partner still hears of its conversion's later events, and of a reversal.
  const erased = applied.filter((e) => e.conversion.click_id?.startsWith(ERASED_PREFIX));
  const kept = new Map(
    (
      await storedAttributions(
        db,
        erased.map((e) => ({ network_id: e.network_id, transaction_id: e.transaction_id, test: e.test === true })),
      )
    ).map((row) => [conversionKeyOf(row.network_id, row.transaction_id, row.test === 1), row]),
  );
  const [offers, campaignOffers] = await Promise.all([
    offersById(db, [
      ...[...readings.values()].flatMap((r) => (r.ok ? [r.click.offer_id] : [])),
      ...[...kept.values()].flatMap((row) => (row.offer_id ? [row.offer_id] : [])),
    ]),
    offersByCampaign(
      db,
      directs.map((e) => ({ network_id: e.network_id, campaign_id: e.conversion.campaign_id ?? "" })),
    ),
  ]);
  const partnerIds = new Set(partners.map((p) => p.id));
  const verdicts = applied.map((event) => {
    const c = event.conversion;
    const stored = kept.get(conversionKey(event));
    const attribution: Attribution = stored?.attribution
      ? {
          verdict: stored.attribution as Attribution["verdict"],
          detail: keptDetail(stored.attribution_detail ?? ""),
          offer_id: stored.offer_id,
          partner_id: stored.attributed_partner_id,
          clicked_at: stored.clicked_at,
        }
      : attribute({
          network_id: event.network_id,
          click_id: c.click_id,
          partner_id: c.partner_id,
          campaign_id: c.campaign_id,
          first_seen_at: c.first_seen_at,
          reading: hasHubClickId(c.click_id) ? (readings.get(c.click_id) ?? null) : null,
          offers,
          campaignOffer: c.campaign_id ? campaignOffers.get(campaignKey(event.network_id, c.campaign_id)) : undefined,
          partnerExists: (id) => partnerIds.has(id),
          named_now: namesPartnerNow(event),
        });
    const offer =
      (attribution.offer_id &&
        (offers.get(attribution.offer_id) ?? campaignOffers.get(campaignKey(event.network_id, c.campaign_id ?? "")))) ||
      null;
    return { event, attribution, offer };
  });
  // Only a credited, priced conversion needs what it paid before: most batches read nothing more.
  const priced = verdicts.filter((v) => v.offer && v.attribution.partner_id);
  const before = await payoutsBefore(
    db,
    priced.map(({ event }) => ({
      network_id: event.network_id,
      transaction_id: event.transaction_id,
      test: event.test === true,
      seq: event.seq,
    })),
  );
  const recordedBefore = new Map(priced.map((v, i) => [v.event.event_id, before[i] ?? null]));
  const result = new Map<string, EventAttribution>();
  // In seq order, so an update whose previous event is in this batch (not yet in D1) finds its payout.
  const inBatch = new Map<string, RecordedPayout>();
  for (const { event, attribution, offer } of [...verdicts].sort((a, b) => a.event.seq - b.event.seq)) {
    const key = conversionKey(event);
    const credited = attribution.partner_id;
    let payout: Payout | null = null;
    if (offer && credited) {
      const earlier = latest(recordedBefore.get(event.event_id) ?? null, inBatch.get(key), event.seq);
      payout = payoutFor(offer, credited, event.conversion, previousPayout(earlier, offer, credited, event));
    }
    const earlierCredit =
      offer && credited
        ? (latest(recordedBefore.get(event.event_id) ?? null, inBatch.get(key), event.seq)?.partner_id ?? null)
        : null;
    inBatch.set(key, {
      seq: event.seq,
      payout: payout?.amount ?? null,
      payout_currency: payout?.currency ?? null,
      partner_id: credited,
    });
    result.set(event.event_id, {
      attribution,
      offer,
      previous_partner_id: earlierCredit,
      payout,
      revenue: offer ? revenueFor(offer, event.conversion) : null,
    });
  }
  return result;
}

const KEPT = " (kept: the click id was erased since)";

function keptDetail(detail: string): string {
  return detail.endsWith(KEPT) ? detail : `${detail}${KEPT}`;
}

/** The latest of what D1 recorded before this event and what this batch computed before it. */
function latest(recorded: RecordedPayout | null, batch: RecordedPayout | undefined, seq: number) {
  const candidates = [recorded, batch && batch.seq < seq ? batch : null].filter((x): x is RecordedPayout => !!x);
  return candidates.sort((a, b) => b.seq - a.seq)[0] ?? null;
}

/**
 * What the partner was told before this event: the payout recorded with the previous applied
 * event, or, when D1 holds none (it was pruned, or written before attribution), the payout of the
 * previous status priced by today's rules.
 */
function previousPayout(earlier: RecordedPayout | null, offer: Offer, partnerId: string, event: Applied): Price | null {
  // The credit moved: what the earlier event paid was another partner's, not this one's.
  if (earlier?.partner_id && earlier.partner_id !== partnerId) return null;
  if (earlier) {
    return earlier.payout !== null && earlier.payout_currency !== null
      ? { amount: earlier.payout, currency: earlier.payout_currency }
      : null;
  }
  const status = event.previous_status;
  if (status === null || !isPayable(status)) return null;
  return priceOf(offer.payouts.partners[partnerId] ?? offer.payouts.default, { ...event.conversion, status });
}

/**
 * The event itself names the partner and carries no click id: the network's word, now, beats a
 * click id the conversion kept from before (a pixel's, or an earlier postback's).
 */
function namesPartnerNow(event: EventMessage): boolean {
  return event.event.partner_id !== undefined && event.event.click_id === undefined;
}

function conversionKey(event: EventMessage): string {
  return conversionKeyOf(event.network_id, event.transaction_id, event.test === true);
}

/** What D1 keeps of the verdict. */
export function attributionRecord(outcome: EventAttribution): AttributionRecord {
  return {
    attribution: outcome.attribution.verdict,
    attribution_detail: outcome.attribution.detail,
    offer_id: outcome.attribution.offer_id,
    attributed_partner_id: outcome.attribution.partner_id,
    clicked_at: outcome.attribution.clicked_at,
    payout: outcome.payout && { amount: outcome.payout.amount, currency: outcome.payout.currency },
    revenue: outcome.revenue,
  };
}

/** What a delivery carries of it. */
export function deliveryAttribution(outcome: EventAttribution): DeliveryAttribution {
  return {
    verdict: outcome.attribution.verdict,
    offer_id: outcome.attribution.offer_id,
    partner_id: outcome.attribution.partner_id,
    clicked_at: outcome.attribution.clicked_at,
    payout: outcome.payout?.amount ?? null,
    previous_payout: outcome.payout?.previous ?? null,
    payout_currency: outcome.payout?.currency ?? null,
  };
}
