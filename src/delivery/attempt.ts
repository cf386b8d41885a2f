/**
 * One delivery attempt, the one way its partner's coordinator makes it: read the delivery, its
 * partner and what the partner last received of the conversion (due, partner active), render and
 * sign the request, send it with the partner's timeout, record the attempt and the delivery's new
 * state in one D1 batch. Answers when to try again and what the partner did, for the coordinator's
 * retry and its pace.
 */

import type { Click } from "../domain/click";
import { isUnfinished } from "../domain/delivery";
import type { DeliveryPayload, Partner } from "../domain/partner";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import {
  type AttemptRow,
  type DeliveryRow,
  type DeliveryStanding,
  deliveryStanding,
  disablePartnerStatements,
  finishAttemptStatements,
  type LastDelivered,
  markDeadStatement,
  parkDeliveriesStatement,
  payloadOf,
  readForAttempt,
} from "../storage/deliveries";
import { attemptCounts } from "../storage/metrics";
import { clicksById } from "../storage/offers";
import { afterAttempt } from "./delivery-state";
import { sendPartnerRequest } from "./partner-client";
import { forgetPartnerKeys, partnerSigningKeys } from "./partner-keys";
import { buildPartnerRequest, macroValues } from "./render";
import { type AttemptOutcome, parseRetryAfter } from "./retry-policy";

export interface AttemptDeps {
  db: D1;
  fetch: typeof fetch;
  encryptionKey: string;
  /** ALLOW_INSECURE_PARTNER_URLS as configured now, not when the partner was saved. */
  allowInsecurePartnerUrls: boolean;
  /** Told when a partner is disabled for answering 410. */
  alert: (alert: { partner_id: string; name: string; reason: string }) => Promise<void>;
  now?: () => number;
  random?: () => number;
}

/** What an attempt did: when the delivery wants its next one, and what the partner answered. */
export interface AttemptReport {
  /** Seconds until the delivery should be tried again; null when it is finished, parked or not ours. */
  retryInSeconds: number | null;
  /** The request and its outcome, when one was sent. */
  sent: { outcome: AttemptOutcome; latencyMs: number; retryAfterSeconds: number | null } | null;
  /** The /metrics counts of the attempt it recorded (storage/metrics.ts), if it recorded one: the coordinator adds them. */
  counts?: Record<string, number>;
  /**
   * Not sent (`fresh`): the partner already received a newer event of the conversion, so this one
   * would tell it something older than what it knows. The coordinator supersedes it.
   */
  newerDelivered?: true;
}

/** Early queue redelivery is tolerated by this much before a message counts as not yet due. */
const DUE_SLACK_MS = 2_000;
/**
 * A click's record reaches D1 through its own queue, seconds after the redirect; a conversion
 * that follows its click faster than that waits for it (up to CLICK_SETTLE_MS after the click), so
 * its partner gets its sub ids. After that, the delivery goes without them.
 */
const CLICK_SETTLE_MS = 120_000;
const CLICK_WAIT_SECONDS = 5;

/** The attributed click's record, null when there is none to wait for, or "not yet". */
async function clickOf(payload: DeliveryPayload, db: D1, nowMs: number): Promise<Click | null | "not yet"> {
  const clickId = payload.conversion.click_id;
  const clickedAt = payload.attribution?.clicked_at;
  if (payload.attribution?.verdict !== "click" || !clickId || !clickedAt) return null;
  const id = clickId.trim().toLowerCase();
  const click = (await clicksById(db, [id])).get(id);
  if (click) return click;
  return nowMs - Date.parse(clickedAt) < CLICK_SETTLE_MS ? "not yet" : null;
}

/** What the coordinator knows of the delivery that its row does not say. */
export interface AttemptOptions {
  /**
   * A coalescing partner: `{previous_status}` says the status the partner last received of the
   * conversion (rather than the payload's own, the status before the event).
   */
  coalesce?: boolean;
  /**
   * A first delivery (not an operator's replay or resume): not sent when the partner already
   * received a newer event of the conversion (`newerDelivered`). A replay is sent as asked.
   */
  fresh?: boolean;
}

/** Makes the attempt if it is due. */
export async function attemptDelivery(
  deliveryId: string,
  deps: AttemptDeps,
  options: AttemptOptions = {},
): Promise<AttemptReport> {
  const now = deps.now ?? Date.now;
  const startedMs = now();
  const read = await readForAttempt(deps.db, deliveryId, new Date(startedMs + DUE_SLACK_MS).toISOString());
  if (!read.due) return { retryInSeconds: await notDue(read.delivery, read.partner, startedMs, deps), sent: null };
  const position = payloadOf(read.delivery).conversion.version;
  if (options.fresh && read.lastDelivered !== null && read.lastDelivered.position > position) {
    return { retryInSeconds: null, sent: null, newerDelivered: true };
  }
  return attemptDue(read.delivery, read.partner, read.lastDelivered, startedMs, deps, options);
}

async function attemptDue(
  delivery: DeliveryRow,
  partner: Partner,
  lastDelivered: LastDelivered | null,
  startedMs: number,
  deps: AttemptDeps,
  options: AttemptOptions,
): Promise<AttemptReport> {
  const now = deps.now ?? Date.now;
  const iso = (ms: number) => new Date(ms).toISOString();
  // The URL is judged again now, as `fetch` will parse it: a partner saved under other rules
  // (insecure URLs allowed then), or a value the template checks could not foresee, must not make
  // the hub connect.
  const stored = payloadOf(delivery);
  const payload = options.coalesce ? { ...stored, previous_status: lastDelivered?.status ?? null } : stored;
  const click = await clickOf(payload, deps.db, startedMs);
  if (click === "not yet") return { retryInSeconds: CLICK_WAIT_SECONDS, sent: null };
  const values = macroValues(payload, delivery.id, delivery.attempts + 1, { partner, click });
  const built = await buildPartnerRequest(partner, values, {
    allowInsecure: deps.allowInsecurePartnerUrls,
    signing: partner.sign
      ? async () => {
          const keys = await partnerSigningKeys(deps.db, deps.encryptionKey, partner.id, startedMs);
          // A signing partner never gets an unsigned request; without a key the message is retried.
          if (keys.length === 0) throw new Error(`partner ${partner.id} signs but has no active signing secret`);
          return { keys, deliveryId: delivery.id, timestampSeconds: Math.floor(startedMs / 1000) };
        }
      : undefined,
  });
  if (!built.ok) {
    const blocked = built.error_class === "blocked";
    if (blocked) {
      logLine("warn", {
        message: "delivery blocked before sending",
        delivery_id: delivery.id,
        partner_id: partner.id,
        reason: built.reason,
      });
    }
    const counts = await failWithoutSending(delivery, partner, startedMs, deps, {
      error_class: built.error_class,
      error: blocked ? `blocked before sending: ${built.reason}` : built.reason,
    });
    return { retryInSeconds: null, sent: null, ...counts };
  }
  const request = built.request;
  const result = await sendPartnerRequest(request, { timeoutMs: partner.timeout_ms, fetch: deps.fetch, now });
  const finishedMs = now();
  if (partner.sign && result.outcome.kind === "response" && [401, 403].includes(result.outcome.status)) {
    forgetPartnerKeys(partner.id);
  }
  const next = afterAttempt({
    outcome: result.outcome,
    retries: delivery.retries,
    schedule: partner.retry_schedule_seconds,
    finishedMs,
    ...(deps.random ? { random: deps.random } : {}),
  });
  const attemptRow: AttemptRow = {
    delivery_id: delivery.id,
    attempt: delivery.attempts + 1,
    partner_id: partner.id,
    started_at: iso(startedMs),
    ...describeOutcome(result.outcome),
    latency_ms: Math.max(0, Math.round(result.latencyMs)),
    response_excerpt: result.excerpt,
    outcome: next.outcome,
  };
  const statements = finishAttemptStatements(deps.db, {
    attempt: attemptRow,
    state: next.state,
    retries: next.retries,
    next_attempt_at: next.retryInSeconds === null ? null : iso(finishedMs + next.retryInSeconds * 1000),
    now: iso(finishedMs),
    read: delivery,
  });
  const resultAt = statements.length - 1;
  if (next.disablesPartner) statements.push(...disablePartnerStatements(deps.db, partner.id, "gone", iso(finishedMs)));
  const results = await deps.db.batch(statements);
  if (next.disablesPartner) {
    await deps.alert({ partner_id: partner.id, name: partner.name, reason: "the partner answered 410 Gone" });
  }
  const retryAfterSeconds =
    result.outcome.kind === "response" ? parseRetryAfter(result.outcome.retryAfter, finishedMs) : null;
  const standing = results[resultAt]?.results[0] as DeliveryStanding | undefined;
  return {
    // As the delivery now stands: an operator's change, or another attempt recorded first (two
    // senders at once, e.g. across a deploy), decides what comes next, not this attempt's outcome.
    retryInSeconds: retryOf(standing ?? (await deliveryStanding(deps.db, delivery.id)), finishedMs),
    sent: { outcome: result.outcome, latencyMs: result.latencyMs, retryAfterSeconds },
    // Counted only when recorded: another attempt recorded first leaves this one out of D1's counts too.
    ...(standing ? { counts: attemptCounts(attemptRow, next.state) } : {}),
  };
}

/** Seconds until a delivery standing so is due again; null when it is finished, parked or gone. */
function retryOf(standing: DeliveryStanding | null, nowMs: number): number | null {
  if (!standing || !isUnfinished(standing.state)) return null;
  const dueMs = standing.next_attempt_at ? Date.parse(standing.next_attempt_at) - nowMs : 0;
  return Math.max(1, Math.ceil(dueMs / 1000));
}

/**
 * Records an attempt that never left (the request could not be rendered, or was blocked) and fails
 * the delivery; answers its counts if it was recorded.
 */
async function failWithoutSending(
  delivery: DeliveryRow,
  partner: Partner,
  startedMs: number,
  deps: AttemptDeps,
  failure: { error_class: "render" | "blocked"; error: string },
): Promise<Pick<AttemptReport, "counts">> {
  const iso = (ms: number) => new Date(ms).toISOString();
  const attempt: AttemptRow = {
    delivery_id: delivery.id,
    attempt: delivery.attempts + 1,
    partner_id: partner.id,
    started_at: iso(startedMs),
    http_status: null,
    ...failure,
    latency_ms: 0,
    response_excerpt: null,
    outcome: "failed",
  };
  const results = await deps.db.batch(
    finishAttemptStatements(deps.db, {
      attempt,
      state: "failed",
      retries: delivery.retries,
      next_attempt_at: null,
      now: iso((deps.now ?? Date.now)()),
      read: delivery,
    }),
  );
  // Counted only when recorded (another attempt recorded first leaves this one out of D1's counts).
  const recorded = (results[results.length - 1]?.results.length ?? 0) > 0;
  return recorded ? { counts: attemptCounts(attempt, "failed") } : {};
}

function describeOutcome(outcome: AttemptOutcome): Pick<AttemptRow, "http_status" | "error_class" | "error"> {
  switch (outcome.kind) {
    case "response":
      return { http_status: outcome.status, error_class: null, error: null };
    case "timeout":
      return { http_status: null, error_class: "timeout", error: "no answer within the partner's timeout" };
    case "network":
      return { http_status: null, error_class: "network", error: outcome.error };
  }
}

/**
 * Why there was nothing to send: the delivery is finished or parked (done), its partner is disabled
 * or gone (park it, or fail it), or it is not due yet (come back then).
 */
async function notDue(
  delivery: DeliveryRow | null,
  partner: Partner | null,
  nowMs: number,
  deps: AttemptDeps,
): Promise<number | null> {
  if (delivery && isUnfinished(delivery.state) && partner?.status !== "active") {
    const now = new Date(nowMs).toISOString();
    await deps.db.batch([
      partner
        ? parkDeliveriesStatement(deps.db, partner.id, now)
        : markDeadStatement(deps.db, delivery.id, "the partner no longer exists", now),
    ]);
    return null;
  }
  return retryOf(delivery, nowMs);
}
