/**
 * Operator alerts (docs/partners-and-delivery.md, "Health and alerts"): each is kept in D1 first,
 * then POSTed to ALERT_URL signed with Standard Webhooks (ALERT_SECRET; the alert's id is the
 * `webhook-id`), and sent again by the 15-minute cron until ALERT_URL answers 2xx. An alert that
 * cannot be sent is never fatal to what raised it.
 */
import type { Config } from "../config";
import { checkOutboundUrl } from "../delivery/url-safety";
import { ProblemError } from "../errors";
import { newId, utf8 } from "../lib/bytes";
import { decryptSecret } from "../lib/credentials";
import { logLine } from "../lib/log";
import { importSigningKey, sign } from "../lib/standard-webhooks";
import {
  type AlertChannelRow,
  type AlertRow,
  DEFAULT_CHANNEL_ID,
  type DueSend,
  dueAlerts,
  dueSends,
  getAlert,
  getAlertChannel,
  getSend,
  insertAlertStatement,
  queueChannelSendsStatement,
  recordAlertAttempt,
  recordSendAttempt,
  replaySends,
  type SendLogRow,
} from "../storage/alerts";
import type { D1 } from "../storage/d1";

const ALERT_TIMEOUT_MS = 5_000;
/**
 * An alert not received is sent again by each cron run for this long, then given up (and logged);
 * after an operator's replay, for this long from the replay.
 */
export const ALERT_GIVE_UP_MS = 7 * 86_400_000;
/** How many sends one cron run makes at most (channels' and ALERT_URL's each): the pace of retries and replays. */
export const RESEND_BATCH = 50;

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

/**
 * Where alerts go: ALERT_URL, signed with ALERT_SECRET (null `url`: only kept and logged), and the
 * alert channels in D1, whose secrets `encryptionKey` opens; `allowInsecure` as for partner URLs.
 */
export interface AlertTarget {
  url: string | null;
  secret: string | null;
  fetch?: typeof fetch;
  encryptionKey?: string;
  allowInsecure?: boolean;
}

export function alertTarget(
  config: Pick<Config, "ALERT_URL" | "ALERT_SECRET" | "ENCRYPTION_KEY" | "ALLOW_INSECURE_PARTNER_URLS">,
): AlertTarget {
  return {
    url: config.ALERT_URL,
    secret: config.ALERT_SECRET,
    encryptionKey: config.ENCRYPTION_KEY,
    allowInsecure: config.ALLOW_INSECURE_PARTNER_URLS,
  };
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
    replayed_at: null,
  };
  try {
    const [inserted] = await db.batch([
      insertAlertStatement(db, row),
      queueChannelSendsStatement(db, row.id, row.created_at),
    ]);
    // Kept once; with nowhere to send it, kept only.
    if ((inserted?.meta.changes ?? 0) === 0) return;
    if (target.url) await sendAlertRow(db, target, row);
    await sendToChannels(db, target, await dueSends(db, row.created_at, RESEND_BATCH, row.id));
  } catch (error) {
    logLine("error", { message: "alert could not be kept or sent", error: String(error) });
  }
}

/** The cron's part: every alert not yet received is sent again (until ALERT_GIVE_UP_MS after it was raised). */
export async function resendDueAlerts(db: D1, target: AlertTarget, nowMs: number): Promise<number> {
  const now = new Date(nowMs).toISOString();
  const sends = await dueSends(db, now, RESEND_BATCH);
  await sendToChannels(db, target, sends, nowMs);
  if (!target.url) return sends.length;
  const due = await dueAlerts(db, now, RESEND_BATCH);
  for (const row of due) await sendAlertRow(db, target, row, nowMs);
  return due.length + sends.length;
}

/** Whether a send's give-up window (from its replay, else from when the alert was raised) is over. */
function pastGiveUp(send: { created_at: string; replayed_at: string | null }, nowMs: number): boolean {
  return nowMs - Date.parse(send.replayed_at ?? send.created_at) >= ALERT_GIVE_UP_MS;
}

/** The next try of a send that failed `attempts` times: 2, 4, 8… minutes, at most an hour. */
function nextTry(nowMs: number, attempts: number): string {
  return new Date(nowMs + Math.min(3_600_000, 60_000 * 2 ** attempts)).toISOString();
}

/** Each due send to its channel; a failed one is tried again later, for up to ALERT_GIVE_UP_MS. */
async function sendToChannels(
  db: D1,
  target: AlertTarget,
  sends: readonly DueSend[],
  nowMs = Date.now(),
): Promise<void> {
  const channels = new Map<string, Promise<AlertChannelRow | null>>();
  for (const send of sends) {
    if (!channels.has(send.channel_id)) channels.set(send.channel_id, getAlertChannel(db, send.channel_id));
    const channel = await channels.get(send.channel_id);
    const attempts = send.attempts + 1;
    const outcome = channel
      ? await postToChannel(target, channel, send, nowMs)
      : ({ ok: false, error: "the channel was deleted" } as const);
    const givenUp = !outcome.ok && (!channel || pastGiveUp(send, nowMs));
    if (!outcome.ok) {
      logLine("error", {
        message: "alert not received by its channel",
        alert_id: send.alert_id,
        channel_id: send.channel_id,
        attempts,
        error: outcome.error,
      });
    }
    await recordSendAttempt(db, send, {
      attempts,
      next_attempt_at: outcome.ok || givenUp ? null : nextTry(nowMs, attempts),
      delivered_at: outcome.ok ? new Date(nowMs).toISOString() : null,
      last_error: outcome.ok ? null : givenUp ? `given up: ${outcome.error}` : outcome.error,
    });
  }
}

/** What a Slack incoming webhook shows of an alert: one line a person reads. */
export function slackText(payload: Record<string, unknown>): string {
  const type = String(payload.type ?? "alert");
  const icon = type === "alert.resolved" ? ":white_check_mark:" : ":rotating_light:";
  const summary =
    typeof payload.summary === "string"
      ? payload.summary
      : `Partner ${String(payload.name ?? payload.partner_id ?? "")}: ${String(payload.reason ?? "")}`;
  const rule = typeof payload.rule === "string" ? ` ${payload.rule}` : "";
  return `${icon} [${type}]${rule}: ${summary}`;
}

async function postToChannel(
  target: AlertTarget,
  channel: AlertChannelRow,
  send: DueSend,
  nowMs: number,
): Promise<{ ok: true } | { ok: false; error: string }> {
  if (channel.status !== "active") return { ok: false, error: "the channel is disabled" };
  if (!target.encryptionKey) return { ok: false, error: "the channel's URL cannot be read without ENCRYPTION_KEY" };
  const url = await decryptSecret(target.encryptionKey, `${channel.id}:url`, channel.url_ciphertext);
  const checked = checkOutboundUrl(url, { allowInsecure: target.allowInsecure ?? false });
  if (!checked.ok) return { ok: false, error: `the channel's URL is refused: ${checked.reason}` };
  const headers: Record<string, string> = { "content-type": "application/json", "user-agent": "postback-hub/1.0" };
  let body: Uint8Array;
  if (channel.format === "slack") {
    body = utf8(JSON.stringify({ text: slackText(JSON.parse(send.payload) as Record<string, unknown>) }));
  } else {
    if (channel.secret_ciphertext === null) {
      return { ok: false, error: "the channel's signing secret cannot be read" };
    }
    body = utf8(send.payload);
    const secret = await decryptSecret(target.encryptionKey, channel.id, channel.secret_ciphertext);
    const timestamp = String(Math.floor(nowMs / 1000));
    headers["webhook-id"] = send.alert_id;
    headers["webhook-timestamp"] = timestamp;
    headers["webhook-signature"] = await sign(await importSigningKey(secret), send.alert_id, timestamp, body);
  }
  try {
    const response = await (target.fetch ?? fetch)(checked.url.toString(), {
      method: "POST",
      headers,
      body,
      redirect: "manual",
      signal: AbortSignal.timeout(ALERT_TIMEOUT_MS),
    });
    await response.body?.cancel();
    return response.ok ? { ok: true } : { ok: false, error: `the channel answered ${response.status}` };
  } catch (error) {
    return { ok: false, error: String(error) };
  }
}

async function sendAlertRow(db: D1, target: AlertTarget, row: AlertRow, nowMs = Date.now()): Promise<void> {
  const attempts = row.attempts + 1;
  const outcome = await post(target, row, nowMs);
  const givenUp = !outcome.ok && pastGiveUp(row, nowMs);
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

// --- replays (docs/monitoring.md#the-send-log) -----------------------------------------------------

/**
 * What a send's `last_error` shows an operator: any URL in it cut to its origin. A fetch error may
 * quote the URL it called, and a channel's URL can be its credential (a Slack webhook's path, a key
 * in a query).
 */
export function shownError(error: string | null): string | null {
  return error === null ? null : error.replace(/\bhttps?:\/\/[^\s"'<>`/]+[^\s"'<>`]*/gi, (url) => `${originOf(url)}/…`);
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(a URL)";
  }
}

/**
 * An operator's replay of one send (given up, or still pending): due now, with a fresh give-up
 * window, and sent at once; when that fails, the cron tries it again on its usual schedule. A
 * received send is not sent again (409): the receiver said 2xx, and a Standard Webhooks receiver
 * would drop the same `webhook-id` anyway. Returns the send as it is after the attempt.
 */
export async function replayAlertSend(
  db: D1,
  target: AlertTarget,
  channelId: string,
  alertId: string,
  nowMs = Date.now(),
): Promise<SendLogRow> {
  await requireChannel(db, target, channelId);
  const send = await getSend(db, channelId, alertId);
  if (!send) {
    throw new ProblemError("not_found", `Alert "${alertId}" was never sent to channel "${channelId}".`, [
      { location: "path.alert_id", message: "not found" },
    ]);
  }
  const now = new Date(nowMs).toISOString();
  if (send.delivered_at !== null || (await replaySends(db, channelId, alertId, now)) === 0) {
    throw new ProblemError("invalid_state", `Alert "${alertId}" was received by channel "${channelId}".`, [
      { location: "path.alert_id", message: `delivered at ${send.delivered_at ?? "(just now)"}` },
    ]);
  }
  logLine("info", { message: "alert send replayed", alert_id: alertId, channel_id: channelId });
  if (channelId === DEFAULT_CHANNEL_ID) {
    const row = await getAlert(db, alertId);
    if (row) await sendAlertRow(db, target, row, nowMs);
  } else {
    await sendToChannels(db, target, await dueSends(db, now, 1, alertId, channelId), nowMs);
  }
  return (await getSend(db, channelId, alertId)) ?? send;
}

/**
 * Every given-up send of a channel back to due now, each with a fresh give-up window; the cron sends
 * them, RESEND_BATCH a run (with the other due sends), so a replay of thousands does not burst.
 */
export async function replayGivenUpSends(
  db: D1,
  target: AlertTarget,
  channelId: string,
  nowMs = Date.now(),
): Promise<number> {
  await requireChannel(db, target, channelId);
  const replayed = await replaySends(db, channelId, null, new Date(nowMs).toISOString());
  logLine("info", { message: "alert sends replayed", channel_id: channelId, sends: replayed });
  return replayed;
}

/** The channel a replay is for: a channel in D1, or the default one when ALERT_URL is set. */
async function requireChannel(db: D1, target: AlertTarget, channelId: string): Promise<void> {
  if (channelId === DEFAULT_CHANNEL_ID) {
    if (!target.url) {
      throw new ProblemError("invalid_state", "ALERT_URL is not set: the default channel has nowhere to send.", [
        { location: "path.channel_id", message: "ALERT_URL is not set" },
      ]);
    }
    return;
  }
  if (!(await getAlertChannel(db, channelId))) throw alertChannelNotFound(channelId);
}

export function alertChannelNotFound(id: string): ProblemError {
  return new ProblemError("not_found", `No alert channel "${id}".`, [
    { location: "path.channel_id", message: "not found" },
  ]);
}
