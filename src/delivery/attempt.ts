/**
 * One delivery attempt, the one way every caller makes it: claim the delivery in D1 (due,
 * unleased, partner active), render and sign the request, send it with the partner's timeout,
 * record the attempt and the delivery's new state in one D1 batch. Answers when to try again and
 * what the partner did, for the caller's retry and its pace.
 */

import type { Click } from "../domain/click";
import { type DeliveryPayload, MAX_PARTNER_TIMEOUT_MS, type Partner } from "../domain/partner";
import type { ConversionStatus } from "../domain/postback";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import {
  type AttemptRow,
  claimDelivery,
  type DeliveryRow,
  disablePartnerStatements,
  finishAttemptStatements,
  markDeadStatement,
  parkDeliveriesStatement,
  payloadOf,
  releaseLeaseStatement,
  unclaimStatement,
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
  /** With `countsToCaller`: the /metrics counts of the attempt it recorded (storage/metrics.ts), if it recorded one. */
  counts?: Record<string, number>;
}

/** Early queue redelivery is tolerated by this much before a message counts as not yet due. */
const DUE_SLACK_MS = 2_000;
/**
 * A lease outlives the longest attempt (the partner's timeout, then one D1 batch), so two messages
 * of one delivery never send at once; once it lapses, a crashed consumer's delivery is taken again.
 */
const LEASE_MARGIN_MS = 15_000;
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

/** How one attempt renders, when its caller knows better than the delivery's payload. */
export interface AttemptOptions {
  /** What `{previous_status}` says: for a coalescing partner, the status it last received. */
  previousStatus?: ConversionStatus | null;
  /**
   * The caller adds the attempt's /metrics counts itself (a partner coordinator, at most once a
   * second): the attempt's batch leaves them out and the report carries them.
   */
  countsToCaller?: boolean;
}

/** Makes the attempt if it is due. */
export async function attemptDelivery(
  deliveryId: string,
  deps: AttemptDeps,
  options: AttemptOptions = {},
): Promise<AttemptReport> {
  const now = deps.now ?? Date.now;
  const startedMs = now();
  const iso = (ms: number) => new Date(ms).toISOString();
  const claim = await claimDelivery(
    deps.db,
    deliveryId,
    iso(startedMs),
    iso(startedMs + DUE_SLACK_MS),
    iso(startedMs + MAX_PARTNER_TIMEOUT_MS + LEASE_MARGIN_MS),
  );
  if (!claim.claimed)
    return { retryInSeconds: await notClaimed(claim.delivery, claim.partner, startedMs, deps), sent: null };
  try {
    return await attemptClaimed(claim.delivery, claim.partner, startedMs, deps, options);
  } catch (error) {
    // Let the retried message (or the sweep) take it again at once rather than after the lease.
    await deps.db
      .batch([releaseLeaseStatement(deps.db, claim.delivery.id, claim.delivery.lease_until)])
      .catch(() => undefined);
    throw error;
  }
}

async function attemptClaimed(
  delivery: DeliveryRow,
  partner: Partner,
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
  const payload =
    options.previousStatus === undefined ? stored : { ...stored, previous_status: options.previousStatus };
  const click = await clickOf(payload, deps.db, startedMs);
  if (click === "not yet") {
    await deps.db.batch([unclaimStatement(deps.db, delivery.id, delivery.lease_until)]);
    return { retryInSeconds: CLICK_WAIT_SECONDS, sent: null };
  }
  const values = macroValues(payload, delivery.id, delivery.attempts, { partner, click });
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
    const counts = await failWithoutSending(delivery, partner, startedMs, deps, options, {
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
    attempt: delivery.attempts,
    partner_id: partner.id,
    started_at: iso(startedMs),
    ...describeOutcome(result.outcome),
    latency_ms: Math.max(0, Math.round(result.latencyMs)),
    response_excerpt: result.excerpt,
    outcome: next.outcome,
  };
  const statements = finishAttemptStatements(
    deps.db,
    {
      attempt: attemptRow,
      state: next.state,
      retries: next.retries,
      next_attempt_at: next.retryInSeconds === null ? null : iso(finishedMs + next.retryInSeconds * 1000),
      now: iso(finishedMs),
      lease: delivery.lease_until,
    },
    { countMetrics: !options.countsToCaller },
  );
  if (next.disablesPartner) statements.push(...disablePartnerStatements(deps.db, partner.id, "gone", iso(finishedMs)));
  await deps.db.batch(statements);
  if (next.disablesPartner) {
    await deps.alert({ partner_id: partner.id, name: partner.name, reason: "the partner answered 410 Gone" });
  }
  const retryAfterSeconds =
    result.outcome.kind === "response" ? parseRetryAfter(result.outcome.retryAfter, finishedMs) : null;
  return {
    retryInSeconds: next.retryInSeconds,
    sent: { outcome: result.outcome, latencyMs: result.latencyMs, retryAfterSeconds },
    ...(options.countsToCaller ? { counts: attemptCounts(attemptRow, next.state) } : {}),
  };
}

/**
 * Records an attempt that never left (the request could not be rendered, or was blocked) and fails
 * the delivery; answers its counts when the caller adds them (`countsToCaller`).
 */
async function failWithoutSending(
  delivery: DeliveryRow,
  partner: Partner,
  startedMs: number,
  deps: AttemptDeps,
  options: AttemptOptions,
  failure: { error_class: "render" | "blocked"; error: string },
): Promise<Pick<AttemptReport, "counts">> {
  const iso = (ms: number) => new Date(ms).toISOString();
  const attempt: AttemptRow = {
    delivery_id: delivery.id,
    attempt: delivery.attempts,
    partner_id: partner.id,
    started_at: iso(startedMs),
    http_status: null,
    ...failure,
    latency_ms: 0,
    response_excerpt: null,
    outcome: "failed",
  };
  await deps.db.batch(
    finishAttemptStatements(
      deps.db,
      {
        attempt,
        state: "failed",
        retries: delivery.retries,
        next_attempt_at: null,
        now: iso((deps.now ?? Date.now)()),
        lease: delivery.lease_until,
      },
      { countMetrics: !options.countsToCaller },
    ),
  );
  return options.countsToCaller ? { counts: attemptCounts(attempt, "failed") } : {};
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
 * Why a message found nothing to do: the delivery is finished or parked (ack), another consumer
 * holds it (ack: that one will finish it), it is not due yet (come back then), or its partner is
 * disabled or gone (park it, or fail it).
 */
async function notClaimed(
  delivery: DeliveryRow | null,
  partner: Partner | null,
  nowMs: number,
  deps: AttemptDeps,
): Promise<number | null> {
  if (!delivery || (delivery.state !== "pending" && delivery.state !== "retrying")) return null;
  if (partner?.status !== "active") {
    const now = new Date(nowMs).toISOString();
    await deps.db.batch([
      partner
        ? parkDeliveriesStatement(deps.db, partner.id, now)
        : markDeadStatement(deps.db, delivery.id, "the partner no longer exists", now),
    ]);
    return null;
  }
  // Held by another consumer, or not due yet: come back then. Never ack an unfinished delivery:
  // if the holder dies, this message is what takes it up again (the claim prevents a double send).
  const leaseMs = delivery.lease_until ? Date.parse(delivery.lease_until) - nowMs : 0;
  const dueMs = delivery.next_attempt_at ? Date.parse(delivery.next_attempt_at) - nowMs : 0;
  const waitMs = Math.max(leaseMs, dueMs);
  return waitMs > 0 ? Math.max(1, Math.ceil(waitMs / 1000)) : 1;
}
