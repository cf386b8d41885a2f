/** From a partner and a delivery to the exact request the partner receives (shared by sending and preview). */

import type { DeliveryPayload, Partner } from "./partner";
import type { PartnerRequest } from "./partner-client";
import { defaultBody, dotSegmentFromValues, type MacroValues, renderBody, renderUrl } from "./template";

export function macroValues(payload: DeliveryPayload, deliveryId: string, attempt: number): MacroValues {
  const c = payload.conversion;
  return {
    values: {
      transaction_id: payload.transaction_id,
      network_id: payload.network_id,
      status: c.status,
      previous_status: payload.previous_status,
      amount: c.amount,
      currency: c.currency,
      event_time: c.event_time,
      event_type: c.event_type,
      campaign_id: c.campaign_id,
      click_id: c.click_id,
      user_id: c.user_id,
      device_id: c.device_id,
      platform: c.platform,
      event_id: payload.event_id,
      delivery_id: deliveryId,
      attempt,
      verdict: payload.verdict,
      received_at: payload.received_at,
      test: payload.test === true,
    },
    meta: c.meta ?? {},
  };
}

/** A template that cannot make a valid request for this conversion (checked before anything is sent). */
export class RenderError extends Error {
  override name = "RenderError";
}

/**
 * The request without signature headers (they depend on the moment it is sent). A body template
 * is linted with a full sample when saved, but a conversion lacking a field can still leave an
 * unquoted macro empty (`"payout":}`): such a body is refused here rather than sent broken. So is a
 * value that would make a `.` or `..` path segment, which the URL parser would resolve.
 */
export function renderRequest(partner: Partner, values: MacroValues): PartnerRequest {
  const dots = dotSegmentFromValues(partner.url_template, values);
  if (dots !== null) {
    const macros = dots.macros.map((name) => `{${name}}`).join(", ");
    throw new RenderError(
      `${macros} would make the path segment "${dots.segment}" for this conversion, and the URL parser resolves "." and ".." segments (in any spelling), so the request would go to another path; this value can only be delivered in the query`,
    );
  }
  let body: string | null = null;
  if (partner.method === "POST") {
    body = partner.body_template === null ? defaultBody(values) : renderBody(partner.body_template, values);
    try {
      JSON.parse(body);
    } catch (error) {
      throw new RenderError(`the body template rendered invalid JSON for this conversion: ${String(error)}`);
    }
  }
  return {
    method: partner.method,
    url: renderUrl(partner.url_template, values),
    headers: { ...partner.headers },
    body,
  };
}
