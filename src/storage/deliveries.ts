/** SQL for deliveries and their attempts. */

import { type DeliveryState, isUnfinished } from "../domain/delivery";
import type { DeliveryPayload, Partner } from "../domain/partner";
import type { ConversionStatus } from "../domain/postback";
import type { D1 } from "./d1";
import { from, REPLAYABLE, to } from "./delivery-moves";
import { toPartner } from "./partners";
import { countAttemptStatement } from "./stats";

export interface DeliveryRow {
  id: string;
  event_id: string;
  partner_id: string;
  network_id: string;
  transaction_id: string;
  state: DeliveryState;
  attempts: number;
  retries: number;
  last_status: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  /** Set by the claim of code before issue 16's third round; nothing sets it since, and each result clears it. */
  lease_until: string | null;
  payload: string;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

export interface AttemptRow {
  delivery_id: string;
  attempt: number;
  partner_id: string;
  started_at: string;
  http_status: number | null;
  error_class: string | null;
  error: string | null;
  latency_ms: number;
  response_excerpt: string | null;
  outcome: "delivered" | "retry" | "gone" | "failed" | "dead";
}

export function payloadOf(row: DeliveryRow): DeliveryPayload {
  return JSON.parse(row.payload) as DeliveryPayload;
}

/**
 * Creates a delivery once per (event, partner), whose id is derived from the pair (deliveryIdFor),
 * in the events consumer's batch, right after the conversion upsert: only when D1 took the event's
 * snapshot as part of the conversion's story (same life of the Durable Object, or the snapshot now
 * current), so a re-accepted old postback after the dedupe window notifies no one.
 */
export function insertDeliveryStatement(
  db: D1,
  delivery: { id: string; partner_id: string; state: "pending" | "parked"; payload: DeliveryPayload; now: string },
): D1PreparedStatement {
  const p = delivery.payload;
  return db
    .prepare(
      `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8
       WHERE EXISTS (
         SELECT 1 FROM conversions c WHERE c.network_id = ?4 AND c.transaction_id = ?5 AND c.test = ?11
           AND (c.first_seen_at = ?9 OR c.version = ?10)
       )
       ON CONFLICT (id) DO NOTHING`,
    )
    .bind(
      delivery.id,
      p.event_id,
      delivery.partner_id,
      p.network_id,
      p.transaction_id,
      delivery.state,
      JSON.stringify(p),
      delivery.now,
      p.conversion.first_seen_at,
      p.conversion.version,
      p.test ? 1 : 0,
    );
}

/** What a partner's coordinator is told of a delivery (queues/delivery-consumer.ts). */
export interface DeliveryToCoordinate {
  id: string;
  partner_id: string;
  network_id: string;
  transaction_id: string;
  test: number;
  /** The conversion's version after the delivery's event. */
  position: number;
  status: ConversionStatus | null;
  attempts: number;
  next_attempt_at: string | null;
}

/** deliveriesToCoordinate's statement (bound: the ids as a JSON array), planned by test/storage.indexes.test.ts. */
export const DELIVERIES_TO_COORDINATE_SQL = `SELECT DISTINCT d.id, d.partner_id, d.network_id, d.transaction_id,
         coalesce(json_extract(d.payload, '$.test'), 0) AS test,
         json_extract(d.payload, '$.conversion.version') AS position,
         json_extract(d.payload, '$.conversion.status') AS status,
         d.attempts, d.next_attempt_at
       FROM deliveries m
       -- The given deliveries first, then their conversions' through deliveries_by_conversion: never
       -- every unfinished delivery through deliveries_by_state, which the planner would otherwise pick.
       CROSS JOIN deliveries d INDEXED BY deliveries_by_conversion
         ON d.network_id = m.network_id AND d.transaction_id = m.transaction_id
         AND d.partner_id = m.partner_id
       WHERE m.id IN (SELECT value FROM json_each(?)) AND d.${from("attempt")}
         AND coalesce(json_extract(d.payload, '$.test'), 0) = coalesce(json_extract(m.payload, '$.test'), 0)`;

/**
 * The unfinished deliveries among `ids`, with every other unfinished delivery of the same
 * conversion to the same partner (read through deliveries_by_conversion), in one statement.
 */
export async function deliveriesToCoordinate(db: D1, ids: readonly string[]): Promise<DeliveryToCoordinate[]> {
  const { results } = await db
    .prepare(DELIVERIES_TO_COORDINATE_SQL)
    .bind(JSON.stringify(ids))
    .all<DeliveryToCoordinate>();
  return results;
}

/** What the partner last received of a conversion: the newest of its deliveries to the partner that was delivered. */
export interface LastDelivered {
  /** The conversion's version after that delivery's event. */
  position: number;
  status: ConversionStatus | null;
}

/**
 * readForAttempt's third statement (bound: the delivery's id), planned by test/storage.indexes.test.ts:
 * the conversion's other deliveries to the same partner, through deliveries_by_conversion.
 */
export const LAST_DELIVERED_SQL = `SELECT json_extract(d.payload, '$.conversion.version') AS position,
         json_extract(d.payload, '$.conversion.status') AS status
       FROM deliveries m
       CROSS JOIN deliveries d INDEXED BY deliveries_by_conversion
         ON d.network_id = m.network_id AND d.transaction_id = m.transaction_id AND d.partner_id = m.partner_id
       WHERE m.id = ? AND d.id != m.id AND d.delivered_at IS NOT NULL
         AND coalesce(json_extract(d.payload, '$.test'), 0) = coalesce(json_extract(m.payload, '$.test'), 0)
       ORDER BY position DESC LIMIT 1`;

export type AttemptRead =
  | { due: true; delivery: DeliveryRow; partner: Partner; lastDelivered: LastDelivered | null }
  | { due: false; delivery: DeliveryRow | null; partner: Partner | null };

/**
 * What one attempt starts from, read in one round trip and written nowhere: the delivery, its
 * partner and what the partner last received of its conversion; `due` when the delivery is
 * unfinished and due by `dueBy`, and its partner active. Nothing is claimed: a delivery is attempted
 * only by its partner's coordinator, one Durable Object, which never runs two attempts of one
 * delivery at once (issue 16: the claim was a row written per attempt). The attempt's result
 * applies only if nothing moved the delivery meanwhile (finishAttemptStatements).
 */
export async function readForAttempt(db: D1, id: string, dueBy: string): Promise<AttemptRead> {
  const [current, partner, last] = await db.batch([
    db.prepare("SELECT * FROM deliveries WHERE id = ?").bind(id),
    db.prepare("SELECT p.* FROM partners p JOIN deliveries d ON d.partner_id = p.id WHERE d.id = ?").bind(id),
    db.prepare(LAST_DELIVERED_SQL).bind(id),
  ]);
  const delivery = (current?.results[0] as DeliveryRow | undefined) ?? null;
  const partnerRow = partner?.results[0] as Parameters<typeof toPartner>[0] | undefined;
  const partnerValue = partnerRow ? toPartner(partnerRow) : null;
  const due =
    delivery !== null &&
    isUnfinished(delivery.state) &&
    (delivery.next_attempt_at === null || delivery.next_attempt_at <= dueBy) &&
    partnerValue?.status === "active";
  if (!due || partnerValue === null) return { due: false, delivery, partner: partnerValue };
  return {
    due: true,
    delivery,
    partner: partnerValue,
    lastDelivered: (last?.results[0] as LastDelivered | undefined) ?? null,
  };
}

/** Where a delivery stands after an attempt's result (finishAttemptStatements' last statement). */
export interface DeliveryStanding {
  state: DeliveryState;
  next_attempt_at: string | null;
}

/** Where the delivery stands now, when an attempt's result found another recorded before it. */
export async function deliveryStanding(db: D1, id: string): Promise<DeliveryStanding | null> {
  return db.prepare("SELECT state, next_attempt_at FROM deliveries WHERE id = ?").bind(id).first<DeliveryStanding>();
}

export interface AttemptRecord {
  attempt: AttemptRow;
  state: DeliveryState;
  retries: number;
  next_attempt_at: string | null;
  now: string;
  /**
   * The delivery as the attempt read it: its new state applies only while it still stands there, so
   * an operator's change during the attempt (disable, delete, give up) is not overwritten; the
   * attempt is counted (`attempts`) either way, unless another attempt was recorded meanwhile.
   */
  read: Pick<DeliveryRow, "attempts" | "state" | "retries">;
}

/**
 * The attempt's row and the delivery's new state, to run in one batch (its /metrics counts are the
 * coordinator's to add, summed: the attempt reports them).
 * The last statement answers the delivery's state and due time as they now stand
 * (`DeliveryStanding`), or nothing when another attempt of it was recorded first.
 */
export function finishAttemptStatements(db: D1, record: AttemptRecord): D1PreparedStatement[] {
  const a = record.attempt;
  // ?1..?3: the delivery as read; the new values follow.
  const unmoved = "(state = ?2 AND retries = ?3)";
  const set = (column: string, value: string) => `${column} = CASE WHEN ${unmoved} THEN ${value} ELSE ${column} END`;
  return [
    countAttemptStatement(db, a),
    db
      .prepare(
        `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, error_class, error,
           latency_ms, response_excerpt, outcome)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, attempt) DO NOTHING`,
      )
      .bind(
        a.delivery_id,
        a.attempt,
        a.partner_id,
        a.started_at,
        a.http_status,
        a.error_class,
        a.error,
        a.latency_ms,
        a.response_excerpt,
        a.outcome,
      ),
    db
      .prepare(
        `UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL,
           ${set("state", "?5")}, ${set("retries", "?6")}, ${set("last_status", "?7")}, ${set("last_error", "?8")},
           ${set("next_attempt_at", "?9")}, ${set("updated_at", "?10")},
           -- The partner has it, whatever an operator did meanwhile (LAST_DELIVERED_SQL reads it).
           delivered_at = CASE WHEN ?5 = 'delivered' THEN ?10 ELSE delivered_at END
         WHERE id = ?4 AND attempts = ?1
         RETURNING state, next_attempt_at`,
      )
      .bind(
        record.read.attempts,
        record.read.state,
        record.read.retries,
        a.delivery_id,
        record.state,
        record.retries,
        a.http_status,
        a.error ?? (a.error_class ? a.error_class : null),
        record.next_attempt_at,
        record.now,
      ),
  ];
}

/**
 * Marks waiting deliveries superseded (never sent: their partner's coordinator sent, or had sent,
 * a newer state of their conversion). The coordinator never names one it is attempting; the lease
 * condition keeps off one that older code had claimed.
 */
export function supersedeDeliveriesStatement(
  db: D1,
  ids: readonly string[],
  reason: string,
  now: string,
): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE deliveries SET ${to("supersede")}, last_error = ?, next_attempt_at = NULL, updated_at = ?
       WHERE id IN (SELECT value FROM json_each(?)) AND ${from("supersede")}
         AND (lease_until IS NULL OR lease_until < ?)`,
    )
    .bind(reason, now, JSON.stringify(ids), now);
}

/**
 * Deliveries that should be moving but have no queue message in flight (a Worker died mid-attempt,
 * a send failed after the write): unfinished, unleased, due for a while and untouched for a while.
 * The cron re-queues them; an extra message is harmless: its partner's coordinator holds a delivery once however often it is handed over.
 */
export async function takeStrandedDeliveries(db: D1, olderThan: string, now: string, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET updated_at = ?3
       WHERE id IN (
         SELECT id FROM deliveries
         WHERE ${from("attempt")} AND updated_at < ?1
           AND (lease_until IS NULL OR lease_until < ?1)
           AND (next_attempt_at IS NULL OR next_attempt_at < ?1)
           -- A paused partner's deliveries wait for its breaker, in its coordinator: not stranded.
           AND NOT EXISTS (
             SELECT 1 FROM partners p WHERE p.id = deliveries.partner_id AND p.paused_reason IS NOT NULL
           )
         ORDER BY updated_at LIMIT ?2
       )
       RETURNING id`,
    )
    .bind(olderThan, limit, now)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

/** Disables a partner and parks its unfinished deliveries (operator, 410, or the cron's auto-disable). */
export function disablePartnerStatements(
  db: D1,
  partnerId: string,
  reason: string,
  now: string,
): D1PreparedStatement[] {
  return [
    db
      .prepare("UPDATE partners SET status = 'disabled', disabled_reason = ?, updated_at = ? WHERE id = ?")
      .bind(reason, now, partnerId),
    parkDeliveriesStatement(db, partnerId, now),
  ];
}

/**
 * Parks a disabled partner's unfinished deliveries; enabling the partner resumes them. Through the
 * unfinished deliveries (deliveries_by_state), never every delivery the partner has in D1 (there is
 * no index by partner over all of them since migration 0027), and this runs
 * without an operator (a 410, the breaker giving up, an attempt finding its partner disabled).
 */
export function parkDeliveriesStatement(db: D1, partnerId: string, now: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE deliveries INDEXED BY deliveries_by_state SET ${to("park")}, lease_until = NULL, updated_at = ?
       WHERE partner_id = ? AND ${from("park")}`,
    )
    .bind(now, partnerId);
}

/** Enables a partner and returns its parked deliveries to pending; their ids need queue messages. */
export async function enablePartner(
  db: D1,
  partnerId: string,
  now: string,
): Promise<{ found: boolean; resumed: string[] }> {
  const [enabled, resumed] = await db.batch([
    db
      .prepare(
        "UPDATE partners SET status = 'active', disabled_reason = NULL, updated_at = ? WHERE id = ? RETURNING id",
      )
      .bind(now, partnerId),
    db
      .prepare(
        // Through the partner's replayable deliveries, parked among them (deliveries_replayable_by_partner,
        // whose condition is said), never every delivery the partner has.
        `UPDATE deliveries INDEXED BY deliveries_replayable_by_partner
         SET ${to("resume")}, retries = 0, next_attempt_at = NULL, lease_until = NULL, updated_at = ?
         WHERE partner_id = ? AND ${REPLAYABLE} AND ${from("resume")} AND EXISTS (SELECT 1 FROM partners WHERE id = ?)
         RETURNING id`,
      )
      .bind(now, partnerId, partnerId),
  ]);
  return {
    found: (enabled?.results.length ?? 0) > 0,
    resumed: ((resumed?.results ?? []) as { id: string }[]).map((r) => r.id),
  };
}

/**
 * What a replay does to a delivery, whichever replay it is (one, a partner's, a bulk job's): back to
 * pending with its id kept (the partner's `webhook-id`), from the start of the retry schedule, any
 * lease older code set cleared. `?` is the time.
 */
const REARM = `${to("replay")}, retries = 0, next_attempt_at = NULL, lease_until = NULL, updated_at = ?`;

/** Only deliveries whose partner is active: a disabled partner's would only be parked again. */
const PARTNER_ACTIVE = "EXISTS (SELECT 1 FROM partners p WHERE p.id = deliveries.partner_id AND p.status = 'active')";

/** Puts one finished delivery back to pending, keeping its id; null when it is not replayable. */
export async function replayDelivery(db: D1, id: string, now: string): Promise<DeliveryRow | null> {
  return db
    .prepare(`UPDATE deliveries SET ${REARM} WHERE id = ? AND ${from("replay")} AND ${PARTNER_ACTIVE} RETURNING *`)
    .bind(now, id)
    .first<DeliveryRow>();
}

/** Which deliveries a replay takes: a partner's (its route), or any filter of a bulk replay. */
export interface ReplaySelection {
  partner_id?: string | null;
  network_id?: string | null;
  /** The status the delivery notifies (its payload's conversion status). */
  conversion_status?: string | null;
  states: readonly string[];
  /** On created_at: at or after `since`, before `until`. */
  since: string | null;
  until: string | null;
  /** Leave out deliveries whose partner is not active (a bulk replay; a partner's own replay checks first). */
  active_partners_only?: boolean;
}

/**
 * The selection as SQL over `deliveries`, with its values appended to `params` in order. Only the
 * conditions a selection has are written, so that a partner's replay still reads its index (its
 * replayable deliveries, deliveries_replayable_by_partner, never all it has); the text is made of
 * constants, and every value is bound. Exported for test/storage.indexes.test.ts, which plans it.
 */
export function selectionWhere(selection: ReplaySelection, params: unknown[]): string {
  const conditions = ["state IN (SELECT value FROM json_each(?))"];
  params.push(JSON.stringify(selection.states));
  if (selection.partner_id !== null && selection.partner_id !== undefined) conditions.push(REPLAYABLE);
  const equal: [string, string | null | undefined][] = [
    ["partner_id", selection.partner_id],
    ["network_id", selection.network_id],
    ["json_extract(payload, '$.conversion.status')", selection.conversion_status],
  ];
  for (const [column, value] of equal) {
    if (value === null || value === undefined) continue;
    conditions.push(`${column} = ?`);
    params.push(value);
  }
  if (selection.since !== null) {
    conditions.push("created_at >= ?");
    params.push(selection.since);
  }
  if (selection.until !== null) {
    conditions.push("created_at < ?");
    params.push(selection.until);
  }
  if (selection.active_partners_only) conditions.push(PARTNER_ACTIVE);
  return conditions.join(" AND ");
}

export async function countReplayable(db: D1, selection: ReplaySelection): Promise<number> {
  const params: unknown[] = [];
  const where = selectionWhere(selection, params);
  const row = await db
    .prepare(`SELECT count(*) AS n FROM deliveries WHERE ${where}`)
    .bind(...params)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** Replays up to `limit` of the selected deliveries, oldest first; returns their ids. */
export async function replaySelected(
  db: D1,
  selection: ReplaySelection,
  limit: number,
  now: string,
): Promise<string[]> {
  const params: unknown[] = [now];
  const where = selectionWhere(selection, params);
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET ${REARM}
       WHERE id IN (SELECT id FROM deliveries WHERE ${where} ORDER BY created_at, id LIMIT ?)
       RETURNING id`,
    )
    .bind(...params, limit)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

/** The sort key of a delivery in a replay's order (oldest first). */
export interface ReplayPosition {
  created_at: string;
  id: string;
}

/** The next `limit` selected deliveries after `after` (exclusive), oldest first, without changing them. */
export async function replayCandidates(
  db: D1,
  selection: ReplaySelection,
  after: ReplayPosition | null,
  limit: number,
): Promise<ReplayPosition[]> {
  const params: unknown[] = [];
  let where = selectionWhere(selection, params);
  if (after !== null) {
    where += " AND (created_at, id) > (?, ?)";
    params.push(after.created_at, after.id);
  }
  const { results } = await db
    .prepare(`SELECT created_at, id FROM deliveries WHERE ${where} ORDER BY created_at, id LIMIT ?`)
    .bind(...params, limit)
    .all<ReplayPosition>();
  return results;
}

/**
 * Replays those of `ids` that the selection still takes, only while `guard` holds (a condition of
 * the caller's, evaluated before the statement changes anything: a bulk job's step checks that
 * no other step got there first). Runs in the caller's batch.
 */
export function replayIdsStatement(
  db: D1,
  ids: readonly string[],
  selection: ReplaySelection,
  now: string,
  guard: { sql: string; params: unknown[] },
): D1PreparedStatement {
  const params: unknown[] = [now, JSON.stringify(ids)];
  const where = selectionWhere(selection, params);
  return db
    .prepare(
      `UPDATE deliveries SET ${REARM}
       WHERE id IN (SELECT value FROM json_each(?)) AND ${where} AND ${guard.sql}`,
    )
    .bind(...params, ...guard.params);
}

/** The DLQ's verdict: a delivery whose messages exhausted the queue's retries is dead. */
export function markDeadStatement(db: D1, id: string, reason: string, now: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE deliveries SET ${to("giveUp")}, last_error = ?, lease_until = NULL, updated_at = ?
       WHERE id = ? AND ${from("giveUp")}`,
    )
    .bind(reason, now, id);
}

export async function getDelivery(
  db: D1,
  id: string,
): Promise<{ delivery: DeliveryRow | null; attempts: AttemptRow[] }> {
  const [delivery, attempts] = await db.batch([
    db.prepare("SELECT * FROM deliveries WHERE id = ?").bind(id),
    db.prepare("SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt").bind(id),
  ]);
  return {
    delivery: (delivery?.results[0] as DeliveryRow | undefined) ?? null,
    attempts: (attempts?.results ?? []) as AttemptRow[],
  };
}

export interface DeliveryFilter {
  partner_id?: string | undefined;
  state?: string | undefined;
  event_id?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  network_id?: string | undefined;
  transaction_id?: string | undefined;
}

/** Newest first by `created_at`; `after` is the sort key of the last row of the previous page. */
export async function listDeliveries(
  db: D1,
  filter: DeliveryFilter,
  limit: number,
  after: [string, string] | null,
): Promise<DeliveryRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM deliveries
       WHERE (?1 IS NULL OR partner_id = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR event_id = ?3)
         AND (?4 IS NULL OR created_at >= ?4) AND (?5 IS NULL OR created_at < ?5)
         AND (?6 IS NULL OR (created_at, id) < (?6, ?7))
         AND (?9 IS NULL OR network_id = ?9) AND (?10 IS NULL OR transaction_id = ?10)
       ORDER BY created_at DESC, id DESC LIMIT ?8`,
    )
    .bind(
      filter.partner_id ?? null,
      filter.state ?? null,
      filter.event_id ?? null,
      filter.since ?? null,
      filter.until ?? null,
      after?.[0] ?? null,
      after?.[1] ?? null,
      limit,
      filter.network_id ?? null,
      filter.transaction_id ?? null,
    )
    .all<DeliveryRow>();
  return results;
}

/** Every attempt of these deliveries, by delivery and attempt number (a conversion's page shows them all). */
export async function attemptsOfDeliveries(db: D1, ids: readonly string[]): Promise<AttemptRow[]> {
  if (ids.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT * FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))
       ORDER BY delivery_id, attempt`,
    )
    .bind(JSON.stringify(ids))
    .all<AttemptRow>();
  return results;
}
