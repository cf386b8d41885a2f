/**
 * All SQL against D1, in one place: prepared statements with bound parameters only.
 * Functions take the smallest handle they need, so read paths can pass a D1 session.
 */

import type { Click } from "../domain/click";
import { ALLOWED_TRANSITIONS } from "../domain/conversion";
import type { EventMessage } from "../domain/messages";
import { REPLAYABLE } from "./delivery-moves";

export type D1 = Pick<D1Database, "prepare" | "batch">;

// ---------------------------------------------------------------------------------------------
// Conversions: written by the events consumer, read by the admin API
// ---------------------------------------------------------------------------------------------

export interface ConversionRow {
  network_id: string;
  transaction_id: string;
  status: string;
  amount: string | null;
  currency: string | null;
  event_type: string | null;
  event_time: string;
  campaign_id: string | null;
  click_id: string | null;
  user_id: string | null;
  device_id: string | null;
  platform: string | null;
  meta: string | null;
  first_seen_at: string;
  updated_at: string;
  version: number;
  /** 1 for the test conversion of the transaction (test postbacks), 0 for the live one. */
  test: number;
  /** 1 when `event_time` came from the network, 0 when it is the receipt time of the event that set it. */
  event_time_supplied: number;
  /** The partner the network named (direct attribution), as sent. */
  partner_id: string | null;
  /** Whose conversion it is: the attribution verdict and what it found (domain/attribution.ts). */
  attribution: string | null;
  attribution_detail: string | null;
  offer_id: string | null;
  attributed_partner_id: string | null;
  clicked_at: string | null;
  payout: string | null;
  payout_currency: string | null;
  revenue: string | null;
  revenue_currency: string | null;
  /** s2s, or pixel until a network's postback confirms it. */
  source: string;
}

export interface ConversionEventRow {
  event_id: string;
  network_id: string;
  transaction_id: string;
  seq: number;
  verdict: string;
  status: string;
  event_time: string | null;
  payload: string;
  received_at: string;
  test: number;
  /** The event's link in the conversion's hash chain; null when recorded before the chain existed. */
  hash: string | null;
  prev_hash: string | null;
  source: string;
  /** The attributed partner's payout as of this event. */
  payout: string | null;
  payout_currency: string | null;
}

/** The lifecycle table as SQL rows, for the consumer's second line of defence below. */
const TRANSITION_ROWS = Object.entries(ALLOWED_TRANSITIONS)
  .flatMap(([from, targets]) => targets.map((to) => `('${from}', '${to}')`))
  .join(", ");

/**
 * The event's attribution verdict, written on the conversion's row by the snapshot's upsert when it
 * moves the row forward (offers.ts attributionStatements writes it otherwise: a stale event, a
 * message delivered again). offers.ts calls it AttributionRecord.
 */
export interface ConversionAttribution {
  attribution: string;
  attribution_detail: string;
  offer_id: string | null;
  attributed_partner_id: string | null;
  clicked_at: string | null;
  payout: { amount: string; currency: string } | null;
  revenue: { amount: string; currency: string } | null;
}

const ATTRIBUTION_COLUMNS = [
  "attribution",
  "attribution_detail",
  "offer_id",
  "attributed_partner_id",
  "clicked_at",
  "payout",
  "payout_currency",
  "revenue",
  "revenue_currency",
] as const;

/** Takes the verdict's columns when one was given (?30 = 1), else leaves the row's as they are. */
const ATTRIBUTION_SET = ATTRIBUTION_COLUMNS.map(
  (column) => `${column} = CASE WHEN ?30 = 1 THEN excluded.${column} ELSE conversions.${column} END`,
).join(", ");

/** The attributed partner's payout as of an event, written on its history row (null: none). */
export interface EventPayout {
  payout: { amount: string; currency: string } | null;
  partner_id: string | null;
}

/**
 * The statements that record one event: its history row (once, keyed by event id) and, unless
 * it is stale, the conversion snapshot (only when newer than the stored one). With `payout` (the
 * event was attributed), the history row is written with it, and a row already there (a message
 * delivered again) takes it: in the insert, not an update after it, which wrote the row twice.
 */
export function recordEventStatements(
  db: D1,
  message: EventMessage,
  payout?: EventPayout,
  attribution?: ConversionAttribution,
): D1PreparedStatement[] {
  const statements = [
    db
      .prepare(
        `INSERT INTO conversion_events (event_id, network_id, transaction_id, seq, verdict, status, event_time, payload,
           received_at, test, hash, prev_hash, source, payout, payout_currency, payout_partner_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (event_id) DO UPDATE SET payout = excluded.payout, payout_currency = excluded.payout_currency,
           payout_partner_id = excluded.payout_partner_id
         WHERE ?17 = 1`,
      )
      .bind(
        message.event_id,
        message.network_id,
        message.transaction_id,
        message.seq,
        message.verdict,
        message.event.status,
        message.event.event_time ?? null,
        JSON.stringify(message.event),
        message.received_at,
        message.test ? 1 : 0,
        message.hash ?? null,
        message.prev_hash ?? null,
        message.source ?? "s2s",
        payout?.payout?.amount ?? null,
        payout?.payout?.currency ?? null,
        payout?.partner_id ?? null,
        payout === undefined ? 0 : 1,
      ),
  ];
  if (message.verdict !== "stale") {
    const c = message.conversion;
    statements.push(
      db
        .prepare(
          `INSERT INTO conversions (network_id, transaction_id, status, amount, currency, event_type, event_time,
             campaign_id, click_id, user_id, device_id, platform, meta, first_seen_at, updated_at, version, test,
             event_time_supplied, partner_id, source, ${ATTRIBUTION_COLUMNS.join(", ")})
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (network_id, transaction_id, test) DO UPDATE SET
             ${ATTRIBUTION_SET},
             status = excluded.status, amount = excluded.amount, currency = excluded.currency,
             event_type = excluded.event_type, event_time = excluded.event_time,
             campaign_id = excluded.campaign_id, click_id = excluded.click_id, user_id = excluded.user_id,
             device_id = excluded.device_id, platform = excluded.platform, meta = excluded.meta,
             updated_at = excluded.updated_at, version = excluded.version,
             event_time_supplied = excluded.event_time_supplied, partner_id = excluded.partner_id,
             source = excluded.source
           WHERE excluded.version > conversions.version
             AND (
               excluded.first_seen_at = conversions.first_seen_at
               -- A snapshot from a later life of the Durable Object (one that forgot the conversion
               -- after the dedupe window) applies only when the lifecycle allows it against what D1
               -- holds, and, when both times were supplied by the network, is not older. A receipt
               -- time is not the network's clock: then arrival order decides, as in lifecycle.ts.
               OR ((conversions.status, excluded.status) IN (VALUES ${TRANSITION_ROWS})
                   AND (excluded.event_time_supplied = 0 OR conversions.event_time_supplied = 0
                        OR excluded.event_time >= conversions.event_time))
             )`,
        )
        .bind(
          message.network_id,
          message.transaction_id,
          c.status,
          c.amount ?? null,
          c.currency ?? null,
          c.event_type ?? null,
          c.event_time,
          c.campaign_id ?? null,
          c.click_id ?? null,
          c.user_id ?? null,
          c.device_id ?? null,
          c.platform ?? null,
          c.meta ? JSON.stringify(c.meta) : null,
          c.first_seen_at,
          message.received_at,
          c.version,
          message.test ? 1 : 0,
          // An applied event's time is the conversion's: supplied exactly when the event carried one.
          message.event.event_time === undefined ? 0 : 1,
          c.partner_id ?? null,
          c.source ?? "s2s",
          attribution?.attribution ?? null,
          attribution?.attribution_detail ?? null,
          attribution?.offer_id ?? null,
          attribution?.attributed_partner_id ?? null,
          attribution?.clicked_at ?? null,
          attribution?.payout?.amount ?? null,
          attribution?.payout?.currency ?? null,
          attribution?.revenue?.amount ?? null,
          attribution?.revenue?.currency ?? null,
          attribution === undefined ? 0 : 1,
        ),
    );
  }
  return statements;
}

/** A queue message kept for an operator, once per message (its id is the queue's and the message's). */
export function deadLetterStatement(
  db: D1,
  queue: string,
  message: Pick<Message<unknown>, "id" | "body" | "attempts">,
  reason: string,
  createdAt: string,
): D1PreparedStatement {
  return db
    .prepare(
      "INSERT INTO dead_letters (id, queue, body, reason, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
    )
    .bind(`${queue}:${message.id}`, queue, JSON.stringify(message.body) ?? "null", reason, message.attempts, createdAt);
}

/**
 * One conversion of one world (live or test) with its history, oldest first, and whether the other
 * world holds a conversion with the same key (so that a 404 can say where to look).
 */
export async function getConversion(
  db: D1,
  networkId: string,
  transactionId: string,
  test: boolean,
): Promise<{
  conversion: ConversionRow | null;
  events: ConversionEventRow[];
  otherWorld: boolean;
  /** Where history retention cut the conversion's chain, if it did. */
  pruned: PrunedChainRow | null;
  /** The click its click id names, once the click's record is in D1. */
  click: Click | null;
}> {
  const world = test ? 1 : 0;
  const [conversions, events, pruned, clicks] = await db.batch([
    db.prepare("SELECT * FROM conversions WHERE network_id = ? AND transaction_id = ?").bind(networkId, transactionId),
    db
      .prepare(
        "SELECT * FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND test = ? ORDER BY seq, received_at",
      )
      .bind(networkId, transactionId, world),
    db
      .prepare("SELECT * FROM conversion_chain_pruned WHERE network_id = ? AND transaction_id = ? AND test = ?")
      .bind(networkId, transactionId, world),
    db
      .prepare(
        `SELECT k.* FROM clicks k JOIN conversions c ON k.click_id = lower(trim(c.click_id))
         WHERE c.network_id = ? AND c.transaction_id = ? AND c.test = ?`,
      )
      .bind(networkId, transactionId, world),
  ]);
  const rows = (conversions?.results ?? []) as ConversionRow[];
  return {
    conversion: rows.find((row) => row.test === world) ?? null,
    events: (events?.results ?? []) as ConversionEventRow[],
    otherWorld: rows.some((row) => row.test !== world),
    pruned: (pruned?.results[0] as PrunedChainRow | undefined) ?? null,
    click: (clicks?.results[0] as Click | undefined) ?? null,
  };
}

export interface PrunedChainRow {
  seq: number;
  hash: string;
  pruned_before: string;
}

export interface ConversionFilter {
  network_id?: string | undefined;
  status?: string | undefined;
  campaign_id?: string | undefined;
  platform?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  test?: boolean | undefined;
  transaction_id?: string | undefined;
  click_id?: string | undefined;
  /** The partner credited with it (attribution). */
  partner_id?: string | undefined;
}

/** The list's sort key; `test` is part of it, since a test and a live conversion can share the rest. */
export type ConversionListKey = [first_seen_at: string, network_id: string, transaction_id: string, test: "0" | "1"];

/** Newest first by `first_seen_at`; `after` is the sort key of the last row of the previous page. */
export async function listConversions(
  db: D1,
  filter: ConversionFilter,
  limit: number,
  after: ConversionListKey | null,
): Promise<ConversionRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM conversions
       WHERE (?1 IS NULL OR network_id = ?1)
         AND (?2 IS NULL OR status = ?2)
         AND (?3 IS NULL OR campaign_id = ?3)
         AND (?4 IS NULL OR platform = ?4)
         AND (?5 IS NULL OR first_seen_at >= ?5)
         AND (?6 IS NULL OR first_seen_at < ?6)
         AND (?7 IS NULL OR (first_seen_at, network_id, transaction_id, test) < (?7, ?8, ?9, ?12))
         AND (?11 IS NULL OR test = ?11)
         AND (?13 IS NULL OR transaction_id = ?13)
         AND (?14 IS NULL OR click_id = ?14)
         AND (?15 IS NULL OR attributed_partner_id = ?15)
       ORDER BY first_seen_at DESC, network_id DESC, transaction_id DESC, test DESC
       LIMIT ?10`,
    )
    .bind(
      filter.network_id ?? null,
      filter.status ?? null,
      filter.campaign_id ?? null,
      filter.platform ?? null,
      filter.since ?? null,
      filter.until ?? null,
      after?.[0] ?? null,
      after?.[1] ?? null,
      after?.[2] ?? null,
      limit,
      filter.test === undefined ? null : filter.test ? 1 : 0,
      after === null ? null : Number(after[3]),
      filter.transaction_id ?? null,
      filter.click_id ?? null,
      filter.partner_id ?? null,
    )
    .all<ConversionRow>();
  return results;
}

/** Throws unless D1 answers and the latest migration's tables exist. */
export async function checkSchema(db: D1): Promise<void> {
  // One column or table from each migration, so a missing one is noticed.
  await db.batch([
    db.prepare("SELECT 1 FROM conversions LIMIT 1"),
    db.prepare("SELECT 1 FROM dead_letters LIMIT 1"),
    db.prepare("SELECT 1 FROM delivery_attempts LIMIT 1"),
    db.prepare("SELECT auth, test_mode FROM networks LIMIT 1"),
    db.prepare("SELECT kind, last_used_at FROM network_secrets LIMIT 1"),
    db.prepare(
      "SELECT c.event_time_supplied, e.hash, p.seq FROM conversions c, conversion_events e, conversion_chain_pruned p LIMIT 1",
    ),
    db.prepare("SELECT n.hash_identifiers, e.identifier_hash FROM networks n, erasures e LIMIT 1"),
    db.prepare("SELECT d.replayed_at, j.pending_ids FROM dead_letters d, replay_jobs j LIMIT 1"),
    // 0023: the archive's manifest and pointers, which the conversion routes read.
    db.prepare("SELECT o.expiring_at, p.byte_offset FROM archive_objects o, archived_conversions p LIMIT 1"),
    // 0026: the attempts' marks, which the alert rules and the overview read.
    db.prepare("SELECT at, last_rowid, last_started_at FROM delivery_attempt_marks LIMIT 1"),
    // 0025: a partner's replayable deliveries' index, which enabling, deleting and replaying it name.
    db.prepare(
      `SELECT 1 FROM deliveries INDEXED BY deliveries_replayable_by_partner WHERE partner_id = '' AND ${REPLAYABLE} LIMIT 1`,
    ),
  ]);
}

/** A conversion whose chain retention would cut: its last chained event received before the cutoff. */
export interface ChainCut {
  network_id: string;
  transaction_id: string;
  test: number;
  seq: number;
  hash: string;
}

/** The key after which the next page of `chainCutCandidates` starts. */
export type ChainCutKey = [network_id: string, transaction_id: string, test: number];

/**
 * One page of the conversions with chained events received before `before`, by key, each with the
 * last such event (where retention would cut its chain). Conversions whose objects refused a cut
 * keep their events, so the next page starts after `after`, not at the beginning.
 */
export async function chainCutCandidates(
  db: D1,
  before: string,
  after: ChainCutKey | null,
  limit: number,
): Promise<ChainCut[]> {
  const { results } = await db
    .prepare(
      `SELECT network_id, transaction_id, test, seq, hash FROM (
         SELECT network_id, transaction_id, test, seq, hash,
           row_number() OVER (PARTITION BY network_id, transaction_id, test ORDER BY seq DESC) AS latest
         FROM conversion_events
         WHERE received_at < ?1 AND hash IS NOT NULL
           AND (?2 IS NULL OR (network_id, transaction_id, test) > (?2, ?3, ?4))
       ) WHERE latest = 1
       ORDER BY network_id, transaction_id, test
       LIMIT ?5`,
    )
    .bind(before, after?.[0] ?? null, after?.[1] ?? null, after?.[2] ?? null, limit)
    .all<ChainCut>();
  return results;
}

/**
 * Cuts the chains of `cuts` (each agreed to by its conversion's object) in one transaction: records
 * where each was cut (`conversion_chain_pruned`, only ever forward), and deletes its chained events
 * up to there. Two statements, whatever the number of conversions.
 */
export function chainCutStatements(db: D1, cuts: readonly ChainCut[], before: string): D1PreparedStatement[] {
  const list = JSON.stringify(cuts.map((cut) => [cut.network_id, cut.transaction_id, cut.test, cut.seq, cut.hash]));
  return [
    db
      .prepare(
        `INSERT INTO conversion_chain_pruned (network_id, transaction_id, test, seq, hash, pruned_before)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, ?2 FROM json_each(?1) WHERE true
         ON CONFLICT (network_id, transaction_id, test) DO UPDATE SET
           seq = excluded.seq, hash = excluded.hash, pruned_before = excluded.pruned_before
         WHERE excluded.seq > conversion_chain_pruned.seq`,
      )
      .bind(list, before),
    db
      .prepare(
        `DELETE FROM conversion_events WHERE event_id IN (
           SELECT e.event_id FROM json_each(?1) AS cut
           JOIN conversion_events AS e
             ON e.network_id = cut.value ->> 0 AND e.transaction_id = cut.value ->> 1 AND e.test = cut.value ->> 2
               AND e.seq <= cut.value ->> 3
           WHERE e.hash IS NOT NULL
         )`,
      )
      .bind(list),
  ];
}

/**
 * Retention: drops the event history recorded before the chain existed (no hash: nothing to
 * keep of it) and finished deliveries older than `before`; conversions themselves are kept, and so
 * is every delivery still pending, retrying or parked. Chained events are cut per conversion, with
 * its object's agreement (operations/chain-retention.ts).
 */
export async function pruneHistory(db: D1, before: string): Promise<{ events: number; deliveries: number }> {
  const [events, deliveries] = await db.batch([
    db.prepare("DELETE FROM conversion_events WHERE received_at < ? AND hash IS NULL").bind(before),
    db.prepare("DELETE FROM deliveries WHERE created_at < ? AND state IN ('delivered', 'failed', 'dead')").bind(before),
  ]);
  return { events: events?.meta.changes ?? 0, deliveries: deliveries?.meta.changes ?? 0 };
}
