/** SQL for offers and clicks. */

import type { Click } from "../domain/click";
import type { Offer, Payouts, PixelSettings, PriceRule } from "../domain/offer";
import type { ConversionAttribution, D1 } from "./d1";

interface OfferRow {
  id: string;
  network_id: string;
  name: string;
  status: Offer["status"];
  landing_url: string;
  attribution_window_days: number;
  campaign_id: string | null;
  revenue: string;
  payouts: string;
  partners: string | null;
  pixel: string;
  created_at: string;
  updated_at: string;
}

function toOffer(row: OfferRow): Offer {
  return {
    id: row.id,
    network_id: row.network_id,
    name: row.name,
    status: row.status,
    landing_url: row.landing_url,
    attribution_window_days: row.attribution_window_days,
    campaign_id: row.campaign_id,
    revenue: JSON.parse(row.revenue) as PriceRule[],
    payouts: JSON.parse(row.payouts) as Payouts,
    partners: row.partners === null ? null : (JSON.parse(row.partners) as string[]),
    pixel: JSON.parse(row.pixel) as PixelSettings,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function offerValues(o: Offer): unknown[] {
  return [
    o.name,
    o.status,
    o.landing_url,
    o.attribution_window_days,
    o.campaign_id,
    JSON.stringify(o.revenue),
    JSON.stringify(o.payouts),
    o.partners === null ? null : JSON.stringify(o.partners),
    JSON.stringify(o.pixel),
    o.updated_at,
  ];
}

/** False when another offer of the network has the same campaign_id (nothing is written then). */
export async function insertOffer(db: D1, offer: Offer): Promise<boolean> {
  return uniqueCampaign(
    db
      .prepare(
        `INSERT INTO offers (name, status, landing_url, attribution_window_days, campaign_id, revenue, payouts, partners,
           pixel, updated_at, id, network_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .bind(...offerValues(offer), offer.id, offer.network_id, offer.created_at)
      .run(),
  );
}

/**
 * Writes every mutable field (an offer's network never changes: its clicks name the offer).
 * False when another offer of the network has the same campaign_id (nothing is written then).
 */
export async function updateOffer(db: D1, offer: Offer): Promise<boolean> {
  return uniqueCampaign(
    db
      .prepare(
        `UPDATE offers SET name = ?, status = ?, landing_url = ?, attribution_window_days = ?, campaign_id = ?,
           revenue = ?, payouts = ?, partners = ?, pixel = ?, updated_at = ?
         WHERE id = ?`,
      )
      .bind(...offerValues(offer), offer.id)
      .run(),
  );
}

/** The unique index offers_by_campaign decides, so two writers racing for one campaign id cannot both win. */
async function uniqueCampaign(write: Promise<unknown>): Promise<boolean> {
  try {
    await write;
    return true;
  } catch (error) {
    if (String(error).includes("UNIQUE constraint failed: offers.network_id, offers.campaign_id")) return false;
    throw error;
  }
}

export async function getOffer(db: D1, id: string): Promise<Offer | null> {
  const row = await db.prepare("SELECT * FROM offers WHERE id = ?").bind(id).first<OfferRow>();
  return row ? toOffer(row) : null;
}

/** The offers of a batch of conversions, by id, in one query. */
export async function offersById(db: D1, ids: readonly string[]): Promise<Map<string, Offer>> {
  if (ids.length === 0) return new Map();
  const { results } = await db
    .prepare("SELECT * FROM offers WHERE id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify([...new Set(ids)]))
    .all<OfferRow>();
  return new Map(results.map((row) => [row.id, toOffer(row)]));
}

/** The offer a network's own campaign id names, for conversions that name their partner directly. */
export async function offersByCampaign(
  db: D1,
  keys: readonly { network_id: string; campaign_id: string }[],
): Promise<Map<string, Offer>> {
  if (keys.length === 0) return new Map();
  const { results } = await db
    .prepare(
      `SELECT o.* FROM offers o JOIN json_each(?) k
         ON o.network_id = json_extract(k.value, '$[0]') AND o.campaign_id = json_extract(k.value, '$[1]')`,
    )
    .bind(JSON.stringify(keys.map((k) => [k.network_id, k.campaign_id])))
    .all<OfferRow>();
  return new Map(results.map((row) => [campaignKey(row.network_id, row.campaign_id ?? ""), toOffer(row)]));
}

export function campaignKey(networkId: string, campaignId: string): string {
  return `${networkId}\u0000${campaignId}`;
}

export async function listOffers(
  db: D1,
  limit: number,
  afterId: string | null,
  networkId: string | null,
): Promise<Offer[]> {
  const { results } = await db
    .prepare(
      "SELECT * FROM offers WHERE (?1 IS NULL OR id > ?1) AND (?2 IS NULL OR network_id = ?2) ORDER BY id LIMIT ?3",
    )
    .bind(afterId, networkId, limit)
    .all<OfferRow>();
  return results.map(toOffer);
}

/** Records clicks; a click already recorded (a queue message delivered twice) stays one row. */
export function insertClickStatements(db: D1, clicks: readonly Click[], recordedAt: string): D1PreparedStatement[] {
  return clicks.map((c) =>
    db
      .prepare(
        `INSERT INTO clicks (click_id, offer_id, partner_id, clicked_at, sub1, sub2, sub3, sub4, sub5, country, device,
           os, browser, referrer, ip_prefix, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (click_id) DO NOTHING`,
      )
      .bind(
        c.click_id,
        c.offer_id,
        c.partner_id,
        c.clicked_at,
        c.sub1,
        c.sub2,
        c.sub3,
        c.sub4,
        c.sub5,
        c.country,
        c.device,
        c.os,
        c.browser,
        c.referrer,
        c.ip_prefix,
        recordedAt,
      ),
  );
}

export async function clicksById(db: D1, ids: readonly string[]): Promise<Map<string, Click>> {
  if (ids.length === 0) return new Map();
  const { results } = await db
    .prepare("SELECT * FROM clicks WHERE click_id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify([...new Set(ids)]))
    .all<Click & { recorded_at: string }>();
  return new Map(results.map(({ recorded_at: _, ...click }) => [click.click_id, click]));
}

/** Counted clicks of an offer (optionally one partner's), for the offer's API object and tests. */
export async function countClicks(db: D1, offerId: string, partnerId: string | null): Promise<number> {
  const row = await db
    .prepare("SELECT count(*) AS n FROM clicks WHERE offer_id = ?1 AND (?2 IS NULL OR partner_id = ?2)")
    .bind(offerId, partnerId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** One event's place in its conversion's history, for looking up what came before it. */
export interface EventPosition {
  network_id: string;
  transaction_id: string;
  test: boolean;
  seq: number;
}

export interface RecordedPayout {
  seq: number;
  payout: string | null;
  payout_currency: string | null;
  /** The partner that payout was for; null for events recorded before migration 0009. */
  partner_id: string | null;
}

/**
 * For each position, the payout recorded with the latest applied (not stale) event before it, in
 * one query; absent when D1 holds no earlier applied event.
 */
export async function payoutsBefore(db: D1, positions: readonly EventPosition[]): Promise<(RecordedPayout | null)[]> {
  if (positions.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT k.key AS i, e.seq, e.payout, e.payout_currency, e.payout_partner_id AS partner_id
       FROM json_each(?) k
       JOIN conversion_events e ON e.event_id = (
         SELECT p.event_id FROM conversion_events p
         WHERE p.network_id = json_extract(k.value, '$[0]') AND p.transaction_id = json_extract(k.value, '$[1]')
           AND p.test = json_extract(k.value, '$[2]') AND p.seq < json_extract(k.value, '$[3]') AND p.verdict != 'stale'
         ORDER BY p.seq DESC LIMIT 1
       )`,
    )
    .bind(JSON.stringify(positions.map((p) => [p.network_id, p.transaction_id, p.test ? 1 : 0, p.seq])))
    .all<RecordedPayout & { i: number }>();
  const found: (RecordedPayout | null)[] = positions.map(() => null);
  for (const { i, ...row } of results) found[i] = row;
  return found;
}

/** Whose conversion it is and what it pays, as decided for one applied event (d1.ts's ConversionAttribution). */
export type AttributionRecord = ConversionAttribution;

/**
 * Writes the verdict on the conversion, when the event is still its latest (its version): a later
 * event's verdict is never overwritten. Runs after the event's recordEventStatements, whose
 * snapshot upsert already wrote the verdict when it moved the row forward: then nothing differs
 * and nothing is written (the row was written twice before); it writes for a stale event of the
 * current version and a message delivered again. (The history row takes its payout in its insert.)
 */
export function attributionStatements(
  db: D1,
  event: { event_id: string; network_id: string; transaction_id: string; test: boolean; version: number },
  record: AttributionRecord,
): D1PreparedStatement[] {
  return [
    db
      .prepare(
        `UPDATE conversions SET attribution = ?, attribution_detail = ?, offer_id = ?, attributed_partner_id = ?,
           clicked_at = ?, payout = ?, payout_currency = ?, revenue = ?, revenue_currency = ?
         WHERE network_id = ? AND transaction_id = ? AND test = ? AND version = ?
           AND (attribution IS NOT ?1 OR attribution_detail IS NOT ?2 OR offer_id IS NOT ?3
             OR attributed_partner_id IS NOT ?4 OR clicked_at IS NOT ?5 OR payout IS NOT ?6
             OR payout_currency IS NOT ?7 OR revenue IS NOT ?8 OR revenue_currency IS NOT ?9)`,
      )
      .bind(
        record.attribution,
        record.attribution_detail,
        record.offer_id,
        record.attributed_partner_id,
        record.clicked_at,
        record.payout?.amount ?? null,
        record.payout?.currency ?? null,
        record.revenue?.amount ?? null,
        record.revenue?.currency ?? null,
        event.network_id,
        event.transaction_id,
        event.test ? 1 : 0,
        event.version,
      ),
  ];
}

export interface StoredAttribution {
  network_id: string;
  transaction_id: string;
  test: number;
  attribution: string | null;
  attribution_detail: string | null;
  offer_id: string | null;
  attributed_partner_id: string | null;
  clicked_at: string | null;
}

/** The attribution D1 holds for each conversion (by network, transaction, test), in one query. */
export async function storedAttributions(
  db: D1,
  keys: readonly { network_id: string; transaction_id: string; test: boolean }[],
): Promise<StoredAttribution[]> {
  if (keys.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT c.network_id, c.transaction_id, c.test, c.attribution, c.attribution_detail, c.offer_id,
         c.attributed_partner_id, c.clicked_at
       FROM conversions c JOIN json_each(?) k
         ON c.network_id = json_extract(k.value, '$[0]') AND c.transaction_id = json_extract(k.value, '$[1]')
        AND c.test = json_extract(k.value, '$[2]')`,
    )
    .bind(JSON.stringify(keys.map((k) => [k.network_id, k.transaction_id, k.test ? 1 : 0])))
    .all<StoredAttribution>();
  return results;
}

/** Retention: drops the clicks before `before` (their ids still attribute: the id is self-contained). */
export async function pruneClicks(db: D1, before: string): Promise<number> {
  const result = await db.prepare("DELETE FROM clicks WHERE clicked_at < ?").bind(before).run();
  return result.meta.changes ?? 0;
}
