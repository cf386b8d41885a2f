/**
 * Payout and revenue arithmetic, as plain functions: the first matching rule, fixed and percentage
 * amounts, rounding half to even at each currency's ISO 4217 exponent, per-partner overrides, and
 * a payout taken back when the conversion is declined or reversed.
 */
import { describe, expect, it } from "vitest";
import { payoutFor, priceOf, revenueFor } from "../src/attribution/pricing";
import { minorUnits } from "../src/domain/currencies";
import type { PriceRule } from "../src/domain/offer";
import { roundHalfEven } from "../src/lib/money";

const conversion = (fields: Partial<Parameters<typeof priceOf>[1]> = {}) => ({
  status: "approved" as const,
  event_type: "purchase",
  amount: "100.00",
  currency: "USD",
  ...fields,
});

describe("roundHalfEven", () => {
  it("rounds a tie to the even digit, never as a binary float would", () => {
    expect(roundHalfEven("2.995", 2)).toBe("3.00");
    expect(roundHalfEven("2.985", 2)).toBe("2.98");
    expect(roundHalfEven("0.125", 2)).toBe("0.12");
    expect(roundHalfEven("0.135", 2)).toBe("0.14");
    expect(roundHalfEven("1.005", 2)).toBe("1.00");
    expect(roundHalfEven("154.5", 0)).toBe("154");
    expect(roundHalfEven("155.5", 0)).toBe("156");
    expect(roundHalfEven("0.1", 3)).toBe("0.100");
    // 0.1 + 0.2 in binary floating point is 0.30000000000000004.
    expect(roundHalfEven("0.30000000000000004", 2)).toBe("0.30");
  });

  it("knows each currency's minor unit", () => {
    expect([minorUnits("USD"), minorUnits("JPY"), minorUnits("BHD"), minorUnits("CLF")]).toEqual([2, 0, 3, 4]);
  });
});

describe("priceOf", () => {
  it("takes the first rule whose event type and status match", () => {
    const rules: PriceRule[] = [
      { event_type: "install", fixed: { amount: "1", currency: "USD" } },
      { status: "pending", fixed: { amount: "2", currency: "USD" } },
      { fixed: { amount: "3", currency: "USD" } },
      { fixed: { amount: "4", currency: "USD" } },
    ];
    expect(priceOf(rules, conversion({ event_type: "install", status: "pending" }))).toEqual({
      amount: "1.00",
      currency: "USD",
    });
    expect(priceOf(rules, conversion({ status: "pending" }))).toEqual({ amount: "2.00", currency: "USD" });
    expect(priceOf(rules, conversion())).toEqual({ amount: "3.00", currency: "USD" });
    expect(priceOf([], conversion())).toBeNull();
  });

  it("pays a percentage of the amount in the conversion's currency, rounded half to even", () => {
    expect(priceOf([{ percent: "10" }], conversion({ amount: "29.95" }))).toEqual({ amount: "3.00", currency: "USD" });
    expect(priceOf([{ percent: "10" }], conversion({ amount: "29.85" }))).toEqual({ amount: "2.98", currency: "USD" });
    expect(priceOf([{ percent: "12.5" }], conversion({ amount: "1234", currency: "JPY" }))).toEqual({
      amount: "154",
      currency: "JPY",
    });
    expect(priceOf([{ percent: "33.3333" }], conversion({ amount: "10.000", currency: "BHD" }))).toEqual({
      amount: "3.333",
      currency: "BHD",
    });
  });

  it("skips a percentage rule for a conversion without an amount, to the next rule", () => {
    const rules: PriceRule[] = [{ percent: "10" }, { fixed: { amount: "0.5", currency: "EUR" } }];
    expect(priceOf(rules, conversion({ amount: undefined, currency: undefined }))).toEqual({
      amount: "0.50",
      currency: "EUR",
    });
  });

  it("adds a fixed amount and a percentage in one currency, and skips the rule across currencies", () => {
    const rules: PriceRule[] = [{ fixed: { amount: "1", currency: "USD" }, percent: "5" }, { percent: "1" }];
    expect(priceOf(rules, conversion({ amount: "19.99" }))).toEqual({ amount: "2.00", currency: "USD" });
    expect(priceOf(rules, conversion({ amount: "19.99", currency: "EUR" }))).toEqual({
      amount: "0.20",
      currency: "EUR",
    });
  });
});

describe("payoutFor", () => {
  const offer = {
    payouts: {
      default: [{ fixed: { amount: "2.5", currency: "USD" } }],
      partners: { ptn_vip: [{ percent: "20" }] },
    },
  };

  it("prices a partner with its own rules, and the others with the default ones", () => {
    expect(payoutFor(offer, "ptn_vip", conversion(), null)).toEqual({
      amount: "20.00",
      currency: "USD",
      previous: null,
    });
    expect(payoutFor(offer, "ptn_other", conversion(), null)).toEqual({
      amount: "2.50",
      currency: "USD",
      previous: null,
    });
  });

  it("says what was paid before", () => {
    expect(payoutFor(offer, "ptn_other", conversion(), { amount: "1.25", currency: "USD" })).toMatchObject({
      amount: "2.50",
      previous: "1.25",
    });
  });

  it("takes the payout back when declined or reversed, in the currency it was paid in", () => {
    const paid = { amount: "20.00", currency: "USD" };
    for (const status of ["declined", "reversed"] as const) {
      expect(payoutFor(offer, "ptn_vip", conversion({ status }), paid)).toEqual({
        amount: "0.00",
        currency: "USD",
        previous: "20.00",
      });
      expect(
        payoutFor(offer, "ptn_vip", conversion({ status, currency: "JPY" }), { amount: "300", currency: "JPY" }),
      ).toEqual({ amount: "0", currency: "JPY", previous: "300" });
      // Never paid, nothing to take back.
      expect(payoutFor(offer, "ptn_vip", conversion({ status }), null)).toBeNull();
    }
  });

  it("prices revenue by the offer's revenue rules while payable", () => {
    const revenueOffer = { revenue: [{ percent: "100" }] as PriceRule[] };
    expect(revenueFor(revenueOffer, conversion({ amount: "29.99" }))).toEqual({ amount: "29.99", currency: "USD" });
    expect(revenueFor(revenueOffer, conversion({ status: "declined" }))).toBeNull();
  });
});
