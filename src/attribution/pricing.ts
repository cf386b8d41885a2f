/**
 * What a conversion pays: the offer's payout rules for a partner, and its revenue rules. The first
 * rule whose event type and status match prices the conversion: a fixed amount, a percentage of
 * the conversion's amount, or both (then in one currency). Exact decimals throughout (lib/money.ts),
 * rounded half to even at the currency's minor unit (ISO 4217 exponent), never binary floats.
 */
import { minorUnits } from "../domain/currencies";
import { type Offer, PAYABLE_STATUSES, type PriceRule } from "../domain/offer";
import type { ConversionStatus } from "../domain/postback";
import { add, percentOf, roundHalfEven } from "../lib/money";

export interface Price {
  /** A plain decimal string with exactly the currency's minor digits ("2.50", "300" for JPY). */
  amount: string;
  currency: string;
}

/** What pricing reads of a conversion. */
export interface Priced {
  status: ConversionStatus;
  event_type?: string | undefined;
  amount?: string | undefined;
  currency?: string | undefined;
}

export function isPayable(status: ConversionStatus): boolean {
  return (PAYABLE_STATUSES as readonly string[]).includes(status);
}

/**
 * The price of the first rule that matches and can price the conversion (a percentage needs its
 * amount; fixed plus percentage needs the amount in the fixed currency); null when none does.
 * Declined and reversed conversions are priced by `payoutFor`, not here.
 */
export function priceOf(rules: readonly PriceRule[], conversion: Priced): Price | null {
  for (const rule of rules) {
    if (rule.event_type !== undefined && rule.event_type !== conversion.event_type?.toLowerCase()) continue;
    if (rule.status !== undefined && rule.status !== conversion.status) continue;
    const price = rulePrice(rule, conversion);
    if (price) return price;
  }
  return null;
}

function rulePrice(rule: PriceRule, conversion: Priced): Price | null {
  const share =
    rule.percent !== undefined && conversion.amount !== undefined && conversion.currency !== undefined
      ? { amount: percentOf(conversion.amount, rule.percent), currency: conversion.currency.toUpperCase() }
      : null;
  if (rule.percent !== undefined && share === null) return null;
  if (rule.fixed && share && share.currency !== rule.fixed.currency) return null;
  const currency = rule.fixed?.currency ?? share?.currency;
  if (currency === undefined) return null;
  const total = add(rule.fixed?.amount ?? "0", share?.amount ?? "0");
  return { amount: roundHalfEven(total, minorUnits(currency)), currency };
}

export interface Payout extends Price {
  /** What the partner was told before this event; null when it was owed nothing. */
  previous: string | null;
}

/**
 * A partner's payout for a conversion as its lifecycle stands: priced by the partner's own rules
 * when the offer lists any, else by the default ones, while the conversion is payable; zero (in
 * the currency it was paid in) once declined or reversed. `previous` is what the last applied
 * event paid, when known. Null when the conversion never earned this partner anything.
 */
export function payoutFor(
  offer: Pick<Offer, "payouts">,
  partnerId: string,
  conversion: Priced,
  previous: Price | null,
): Payout | null {
  const rules = offer.payouts.partners[partnerId] ?? offer.payouts.default;
  if (isPayable(conversion.status)) {
    const price = priceOf(rules, conversion);
    return price && { ...price, previous: previous?.currency === price.currency ? previous.amount : null };
  }
  if (!previous) return null;
  return {
    amount: roundHalfEven("0", minorUnits(previous.currency)),
    currency: previous.currency,
    previous: previous.amount,
  };
}

/** What the network pays for the conversion (revenue rules have no partner overrides). */
export function revenueFor(offer: Pick<Offer, "revenue">, conversion: Priced): Price | null {
  return isPayable(conversion.status) ? priceOf(offer.revenue, conversion) : null;
}
