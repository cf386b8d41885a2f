/** SQL for partners and their signing secrets. */

import {
  type BreakerSettings,
  DEFAULT_BREAKER,
  type DeliveryOrder,
  type Partner,
  type PartnerFilters,
} from "../domain/partner";
import type { D1 } from "./d1";
import { from, REPLAYABLE } from "./delivery-moves";

interface PartnerRow {
  id: string;
  name: string;
  status: "active" | "disabled";
  disabled_reason: string | null;
  url_template: string;
  method: "GET" | "POST";
  headers: string;
  body_template: string | null;
  sign: number;
  timeout_ms: number;
  retry_schedule: string;
  filters: string;
  receives_test_traffic: number;
  routing: Partner["routing"];
  share_amount: number;
  delivery_order: DeliveryOrder;
  max_in_flight: number;
  max_per_second: number | null;
  breaker: string;
  paused_reason: string | null;
  paused_at: string | null;
  created_at: string;
  updated_at: string;
}

/** A partner's breaker as stored ('{}', or the fields the operator set) over the defaults. */
function breakerOf(stored: string): BreakerSettings {
  return { ...DEFAULT_BREAKER, ...(JSON.parse(stored) as Partial<BreakerSettings>) };
}

export interface PartnerSecretRow {
  id: string;
  partner_id: string;
  ciphertext: string;
  created_at: string;
  expires_at: string | null;
}

export function toPartner(row: PartnerRow): Partner {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    disabled_reason: row.disabled_reason,
    url_template: row.url_template,
    method: row.method,
    headers: JSON.parse(row.headers) as Record<string, string>,
    body_template: row.body_template,
    sign: row.sign === 1,
    timeout_ms: row.timeout_ms,
    retry_schedule_seconds: JSON.parse(row.retry_schedule) as number[],
    filters: JSON.parse(row.filters) as PartnerFilters,
    receives_test_traffic: row.receives_test_traffic === 1,
    routing: row.routing,
    share_amount: row.share_amount === 1,
    delivery_order: row.delivery_order,
    max_in_flight: row.max_in_flight,
    max_per_second: row.max_per_second,
    breaker: breakerOf(row.breaker),
    paused_reason: row.paused_reason,
    paused_at: row.paused_at,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

function partnerValues(p: Partner): unknown[] {
  return [
    p.name,
    p.status,
    p.disabled_reason,
    p.url_template,
    p.method,
    JSON.stringify(p.headers),
    p.body_template,
    p.sign ? 1 : 0,
    p.timeout_ms,
    JSON.stringify(p.retry_schedule_seconds),
    JSON.stringify(p.filters),
    p.receives_test_traffic ? 1 : 0,
    p.routing,
    p.share_amount ? 1 : 0,
    p.delivery_order,
    p.max_in_flight,
    p.max_per_second,
    JSON.stringify(p.breaker),
    p.updated_at,
  ];
}

export async function insertPartner(db: D1, partner: Partner, secret: Omit<PartnerSecretRow, "expires_at"> | null) {
  const statements = [
    db
      .prepare(
        `INSERT INTO partners (name, status, disabled_reason, url_template, method, headers, body_template, sign,
           timeout_ms, retry_schedule, filters, receives_test_traffic, routing, share_amount, delivery_order, max_in_flight,
           max_per_second, breaker, updated_at, id, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .bind(...partnerValues(partner), partner.id, partner.created_at),
  ];
  if (secret) statements.push(insertPartnerSecretStatement(db, secret));
  await db.batch(statements);
}

/** Writes every mutable field; `secret`, when given, becomes the partner's current signing secret. */
export async function updatePartner(db: D1, partner: Partner, secret: Omit<PartnerSecretRow, "expires_at"> | null) {
  const statements = [
    db
      .prepare(
        `UPDATE partners SET name = ?, status = ?, disabled_reason = ?, url_template = ?, method = ?, headers = ?,
           body_template = ?, sign = ?, timeout_ms = ?, retry_schedule = ?, filters = ?, receives_test_traffic = ?,
           routing = ?, share_amount = ?, delivery_order = ?, max_in_flight = ?, max_per_second = ?, breaker = ?,
           updated_at = ?
         WHERE id = ?`,
      )
      .bind(...partnerValues(partner), partner.id),
  ];
  if (secret) statements.push(insertPartnerSecretStatement(db, secret));
  await db.batch(statements);
}

function insertPartnerSecretStatement(db: D1, secret: Omit<PartnerSecretRow, "expires_at">): D1PreparedStatement {
  return db
    .prepare("INSERT INTO partner_secrets (id, partner_id, ciphertext, created_at) VALUES (?, ?, ?, ?)")
    .bind(secret.id, secret.partner_id, secret.ciphertext, secret.created_at);
}

export async function getPartner(db: D1, id: string): Promise<Partner | null> {
  const row = await db.prepare("SELECT * FROM partners WHERE id = ?").bind(id).first<PartnerRow>();
  return row ? toPartner(row) : null;
}

export async function listPartners(db: D1, limit: number, afterId: string | null): Promise<Partner[]> {
  const { results } = await db
    .prepare("SELECT * FROM partners WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2")
    .bind(afterId, limit)
    .all<PartnerRow>();
  return results.map(toPartner);
}

/** Which of `ids` are partners, in one query (for offers, which name partners by id). */
export async function existingPartnerIds(db: D1, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const { results } = await db
    .prepare("SELECT id FROM partners WHERE id IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify([...new Set(ids)]))
    .all<{ id: string }>();
  return new Set(results.map((row) => row.id));
}

/** Every partner, for routing one queue batch of events. */
export async function allPartners(db: D1): Promise<Partner[]> {
  const { results } = await db.prepare("SELECT * FROM partners ORDER BY id").all<PartnerRow>();
  return results.map(toPartner);
}

/** Deletes the partner; its unfinished deliveries fail (their history stays). */
export async function deletePartner(db: D1, id: string, now: string): Promise<boolean> {
  // Its unfinished deliveries by deliveries_by_state, its parked ones by deliveries_replayable_by_partner
  // (whose condition is said): never every delivery the partner has.
  const failed = "SET state = 'failed', last_error = 'partner deleted', lease_until = NULL, updated_at = ?";
  const [, , deleted] = await db.batch([
    db
      .prepare(`UPDATE deliveries INDEXED BY deliveries_by_state ${failed} WHERE partner_id = ? AND ${from("attempt")}`)
      .bind(now, id),
    db
      .prepare(
        `UPDATE deliveries INDEXED BY deliveries_replayable_by_partner ${failed}
         WHERE partner_id = ? AND ${REPLAYABLE} AND state = 'parked'`,
      )
      .bind(now, id),
    db.prepare("DELETE FROM partners WHERE id = ?").bind(id),
  ]);
  return (deleted?.meta.changes ?? 0) > 0;
}

/** Signing secrets that still sign at `now`, newest first. */
export async function activePartnerSecrets(db: D1, partnerId: string, now: string): Promise<PartnerSecretRow[]> {
  const { results } = await db
    .prepare(
      "SELECT * FROM partner_secrets WHERE partner_id = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id DESC",
    )
    .bind(partnerId, now)
    .all<PartnerSecretRow>();
  return results;
}

export async function rotatePartnerSecret(db: D1, secret: Omit<PartnerSecretRow, "expires_at">, graceEndsAt: string) {
  await db.batch([
    db
      .prepare(
        "UPDATE partner_secrets SET expires_at = ? WHERE partner_id = ? AND (expires_at IS NULL OR expires_at > ?)",
      )
      .bind(graceEndsAt, secret.partner_id, graceEndsAt),
    insertPartnerSecretStatement(db, secret),
  ]);
}

/** What a partner's coordinator needs of it: its order, caps and breaker; null when it is gone. */
export async function partnerCoordination(
  db: D1,
  id: string,
): Promise<{
  order: DeliveryOrder;
  pace: { max_in_flight: number; max_per_second: number | null };
  breaker: BreakerSettings;
} | null> {
  const row = await db
    .prepare("SELECT delivery_order, max_in_flight, max_per_second, breaker FROM partners WHERE id = ?")
    .bind(id)
    .first<Pick<PartnerRow, "delivery_order" | "max_in_flight" | "max_per_second" | "breaker">>();
  if (!row) return null;
  return {
    order: row.delivery_order,
    pace: { max_in_flight: row.max_in_flight, max_per_second: row.max_per_second },
    breaker: breakerOf(row.breaker),
  };
}

/** Marks an active partner paused with `reason` (its breaker open), or no longer paused (null). */
export function pausePartnerStatement(db: D1, id: string, reason: string | null, at: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE partners SET paused_reason = ?1, paused_at = CASE WHEN ?1 IS NULL THEN NULL ELSE coalesce(paused_at, ?2) END
       WHERE id = ?3`,
    )
    .bind(reason, at, id);
}

export interface TransitionRow {
  id: string;
  partner_id: string;
  from: string;
  to: string;
  reason: string;
  at: string;
}

export function insertTransitionStatement(db: D1, row: TransitionRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO partner_transitions (id, partner_id, from_state, to_state, reason, at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO NOTHING`,
    )
    .bind(row.id, row.partner_id, row.from, row.to, row.reason, row.at);
}

/** A partner's breaker transitions, newest first. */
export async function partnerTransitions(db: D1, partnerId: string, limit: number): Promise<TransitionRow[]> {
  const { results } = await db
    .prepare(
      `SELECT id, partner_id, from_state AS "from", to_state AS "to", reason, at FROM partner_transitions
       WHERE partner_id = ? ORDER BY at DESC, id DESC LIMIT ?`,
    )
    .bind(partnerId, limit)
    .all<TransitionRow>();
  return results;
}
