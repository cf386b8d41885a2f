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

/**
 * How a partner hears of a conversion's events: `ordered`, every one, each after the one before
 * it is finished; `coalesce`, only the newest state when several are waiting (docs/partners-and-delivery.md).
 */
export const DELIVERY_ORDERS = ["ordered", "coalesce"] as const;
export type DeliveryOrder = (typeof DELIVERY_ORDERS)[number];

/** The operator's caps on a partner's pace (delivery/pace.ts adapts under them). */
export const DEFAULT_MAX_IN_FLIGHT = 10;
export const MAX_IN_FLIGHT_LIMIT = 100;
export const MAX_PER_SECOND_LIMIT = 1000;

/**
 * A partner's breaker (delivery/breaker.ts): over `window_seconds`, at least `min_attempts`
 * attempts of which at least `failure_percent` % failed open it; a probe goes after
 * `cooldown_seconds`; open for `disable_after_seconds`, the partner is disabled.
 */
export interface BreakerSettings {
  window_seconds: number;
  min_attempts: number;
  failure_percent: number;
  cooldown_seconds: number;
  disable_after_seconds: number;
}

/** From the anchors: Everflow disables after 10 failures in 72 h, Svix after 5 days of failing. */
export const DEFAULT_BREAKER: BreakerSettings = {
  window_seconds: 72 * 3600,
  min_attempts: 10,
  failure_percent: 80,
  cooldown_seconds: 300,
  disable_after_seconds: 5 * 86_400,
};

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
  delivery_order: DeliveryOrder;
  max_in_flight: number;
  /** Attempts started per second at most; null for no cap. */
  max_per_second: number | null;
  breaker: BreakerSettings;
  /** Set while the partner's breaker is open or half-open: its deliveries wait (status `paused`). */
  paused_reason: string | null;
  paused_at: string | null;
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
