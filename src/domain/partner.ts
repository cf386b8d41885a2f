/** A partner as every part of the hub sees it (stored, routed, rendered, sent to), and what a delivery carries. */
import type { EventMessage } from "./messages";
import type { ConversionStatus, PLATFORMS } from "./postback";

/** A partner's id: `ptn_` and a sortable id (lib/bytes.ts newId). */
export const PARTNER_ID_PATTERN = /^ptn_[0-9a-hjkmnp-tv-z]{26}$/;

/** The longest a partner may take to answer; bounds every attempt, and so the consumer's lease. */
export const MAX_PARTNER_TIMEOUT_MS = 30_000;

export interface PartnerFilters {
  networks?: string[] | undefined;
  campaign_ids?: string[] | undefined;
  statuses?: ConversionStatus[] | undefined;
  event_types?: string[] | undefined;
  platforms?: (typeof PLATFORMS)[number][] | undefined;
}

export const PARTNER_ROUTINGS = ["filters", "attributed"] as const;
export type PartnerRouting = (typeof PARTNER_ROUTINGS)[number];

export interface Partner {
  id: string;
  name: string;
  status: "active" | "disabled";
  disabled_reason: string | null;
  url_template: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  body_template: string | null;
  sign: boolean;
  timeout_ms: number;
  retry_schedule_seconds: number[];
  filters: PartnerFilters;
  receives_test_traffic: boolean;
  /**
   * filters: every conversion its filters match (an analytics sink, a warehouse); attributed:
   * only the conversions attributed to it (its clicks, or a network naming it), filters still
   * narrowing them.
   */
  routing: PartnerRouting;
  /** Whether an attributed partner's postbacks carry the network's amount and currency. */
  share_amount: boolean;
  created_at: string;
  updated_at: string;
}

/** What a delivery renders: the event, the conversion after it, and where it came from. */
export interface DeliveryPayload {
  network_id: string;
  transaction_id: string;
  event_id: string;
  verdict: "accepted" | "updated";
  received_at: string;
  previous_status: ConversionStatus | null;
  /** A test event: only partners that take test traffic receive it. */
  test?: boolean;
  conversion: EventMessage["conversion"];
  /** Whose conversion it is and what it pays; absent for deliveries made before attribution. */
  attribution?: DeliveryAttribution;
}

/** The attribution a delivery carries (its macros: docs/partners-and-delivery.md). */
export interface DeliveryAttribution {
  verdict: string;
  offer_id: string | null;
  /** The partner credited (click or direct), else null. */
  partner_id: string | null;
  clicked_at: string | null;
  /** The credited partner's payout after this event, and before it. */
  payout: string | null;
  previous_payout: string | null;
  payout_currency: string | null;
}
