/**
 * Operator alerts (docs/partners-and-delivery.md, "Health and alerts"): each is kept in D1 first,
 * then POSTed to ALERT_URL signed with Standard Webhooks (ALERT_SECRET; the alert's id is the
 * `webhook-id`), and sent again by the 15-minute cron until ALERT_URL answers 2xx. An alert that
 * cannot be sent is never fatal to what raised it.
 */
import type { Config } from "../config";
import { newId, utf8 } from "../lib/bytes";
import { logLine } from "../lib/log";
import { importSigningKey, sign } from "../lib/standard-webhooks";
import { type AlertRow, dueAlerts, insertAlertStatement, recordAlertAttempt } from "../storage/alerts";
import type { D1 } from "../storage/d1";

const ALERT_TIMEOUT_MS = 5_000;
/** An alert not received is sent again by each cron run for this long, then given up (and logged). */
const ALERT_GIVE_UP_MS = 7 * 86_400_000;
const RESEND_BATCH = 50;

export type Alert =
  | { type: "partner_disabled"; partner_id: string; name: string; reason: string }
  | {
      type: "partner_breaker";
      partner_id: string;
      from: string;
      to: string;
      reason: string;
    }
  | {
      /** An alert rule's incident (alerts/rules.ts): it started, it lasts, it ended. */
      type: "alert.firing" | "alert.renotify" | "alert.resolved";
      alert_id: string;
      rule: string;
      subject: string;
      summary: string;
      details: Record<string, unknown>;
      started_at: string;
      resolved_at: string | null;
      partner_id?: string | undefined;
    };

/** Where alerts go, and the key they are signed with; null `url`: they are only kept and logged. */
export interface AlertTarget {
  url: string | null;
  secret: string | null;
  fetch?: typeof fetch;
}

export function alertTarget(config: Pick<Config, "ALERT_URL" | "ALERT_SECRET">): AlertTarget {
  return { url: config.ALERT_URL, secret: config.ALERT_SECRET };
}

/**
 * Keeps the alert and sends it once now; the cron sends it again until it is received. `id`, when
 * given, makes raising the same alert twice (a retried caller) keep and send it once.
 */
export async function raiseAlert(db: D1, target: AlertTarget, alert: Alert, id?: string): Promise<void> {
  logLine("warn", { message: "alert", ...alert });
  const row: AlertRow = {
    id: id ?? newId("alr"),
    type: alert.type,
    partner_id: alert.partner_id ?? null,
    payload: JSON.stringify({ ...alert, at: new Date().toISOString() }),
    created_at: new Date().toISOString(),
    attempts: 0,
    next_attempt_at: target.url ? new Date().toISOString() : null,
    delivered_at: null,
    last_error: target.url ? null : "ALERT_URL is not set",
  };
  try {
    const [inserted] = await db.batch([insertAlertStatement(db, row)]);
    // Kept once; with nowhere to send it, kept only.
    if ((inserted?.meta.changes ?? 0) === 0 || !target.url) return;
    await sendAlertRow(db, target, row);
  } catch (error) {
    logLine("error", { message: "alert could not be kept or sent", error: String(error) });
  }
}

/** The cron's part: every alert not yet received is sent again (until ALERT_GIVE_UP_MS after it was raised). */
export async function resendDueAlerts(db: D1, target: AlertTarget, nowMs: number): Promise<number> {
  if (!target.url) return 0;
  const due = await dueAlerts(db, new Date(nowMs).toISOString(), RESEND_BATCH);
  for (const row of due) await sendAlertRow(db, target, row, nowMs);
  return due.length;
}

async function sendAlertRow(db: D1, target: AlertTarget, row: AlertRow, nowMs = Date.now()): Promise<void> {
  const attempts = row.attempts + 1;
  const outcome = await post(target, row, nowMs);
  const givenUp = !outcome.ok && nowMs - Date.parse(row.created_at) >= ALERT_GIVE_UP_MS;
  if (!outcome.ok) {
    logLine("error", { message: "alert not received", alert_id: row.id, attempts, error: outcome.error });
  }
  const next =
    outcome.ok || givenUp ? null : new Date(nowMs + Math.min(3_600_000, 60_000 * 2 ** attempts)).toISOString();
  await db.batch([
    recordAlertAttempt(db, row.id, {
      attempts,
      next_attempt_at: next,
      delivered_at: outcome.ok ? new Date(nowMs).toISOString() : null,
      last_error: outcome.ok ? null : givenUp ? `given up: ${outcome.error}` : outcome.error,
    }),
  ]);
}

async function post(
  target: AlertTarget,
  row: AlertRow,
  nowMs: number,
): Promise<{ ok: true } | { ok: false; error: string }> {
  if (!target.url) return { ok: false, error: "ALERT_URL is not set" };
  // Never unsigned: a receiver that checks signatures must be able to trust every alert it takes.
  if (!target.secret) return { ok: false, error: "ALERT_SECRET is not set, so the alert cannot be signed" };
  const body = utf8(row.payload);
  const timestamp = String(Math.floor(nowMs / 1000));
  try {
    const signature = await sign(await importSigningKey(target.secret), row.id, timestamp, body);
    const response = await (target.fetch ?? fetch)(target.url, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "user-agent": "postback-hub/1.0",
        "webhook-id": row.id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signature,
      },
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(ALERT_TIMEOUT_MS),
    });
    await response.body?.cancel();
    return response.ok ? { ok: true } : { ok: false, error: `ALERT_URL answered ${response.status}` };
  } catch (error) {
    return { ok: false, error: String(error) };
  }
}
