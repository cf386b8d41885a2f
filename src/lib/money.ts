/**
 * Exact decimal arithmetic for money, over big.js (decimal digits, never binary floats): sums,
 * percentages and rounding half to even at a currency's minor unit. Amounts go in and come out
 * as plain decimal strings, the way the hub stores and sends them.
 */
import Big from "big.js";

// Refuse numbers: a binary float must never become money by accident.
const Decimal = Big();
Decimal.strict = true;
Decimal.DP = 20;
Decimal.RM = Decimal.roundHalfEven;

const PLAIN_DECIMAL = /^(0|[1-9]\d*)(\.\d+)?$/;

export function isPlainDecimal(value: string): boolean {
  return PLAIN_DECIMAL.test(value);
}

/** `amount` × `percent` / 100, unrounded. */
export function percentOf(amount: string, percent: string): string {
  return new Decimal(amount).times(new Decimal(percent)).div("100").toFixed();
}

export function add(a: string, b: string): string {
  return new Decimal(a).plus(new Decimal(b)).toFixed();
}

/** Rounded half to even at `fractionDigits`, written with exactly that many ("2.50", "3"). */
export function roundHalfEven(amount: string, fractionDigits: number): string {
  return new Decimal(amount).round(fractionDigits, Decimal.roundHalfEven).toFixed(fractionDigits);
}

/**
 * The amount in minor units, as an integer string ("29.99" at 2 digits is "2999"); an amount with
 * more fraction digits than that is rounded half to even first, the hub's one rounding rule.
 */
export function toMinorUnits(amount: string, fractionDigits: number): string {
  return new Decimal(amount)
    .round(fractionDigits, Decimal.roundHalfEven)
    .times(new Decimal("10").pow(fractionDigits))
    .toFixed(0);
}

/** Whether two decimal strings are the same amount ("29.90" and "29.9" are). */
export function sameAmount(a: string, b: string): boolean {
  return new Decimal(a).eq(new Decimal(b));
}
