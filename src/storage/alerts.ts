/** SQL for operator alerts (alerts/alerts.ts). */
import type { D1 } from "./d1";

export interface AlertRow {
  id: string;
  type: string;
  partner_id: string | null;
  payload: string;
  created_at: string;
  attempts: number;
  next_attempt_at: string | null;
  delivered_at: string | null;
  last_error: string | null;
}

export function insertAlertStatement(db: D1, row: AlertRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO alerts (id, type, partner_id, payload, created_at, attempts, next_attempt_at, delivered_at, last_error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    )
    .bind(
      row.id,
      row.type,
      row.partner_id,
      row.payload,
      row.created_at,
      row.attempts,
      row.next_attempt_at,
      row.delivered_at,
      row.last_error,
    );
}

export async function dueAlerts(db: D1, now: string, limit: number): Promise<AlertRow[]> {
  const { results } = await db
    .prepare(
      "SELECT * FROM alerts WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
    )
    .bind(now, limit)
    .all<AlertRow>();
  return results;
}

export function recordAlertAttempt(
  db: D1,
  id: string,
  attempt: Pick<AlertRow, "attempts" | "next_attempt_at" | "delivered_at" | "last_error">,
): D1PreparedStatement {
  return db
    .prepare("UPDATE alerts SET attempts = ?, next_attempt_at = ?, delivered_at = ?, last_error = ? WHERE id = ?")
    .bind(attempt.attempts, attempt.next_attempt_at, attempt.delivered_at, attempt.last_error, id);
}

// --- channels ------------------------------------------------------------------------------------

export interface AlertChannelRow {
  id: string;
  name: string;
  format: "standard_webhooks" | "slack";
  /** As reads show it; the whole URL is `url_ciphertext`'s. */
  url: string;
  url_ciphertext: string;
  secret_ciphertext: string | null;
  status: "active" | "disabled";
  created_at: string;
}

export async function insertAlertChannel(db: D1, row: AlertChannelRow): Promise<void> {
  await db
    .prepare(
      `INSERT INTO alert_channels (id, name, format, url, url_ciphertext, secret_ciphertext, status, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(row.id, row.name, row.format, row.url, row.url_ciphertext, row.secret_ciphertext, row.status, row.created_at)
    .run();
}

export async function listAlertChannels(db: D1): Promise<AlertChannelRow[]> {
  const { results } = await db.prepare("SELECT * FROM alert_channels ORDER BY created_at, id").all<AlertChannelRow>();
  return results;
}

export async function getAlertChannel(db: D1, id: string): Promise<AlertChannelRow | null> {
  return db.prepare("SELECT * FROM alert_channels WHERE id = ?").bind(id).first<AlertChannelRow>();
}

/** Deletes the channel and what it had still to send. */
export async function deleteAlertChannel(db: D1, id: string): Promise<boolean> {
  const [, deleted] = await db.batch([
    db.prepare("DELETE FROM alert_sends WHERE channel_id = ?").bind(id),
    db.prepare("DELETE FROM alert_channels WHERE id = ?").bind(id),
  ]);
  return (deleted?.meta.changes ?? 0) > 0;
}

/** One send per active channel for the alert, in the batch that keeps the alert (kept once). */
export function queueChannelSendsStatement(db: D1, alertId: string, now: string): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO alert_sends (alert_id, channel_id, next_attempt_at, created_at)
       SELECT ?1, id, ?2, ?2 FROM alert_channels WHERE status = 'active'
       ON CONFLICT (alert_id, channel_id) DO NOTHING`,
    )
    .bind(alertId, now);
}

export interface DueSend {
  alert_id: string;
  channel_id: string;
  attempts: number;
  created_at: string;
  payload: string;
}

/** Sends not yet received and due, with the alert they send (optionally of one alert). */
export async function dueSends(db: D1, now: string, limit: number, alertId: string | null = null): Promise<DueSend[]> {
  const { results } = await db
    .prepare(
      `SELECT s.alert_id, s.channel_id, s.attempts, s.created_at, a.payload
       FROM alert_sends s JOIN alerts a ON a.id = s.alert_id
       WHERE s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= ?1 AND (?2 IS NULL OR s.alert_id = ?2)
       ORDER BY s.next_attempt_at LIMIT ?3`,
    )
    .bind(now, alertId, limit)
    .all<DueSend>();
  return results;
}

export async function recordSendAttempt(
  db: D1,
  send: { alert_id: string; channel_id: string },
  outcome: { attempts: number; next_attempt_at: string | null; delivered_at: string | null; last_error: string | null },
): Promise<void> {
  await db
    .prepare(
      `UPDATE alert_sends SET attempts = ?, next_attempt_at = ?, delivered_at = ?, last_error = ?
       WHERE alert_id = ? AND channel_id = ?`,
    )
    .bind(
      outcome.attempts,
      outcome.next_attempt_at,
      outcome.delivered_at,
      outcome.last_error,
      send.alert_id,
      send.channel_id,
    )
    .run();
}
