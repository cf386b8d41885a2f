/**
 * What the partner routes and the console both do to a partner: read its pace and breaker from its
 * coordinator, disable and enable it, rotate its signing secret, preview its request, and replay its
 * failed, dead or parked deliveries. One copy, so the two front ends cannot drift apart.
 */
import { configOf } from "../config";
import { forgetPartnerKeys, partnerSigningKeys } from "../delivery/partner-keys";
import { buildPartnerRequest, macroValues } from "../delivery/render";
import { templateWarnings } from "../delivery/template";
import type { REPLAYABLE_STATES } from "../domain/delivery";
import type { DeliveryPayload, Partner } from "../domain/partner";
import { type FieldError, ProblemError, validationFailed } from "../errors";
import { graceEndsAt, issueCredential } from "../lib/credentials";
import { logLine } from "../lib/log";
import { enqueueDeliveries } from "../queues/delivery-messages";
import { countReplayable, disablePartnerStatements, enablePartner, replaySelected } from "../storage/deliveries";
import { getPartner, partnerTransitions, rotatePartnerSecret } from "../storage/partners";

/** Replays per request; a larger range is replayed by calling again (`remaining` says how many are left). */
export const REPLAY_LIMIT = 1000;

export function partnerNotFound(id: string): ProblemError {
  return new ProblemError("not_found", `No partner "${id}".`, [{ location: "path.partner_id", message: "not found" }]);
}

/** A partner as the API shows it: paused when its breaker holds its deliveries back. */
export function partnerView(partner: Partner) {
  const status = partner.status === "disabled" ? "disabled" : partner.paused_reason ? "paused" : "active";
  return { ...partner, status: status as "active" | "paused" | "disabled" };
}

/** The partner's pace and breaker as its coordinator has them; absent when it cannot be asked now. */
export async function partnerCoordinationOf(env: Env, partnerId: string) {
  try {
    const [status, transitions] = await Promise.all([
      env.COORDINATORS.getByName(partnerId).status(partnerId),
      partnerTransitions(env.DB, partnerId, 20),
    ]);
    return {
      pace: status.pace,
      health: {
        breaker: status.breaker.position === "disabled" ? ("open" as const) : status.breaker.position,
        reason: status.breaker.reason,
        probe_at: status.breaker.probe_at,
        waiting: status.waiting,
        transitions: transitions.map(({ from, to, reason, at }) => ({ from, to, reason, at })),
      },
    };
  } catch (error) {
    logLine("error", { message: "partner coordinator unavailable", partner_id: partnerId, error: String(error) });
    return {};
  }
}

export async function newSigningSecret(env: Env, partnerId: string, now: string) {
  const issued = await issueCredential(configOf(env).ENCRYPTION_KEY, "partner-signing");
  return {
    secret: issued.value,
    row: { id: issued.id, partner_id: partnerId, ciphertext: issued.ciphertext, created_at: now },
  };
}

/** What the templates may send empty (not an error: the answers of create, update and preview say it). */
export function partnerWarnings(partner: Pick<Partner, "url_template" | "body_template" | "method">): FieldError[] {
  return [
    ...templateWarnings(partner.url_template, "body.url_template", "url"),
    ...(partner.method === "POST" && partner.body_template !== null
      ? templateWarnings(partner.body_template, "body.body_template", "body")
      : []),
  ];
}

/** Disables the partner and parks its unfinished deliveries; the partner after. */
export async function disablePartnerNow(env: Env, partnerId: string): Promise<Partner> {
  if (!(await getPartner(env.DB, partnerId))) throw partnerNotFound(partnerId);
  await env.DB.batch(disablePartnerStatements(env.DB, partnerId, "operator", new Date().toISOString()));
  const partner = await getPartner(env.DB, partnerId);
  if (!partner) throw partnerNotFound(partnerId);
  return partner;
}

/** Enables the partner and resumes its parked deliveries (each keeps its id). */
export async function enablePartnerNow(env: Env, partnerId: string): Promise<{ partner: Partner; resumed: number }> {
  const { found, resumed } = await enablePartner(env.DB, partnerId, new Date().toISOString());
  if (!found) throw partnerNotFound(partnerId);
  await enqueueDeliveries(env.DELIVERIES, resumed);
  const partner = await getPartner(env.DB, partnerId);
  if (!partner) throw partnerNotFound(partnerId);
  return { partner, resumed: resumed.length };
}

/** Issues a new signing secret (its value returned once); the older ones keep signing for the grace period. */
export async function rotatePartnerSigningSecret(env: Env, partnerId: string, graceSeconds: number | undefined) {
  if (!(await getPartner(env.DB, partnerId))) throw partnerNotFound(partnerId);
  const nowMs = Date.now();
  const endsAt = graceEndsAt(nowMs, graceSeconds, configOf(env).SECRET_GRACE_PERIOD_SECONDS);
  const { secret, row } = await newSigningSecret(env, partnerId, new Date(nowMs).toISOString());
  await rotatePartnerSecret(env.DB, row, endsAt);
  forgetPartnerKeys(partnerId);
  return { secret_id: row.id, signing_secret: secret, previous_secrets_expire_at: endsAt };
}

/** A realistic conversion for previews, overridable field by field. */
export function samplePayload(
  overrides: Record<string, string | number | boolean | null> = {},
  meta: Record<string, string | number | boolean> = { sub1: "spring" },
): DeliveryPayload {
  const now = new Date().toISOString();
  const field = (key: string, fallback: string | undefined): string | undefined => {
    const value = overrides[key];
    if (value === undefined) return fallback;
    return value === null ? undefined : String(value);
  };
  return {
    network_id: field("network_id", "acme") ?? "acme",
    transaction_id: field("transaction_id", "ord_8812") ?? "ord_8812",
    event_id: "evt_preview",
    verdict: "accepted",
    received_at: now,
    previous_status: null,
    conversion: {
      status: (field("status", "approved") ?? "approved") as DeliveryPayload["conversion"]["status"],
      amount: field("amount", "29.99"),
      currency: field("currency", "USD"),
      event_type: field("event_type", "purchase"),
      campaign_id: field("campaign_id", "camp-987"),
      click_id: field("click_id", "clk_1f3a9"),
      user_id: field("user_id", undefined),
      device_id: field("device_id", undefined),
      platform: field("platform", "web") as DeliveryPayload["conversion"]["platform"],
      meta,
      event_time: field("event_time", now) ?? now,
      first_seen_at: now,
      version: 1,
    },
  };
}

/** The request the partner would receive for a sample conversion, signed as a delivery would be. Sends nothing. */
export async function previewPartner(
  env: Env,
  partnerId: string,
  conversion?: Record<string, string | number | boolean | null>,
  meta?: Record<string, string | number | boolean>,
) {
  const partner = await getPartner(env.DB, partnerId);
  if (!partner) throw partnerNotFound(partnerId);
  const payload = samplePayload(conversion, meta);
  const deliveryId = "dlv_preview";
  const config = configOf(env);
  const nowMs = Date.now();
  // Built the one way deliveries are, so a preview never shows a request that would not leave.
  const built = await buildPartnerRequest(partner, macroValues(payload, deliveryId, 1, { partner }), {
    allowInsecure: config.ALLOW_INSECURE_PARTNER_URLS,
    signing: partner.sign
      ? async () => ({
          keys: await partnerSigningKeys(env.DB, config.ENCRYPTION_KEY, partner.id, nowMs),
          deliveryId,
          timestampSeconds: Math.floor(nowMs / 1000),
        })
      : undefined,
  });
  if (!built.ok && built.error_class === "render") {
    throw validationFailed([{ location: "body.conversion", message: built.reason }]);
  }
  if (!built.ok) {
    throw new ProblemError(
      "invalid_state",
      `Deliveries to this partner would be blocked before sending: ${built.reason}.`,
      [{ location: "path.partner_id", message: built.reason }],
    );
  }
  return { ...built.request, warnings: partnerWarnings(partner) };
}

export interface PartnerReplayRequest {
  states?: (typeof REPLAYABLE_STATES)[number][] | undefined;
  since?: string | undefined;
  until?: string | undefined;
  dry_run: boolean;
}

/** Replays (or, dry, counts) the partner's deliveries in these states and time range, oldest first. */
export async function replayPartnerDeliveries(env: Env, partnerId: string, request: PartnerReplayRequest) {
  const partner = await getPartner(env.DB, partnerId);
  if (!partner) throw partnerNotFound(partnerId);
  const selection = {
    partner_id: partnerId,
    states: request.states ?? ["failed", "dead", "parked"],
    since: request.since ?? null,
    until: request.until ?? null,
  };
  const matched = await countReplayable(env.DB, selection);
  if (request.dry_run) return { dry_run: true, matched, replayed: 0, remaining: matched };
  if (partner.status !== "active") {
    throw new ProblemError("partner_disabled", `Partner "${partnerId}" is disabled; enable it first.`, [
      { location: "path.partner_id", message: "is disabled" },
    ]);
  }
  const ids = await replaySelected(env.DB, selection, REPLAY_LIMIT, new Date().toISOString());
  await enqueueDeliveries(env.DELIVERIES, ids);
  return { dry_run: false, matched, replayed: ids.length, remaining: matched - ids.length };
}
