/**
 * SQL for the alert rules (migration 0017, domain/alert-rules.ts): what each rule reads, each
 * through an index (per partner or per network over a time range, the roll-ups by hour), and the
 * incidents the evaluation keeps.
 */
import type { AlertRule, IncidentState } from "../domain/alert-rules";
import { attemptsSince } from "./attempt-marks";
import type { D1 } from "./d1";

export async function storedRuleSettings(db: D1): Promise<Map<string, unknown>> {
  const { results } = await db
    .prepare("SELECT rule, settings FROM alert_rule_settings")
    .all<{ rule: string; settings: string }>();
  return new Map(results.map((row) => [row.rule, JSON.parse(row.settings) as unknown]));
}

export async function saveRuleSettings(db: D1, rule: AlertRule, settings: unknown, now: string): Promise<void> {
  await db
    .prepare(
      `INSERT INTO alert_rule_settings (rule, settings, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (rule) DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at`,
    )
    .bind(rule, JSON.stringify(settings), now)
    .run();
}

/** partnerAttempts' statement (?1: since), planned by test/storage.indexes.test.ts. */
export const PARTNER_ATTEMPTS_SQL = `SELECT a.partner_id, count(*) AS attempts,
         sum(a.outcome IN ('retry', 'failed', 'gone', 'dead')) AS failed, sum(a.outcome = 'dead') AS dead
       FROM delivery_attempts a
       WHERE ${attemptsSince("a", "?1")}
         AND a.partner_id IN (SELECT p.id FROM partners p WHERE p.status = 'active')
       GROUP BY a.partner_id ORDER BY a.partner_id`;

/**
 * Active partners' attempts since `since`: all of them, the failed ones and the dead ones, for the
 * partners that had any; one read of the attempts since then (attempt-marks.ts).
 */
export async function partnerAttempts(
  db: D1,
  since: string,
): Promise<{ partner_id: string; attempts: number; failed: number; dead: number }[]> {
  const { results } = await db
    .prepare(PARTNER_ATTEMPTS_SQL)
    .bind(since)
    .all<{ partner_id: string; attempts: number; failed: number; dead: number }>();
  return results;
}

export async function oldestWaitingDelivery(db: D1): Promise<string | null> {
  const row = await db
    .prepare("SELECT min(created_at) AS oldest FROM deliveries WHERE state IN ('pending', 'retrying')")
    .first<{ oldest: string | null }>();
  return row?.oldest ?? null;
}

/** Active networks' last accepted postback (from the inbound log), for those that had one. */
export async function lastAcceptedPostbacks(db: D1): Promise<{ network_id: string; last_accepted_at: string }[]> {
  const { results } = await db
    .prepare(
      `SELECT network_id, last_accepted_at FROM (
         SELECT n.id AS network_id,
           (SELECT max(r.received_at) FROM inbound_requests r
             WHERE r.network_id = n.id AND r.verdict IN ('accepted', 'updated')) AS last_accepted_at
         FROM networks n WHERE n.status = 'active')
       WHERE last_accepted_at IS NOT NULL ORDER BY network_id`,
    )
    .all<{ network_id: string; last_accepted_at: string }>();
  return results;
}

/** Active networks' requests since `since`: all of them and those refused (a 4xx). */
export async function networkRejections(
  db: D1,
  since: string,
): Promise<{ network_id: string; requests: number; rejected: number }[]> {
  const { results } = await db
    .prepare(
      `SELECT n.id AS network_id,
         (SELECT count(*) FROM inbound_requests r WHERE r.network_id = n.id AND r.received_at >= ?1) AS requests,
         (SELECT count(*) FROM inbound_requests r WHERE r.network_id = n.id AND r.received_at >= ?1
            AND r.status >= 400 AND r.status < 500) AS rejected
       FROM networks n WHERE n.status = 'active' ORDER BY n.id`,
    )
    .bind(since)
    .all<{ network_id: string; requests: number; rejected: number }>();
  return results;
}

/** Rotated-out credentials that stop working before `before` and were used since `usedSince`. */
export async function expiringCredentialsInUse(
  db: D1,
  now: string,
  before: string,
  usedSince: string,
): Promise<{ id: string; network_id: string; kind: string; expires_at: string; last_used_at: string }[]> {
  const { results } = await db
    .prepare(
      `SELECT id, network_id, kind, expires_at, last_used_at FROM network_secrets
       WHERE expires_at IS NOT NULL AND expires_at > ?1 AND expires_at <= ?2 AND last_used_at >= ?3
       ORDER BY expires_at`,
    )
    .bind(now, before, usedSince)
    .all<{ id: string; network_id: string; kind: string; expires_at: string; last_used_at: string }>();
  return results;
}

/**
 * Offers with at least `minClicks` live clicks since `sinceHour` and no live conversion in those
 * hours, that had conversions in the `usualSinceHour` hours before (from the hourly roll-ups).
 */
export async function clicksWithoutConversions(
  db: D1,
  sinceHour: string,
  usualSinceHour: string,
  minClicks: number,
): Promise<{ offer_id: string; clicks: number }[]> {
  const { results } = await db
    .prepare(
      `SELECT c.offer_id, sum(c.clicks) AS clicks FROM stats_clicks_hourly c
       WHERE c.hour >= ?1 AND c.offer_id != ''
       GROUP BY c.offer_id
       HAVING sum(c.clicks) >= ?3
         AND NOT EXISTS (SELECT 1 FROM stats_conversions_hourly v
           WHERE v.hour >= ?1 AND v.test = 0 AND v.offer_id = c.offer_id AND v.conversions > 0)
         AND EXISTS (SELECT 1 FROM stats_conversions_hourly v
           WHERE v.hour >= ?2 AND v.hour < ?1 AND v.test = 0 AND v.offer_id = c.offer_id AND v.conversions > 0)
       ORDER BY c.offer_id`,
    )
    .bind(sinceHour, usualSinceHour, minClicks)
    .all<{ offer_id: string; clicks: number }>();
  return results;
}

export interface IncidentRow {
  id: string;
  rule: string;
  subject: string;
  state: IncidentState;
  summary: string;
  details: string;
  started_at: string;
  last_notified_at: string;
  notifications: number;
  resolved_at: string | null;
}

export async function openIncidents(db: D1): Promise<IncidentRow[]> {
  const { results } = await db
    .prepare("SELECT * FROM alert_incidents WHERE state = 'open' ORDER BY started_at, id")
    .all<IncidentRow>();
  return results;
}

/** Opens an incident unless one is open for the rule and subject; answers whether this one opened. */
export async function openIncident(
  db: D1,
  row: Omit<IncidentRow, "state" | "notifications" | "resolved_at">,
): Promise<boolean> {
  const { meta } = await db
    .prepare(
      `INSERT INTO alert_incidents (id, rule, subject, state, summary, details, started_at, last_notified_at)
       VALUES (?, ?, ?, 'open', ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
    )
    .bind(row.id, row.rule, row.subject, row.summary, row.details, row.started_at, row.last_notified_at)
    .run();
  return meta.changes > 0;
}

/** A lasting incident, notified again now (with what it says now); false when another run did it first. */
export async function renotifyIncident(
  db: D1,
  id: string,
  previous: string,
  summary: string,
  details: string,
  now: string,
): Promise<boolean> {
  const { meta } = await db
    .prepare(
      `UPDATE alert_incidents SET last_notified_at = ?, notifications = notifications + 1, summary = ?, details = ?
       WHERE id = ? AND state = 'open' AND last_notified_at = ?`,
    )
    .bind(now, summary, details, id, previous)
    .run();
  return meta.changes > 0;
}

export async function resolveIncident(db: D1, id: string, now: string): Promise<boolean> {
  const { meta } = await db
    .prepare("UPDATE alert_incidents SET state = 'resolved', resolved_at = ? WHERE id = ? AND state = 'open'")
    .bind(now, id)
    .run();
  return meta.changes > 0;
}

/** Open ones first, then the most recent; optionally of one state. */
export async function listIncidents(
  db: D1,
  state: IncidentState | undefined,
  limit: number,
  after: [string, string] | null,
): Promise<IncidentRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM alert_incidents
       WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR (started_at, id) < (?2, ?3))
       ORDER BY started_at DESC, id DESC LIMIT ?4`,
    )
    .bind(state ?? null, after?.[0] ?? null, after?.[1] ?? null, limit)
    .all<IncidentRow>();
  return results;
}
