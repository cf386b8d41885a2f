/**
 * Whose conversion it is. Last click: the advertiser passes back the last click id it stored,
 * and a conversion that carries a click id the hub minted, for an offer of the posting network,
 * within the offer's window, belongs to that click's partner. A network that attributes itself
 * may name the partner instead (`partner_id`, authenticated by the network's own credentials).
 * Pure: the verified click, the offers and partners in, a verdict out.
 */

import type { Offer } from "../domain/offer";
import type { ClickIdReading } from "../lib/click-id";
import { looksLikeClickId } from "../lib/click-id";

export const ATTRIBUTION_VERDICTS = [
  /** A verified click id of this network's offer, within the window. */
  "click",
  /** The network named the partner. */
  "direct",
  /** A click id of the hub's shape that does not verify, or names an offer not of this network. */
  "click_invalid",
  /** A verified click id, outside the offer's attribution window. */
  "click_expired",
  /** The partner named (by the click or the network) does not exist, or does not promote the offer. */
  "partner_invalid",
  /** The click's offer is gone, or the network named a partner without a campaign_id of its offers. */
  "offer_invalid",
  /** Neither a hub click id nor a partner: nobody's conversion. */
  "unattributed",
] as const;

export type AttributionVerdict = (typeof ATTRIBUTION_VERDICTS)[number];

export interface Attribution {
  verdict: AttributionVerdict;
  /** Why, in words, for explain and the conversion's record. */
  detail: string;
  offer_id: string | null;
  /** The partner credited: set only for click and direct. */
  partner_id: string | null;
  /** RFC 3339, from the click id. */
  clicked_at: string | null;
}

export interface AttributionInput {
  network_id: string;
  click_id?: string | undefined;
  partner_id?: string | undefined;
  campaign_id?: string | undefined;
  /** When the hub first saw the conversion: the window is measured from the click to this. */
  first_seen_at: string;
  /** The click id read with the hub's key, when the conversion carries one of its shape. */
  reading: ClickIdReading | null;
  offers: ReadonlyMap<string, Offer>;
  /** The network's offer whose campaign_id the conversion carries, for the direct path. */
  campaignOffer: Offer | undefined;
  partnerExists: (id: string) => boolean;
  /** The event names the partner without a click id: the network's word wins over a kept click. */
  named_now?: boolean;
}

const DAY_MS = 86_400_000;
/** A conversion seen this long before its click is clock skew, not time travel. */
const CLOCK_SKEW_MS = 5 * 60_000;

/** Whether the conversion carries a click id of the hub's own shape (else it is the network's own). */
export function hasHubClickId(clickId: string | undefined): clickId is string {
  return clickId !== undefined && looksLikeClickId(clickId);
}

export function attribute(input: AttributionInput): Attribution {
  if (input.named_now && input.partner_id !== undefined) return direct(withClickOffer(input), input.partner_id);
  if (input.reading && hasHubClickId(input.click_id)) return byClick(input, input.reading);
  if (input.partner_id !== undefined) return direct(input, input.partner_id);
  return none("unattributed", "no click id of the hub's and no partner_id");
}

function byClick(input: AttributionInput, reading: ClickIdReading): Attribution {
  if (!reading.ok) {
    return none(
      "click_invalid",
      reading.reason === "forged" ? "the click id does not verify (forged or altered)" : "the click id is malformed",
    );
  }
  const { click } = reading;
  const clickedAt = new Date(click.clicked_at * 1000).toISOString();
  const offer = input.offers.get(click.offer_id);
  if (!offer)
    return { ...none("offer_invalid", `the click's offer ${click.offer_id} does not exist`), clicked_at: clickedAt };
  const seen = { offer_id: offer.id, clicked_at: clickedAt };
  if (offer.network_id !== input.network_id) {
    return { ...none("click_invalid", `the click is for offer ${offer.id} of another network`), clicked_at: clickedAt };
  }
  if (!input.partnerExists(click.partner_id)) {
    return { ...none("partner_invalid", `the click's partner ${click.partner_id} does not exist`), ...seen };
  }
  // As for a partner the network names: one the operator took off the offer since is not paid by it.
  if (offer.partners !== null && !offer.partners.includes(click.partner_id)) {
    return {
      ...none("partner_invalid", `the click's partner ${click.partner_id} does not promote offer ${offer.id}`),
      ...seen,
    };
  }
  const elapsedMs = Date.parse(input.first_seen_at) - click.clicked_at * 1000;
  if (elapsedMs < -CLOCK_SKEW_MS) {
    return { ...none("click_invalid", "the conversion was seen before the click"), ...seen };
  }
  const windowMs = offer.attribution_window_days * DAY_MS;
  if (elapsedMs > windowMs) {
    const days = (elapsedMs / DAY_MS).toFixed(1);
    return {
      ...none(
        "click_expired",
        `${days} days after the click, outside the offer's ${offer.attribution_window_days}-day window`,
      ),
      ...seen,
    };
  }
  const named = input.partner_id !== undefined && input.partner_id !== click.partner_id;
  return {
    verdict: "click",
    detail: `last click by ${click.partner_id}, ${describeElapsed(Math.max(0, elapsedMs))} before the conversion${
      named ? ` (the network named ${input.partner_id}; the verified click wins)` : ""
    }`,
    partner_id: click.partner_id,
    ...seen,
  };
}

function direct(input: AttributionInput, partnerId: string): Attribution {
  const offer = input.campaignOffer;
  if (!input.partnerExists(partnerId)) {
    return {
      ...none("partner_invalid", `the network named partner ${partnerId}, which does not exist`),
      offer_id: offer?.id ?? null,
    };
  }
  // A network credits partners for its own offers only: without one, any network could push
  // conversions (and their postbacks) into any attributed partner.
  if (!offer) {
    const which = input.campaign_id === undefined ? "no campaign_id" : `campaign_id "${input.campaign_id}"`;
    return none("offer_invalid", `the network named partner ${partnerId}, but ${which} names none of its offers`);
  }
  if (offer.partners !== null && !offer.partners.includes(partnerId)) {
    return {
      ...none("partner_invalid", `partner ${partnerId} does not promote offer ${offer.id}`),
      offer_id: offer.id,
    };
  }
  return {
    verdict: "direct",
    detail: `the network named partner ${partnerId}; offer ${offer.id} by its campaign_id`,
    offer_id: offer.id,
    partner_id: partnerId,
    clicked_at: null,
  };
}

/** Without a campaign offer, the network's own offer that the kept click names prices a named partner. */
function withClickOffer(input: AttributionInput): AttributionInput {
  if (input.campaignOffer || !input.reading?.ok) return input;
  const offer = input.offers.get(input.reading.click.offer_id);
  return offer && offer.network_id === input.network_id ? { ...input, campaignOffer: offer } : input;
}

function none(verdict: AttributionVerdict, detail: string): Attribution {
  return { verdict, detail, offer_id: null, partner_id: null, clicked_at: null };
}

function describeElapsed(ms: number): string {
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < DAY_MS) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / DAY_MS).toFixed(1)} days`;
}
