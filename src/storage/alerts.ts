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
  /** When an operator last replayed it: its give-up window runs from here (else from created_at). */
  replayed_at: string | null;
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
  replayed_at: string | null;
  payload: string;
}

/** Sends not yet received and due, with the alert they send (optionally of one alert, of one channel). */
export async function dueSends(
  db: D1,
  now: string,
  limit: number,
  alertId: string | null = null,
  channelId: string | null = null,
): Promise<DueSend[]> {
  const { results } = await db
    .prepare(
      `SELECT s.alert_id, s.channel_id, s.attempts, s.created_at, s.replayed_at, a.payload
       FROM alert_sends s JOIN alerts a ON a.id = s.alert_id
       WHERE s.next_attempt_at IS NOT NULL AND s.next_attempt_at <= ?1 AND (?2 IS NULL OR s.alert_id = ?2)
         AND (?3 IS NULL OR s.channel_id = ?3)
       ORDER BY s.next_attempt_at LIMIT ?4`,
    )
    .bind(now, alertId, channelId, limit)
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

// --- the send log and replays (docs/monitoring.md#the-send-log) ---------------------------------

/** The reserved channel id of ALERT_URL's sends, which are rows of `alerts` (a channel's id is `ach_…`). */
export const DEFAULT_CHANNEL_ID = "default";

/** One alert's send to one channel, as the log shows it. */
export interface SendLogRow {
  alert_id: string;
  type: string;
  rule: string | null;
  subject: string | null;
  attempts: number;
  created_at: string;
  delivered_at: string | null;
  next_attempt_at: string | null;
  last_error: string | null;
  replayed_at: string | null;
}

export const SEND_STATES = ["pending", "delivered", "given_up"] as const;
export type SendState = (typeof SEND_STATES)[number];

/** A send's state from its columns (of the table aliased `t`), as `sendState` derives it, for the filter. */
const stateOf = (t: string) =>
  `CASE WHEN ${t}.delivered_at IS NOT NULL THEN 'delivered' WHEN ${t}.next_attempt_at IS NOT NULL THEN 'pending'
     ELSE 'given_up' END`;

/** What a send is now: received, still tried by the cron, or no longer tried (given up, or nowhere to send). */
export function sendState(row: Pick<SendLogRow, "delivered_at" | "next_attempt_at">): SendState {
  if (row.delivered_at !== null) return "delivered";
  return row.next_attempt_at !== null ? "pending" : "given_up";
}

/** A channel's sends (the default channel's: the alerts themselves), newest first, after the cursor. */
export async function listSends(
  db: D1,
  channelId: string,
  state: SendState | undefined,
  limit: number,
  after: [string, string] | null,
): Promise<SendLogRow[]> {
  const sql =
    channelId === DEFAULT_CHANNEL_ID
      ? `SELECT a.id AS alert_id, a.type, a.payload ->> '$.rule' AS rule, a.payload ->> '$.subject' AS subject,
           a.attempts, a.created_at, a.delivered_at, a.next_attempt_at, a.last_error, a.replayed_at
         FROM alerts a
         WHERE (?1 IS NULL OR ${stateOf("a")} = ?1) AND (?2 IS NULL OR (a.created_at, a.id) < (?2, ?3))
         ORDER BY a.created_at DESC, a.id DESC LIMIT ?4`
      : `SELECT s.alert_id, a.type, a.payload ->> '$.rule' AS rule, a.payload ->> '$.subject' AS subject,
           s.attempts, s.created_at, s.delivered_at, s.next_attempt_at, s.last_error, s.replayed_at
         FROM alert_sends s JOIN alerts a ON a.id = s.alert_id
         WHERE s.channel_id = ?5 AND (?1 IS NULL OR ${stateOf("s")} = ?1)
           AND (?2 IS NULL OR (s.created_at, s.alert_id) < (?2, ?3))
         ORDER BY s.created_at DESC, s.alert_id DESC LIMIT ?4`;
  const parameters = [state ?? null, after?.[0] ?? null, after?.[1] ?? null, limit];
  if (channelId !== DEFAULT_CHANNEL_ID) parameters.push(channelId);
  const { results } = await db
    .prepare(sql)
    .bind(...parameters)
    .all<SendLogRow>();
  return results;
}

/** One send of the log, or null when the channel never had it. */
export async function getSend(db: D1, channelId: string, alertId: string): Promise<SendLogRow | null> {
  if (channelId === DEFAULT_CHANNEL_ID) {
    return db
      .prepare(
        `SELECT id AS alert_id, type, payload ->> '$.rule' AS rule, payload ->> '$.subject' AS subject,
           attempts, created_at, delivered_at, next_attempt_at, last_error, replayed_at FROM alerts WHERE id = ?`,
      )
      .bind(alertId)
      .first<SendLogRow>();
  }
  return db
    .prepare(
      `SELECT s.alert_id, a.type, a.payload ->> '$.rule' AS rule, a.payload ->> '$.subject' AS subject,
         s.attempts, s.created_at, s.delivered_at, s.next_attempt_at, s.last_error, s.replayed_at
       FROM alert_sends s JOIN alerts a ON a.id = s.alert_id WHERE s.channel_id = ? AND s.alert_id = ?`,
    )
    .bind(channelId, alertId)
    .first<SendLogRow>();
}

export async function getAlert(db: D1, id: string): Promise<AlertRow | null> {
  return db.prepare("SELECT * FROM alerts WHERE id = ?").bind(id).first<AlertRow>();
}

/**
 * Puts sends not yet received back to due `now`, their give-up window starting again: one alert's
 * (`alertId`), or every given-up send of the channel (null). Returns how many it put back; a send
 * received meanwhile is left as it is.
 */
export async function replaySends(db: D1, channelId: string, alertId: string | null, now: string): Promise<number> {
  // One alert: given up or pending. All: the given-up ones (the pending ones are on their way anyway).
  const which = alertId === null ? "AND next_attempt_at IS NULL" : "";
  const result =
    channelId === DEFAULT_CHANNEL_ID
      ? await db
          .prepare(
            `UPDATE alerts SET next_attempt_at = ?1, replayed_at = ?1
             WHERE delivered_at IS NULL ${which} AND (?2 IS NULL OR id = ?2)`,
          )
          .bind(now, alertId)
          .run()
      : await db
          .prepare(
            `UPDATE alert_sends SET next_attempt_at = ?1, replayed_at = ?1
             WHERE channel_id = ?3 AND delivered_at IS NULL ${which} AND (?2 IS NULL OR alert_id = ?2)`,
          )
          .bind(now, alertId, channelId)
          .run();
  return result.meta.changes ?? 0;
}
