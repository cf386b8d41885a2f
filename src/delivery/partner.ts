/**
 * Routing: which partners an event goes to, and what each delivery renders. Pure: rows in,
 * decisions out.
 */

import type { EventMessage } from "../domain/messages";
import type { DeliveryAttribution, DeliveryPayload, Partner, PartnerFilters } from "../domain/partner";

/** What routing looks at in an event. */
export interface RoutedEvent {
  network_id: string;
  test?: boolean;
  conversion: Pick<EventMessage["conversion"], "status" | "campaign_id" | "event_type" | "platform">;
  /** The partner the conversion is attributed to, if any. */
  attributed_partner_id?: string | null | undefined;
}

/**
 * Test events go only to partners that take test traffic; an attributed partner hears only of
 * the conversions attributed to it; and the filters narrow what is left.
 */
export function partnerReceives(
  partner: Pick<Partner, "id" | "filters" | "receives_test_traffic" | "routing">,
  message: RoutedEvent,
): boolean {
  if (message.test && !partner.receives_test_traffic) return false;
  if (partner.routing === "attributed" && message.attributed_partner_id !== partner.id) return false;
  return partnerWants(partner.filters, message);
}

/** Empty or absent filters mean "everything"; each non-empty one must contain the event's value. */
export function partnerWants(filters: PartnerFilters, message: RoutedEvent): boolean {
  const c = message.conversion;
  const admits = (allowed: readonly string[] | undefined, value: string | undefined) =>
    !allowed || allowed.length === 0 || (value !== undefined && allowed.includes(value));
  return (
    admits(filters.networks, message.network_id) &&
    admits(filters.campaign_ids, c.campaign_id) &&
    admits(filters.statuses, c.status) &&
    admits(filters.event_types, c.event_type) &&
    admits(filters.platforms, c.platform)
  );
}

/** Accepted and updated events notify partners; duplicates never reach the queue, stale ones do not notify. */
export function notifies(message: EventMessage): message is EventMessage & { verdict: "accepted" | "updated" } {
  return message.verdict === "accepted" || message.verdict === "updated";
}

const BASE32 = "0123456789abcdefghjkmnpqrstvwxyz";

/** Stable per (event, partner): the `webhook-id` a partner sees on every attempt and replay. */
export async function deliveryIdFor(eventId: string, partnerId: string): Promise<string> {
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${eventId}|${partnerId}`)),
  );
  let id = "";
  for (const byte of digest.subarray(0, 16)) id += BASE32[byte % 32];
  return `dlv_${id}`;
}

export function deliveryPayload(
  message: EventMessage & { verdict: "accepted" | "updated" },
  attribution?: DeliveryAttribution,
): DeliveryPayload {
  return {
    network_id: message.network_id,
    transaction_id: message.transaction_id,
    event_id: message.event_id,
    verdict: message.verdict,
    received_at: message.received_at,
    previous_status: message.previous_status,
    test: message.test,
    conversion: message.conversion,
    ...(attribution ? { attribution } : {}),
  };
}
