/**
 * An offer: what an advertiser network pays for, where its tracking links land, how long a click
 * can earn a conversion, and what each partner is paid. Stored in D1, cached in each isolate for
 * the click redirect, read by the events consumer to attribute and price each conversion.
 */
import { z } from "@hono/zod-openapi";
import { ISO_4217_CODES, minorUnits } from "./currencies";
import { PARTNER_ID_PATTERN } from "./partner";
import type { ConversionStatus } from "./postback";

export const OFFER_ID_PATTERN = /^ofr_[0-9a-hjkmnp-tv-z]{26}$/;
export const DEFAULT_ATTRIBUTION_WINDOW_DAYS = 30;
export const MAX_ATTRIBUTION_WINDOW_DAYS = 365;
export const SUB_ID_NAMES = ["sub1", "sub2", "sub3", "sub4", "sub5"] as const;
export type SubIdName = (typeof SUB_ID_NAMES)[number];

/** A conversion in one of these statuses is paid for; declined and reversed take the payout back. */
export const PAYABLE_STATUSES = ["pending", "approved", "paid"] as const satisfies readonly ConversionStatus[];

const DecimalString = z.string().regex(/^(0|[1-9]\d{0,14})(\.\d{1,8})?$/, {
  error: 'must be a plain decimal string such as "2.50"',
});

const CurrencySchema = z
  .string()
  .transform((value) => value.toUpperCase())
  .refine((value) => ISO_4217_CODES.has(value), { error: "must be an ISO 4217 code such as USD" });

/**
 * One pricing rule: it applies to a conversion whose event type and status match (an absent
 * condition matches anything); it pays a fixed amount, a percentage of the conversion's amount,
 * or both (then the conversion must be in the fixed amount's currency).
 */
export const PriceRuleSchema = z
  .strictObject({
    event_type: z
      .string()
      // Both cases spelt out rather than the `i` flag: a JSON Schema pattern has no flags, and the
      // OpenAPI document would otherwise carry a pattern that no event type matches.
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/, { error: "must be an event type such as purchase" })
      .transform((value) => value.toLowerCase())
      .optional(),
    status: z
      .enum(PAYABLE_STATUSES, { error: `must be one of ${PAYABLE_STATUSES.join(", ")}` })
      .optional()
      .openapi({ description: "Applies only in this status; declined and reversed always pay 0." }),
    fixed: z
      .strictObject({ amount: DecimalString, currency: CurrencySchema })
      // An amount the currency cannot pay would be paid rounded (2.505 USD as 2.50, 0.4 JPY as 0).
      .superRefine((fixed, ctx) => {
        const digits = fixed.amount.split(".")[1]?.length ?? 0;
        const allowed = minorUnits(fixed.currency);
        if (digits > allowed) {
          ctx.addIssue({
            code: "custom",
            path: ["amount"],
            message: `has ${digits} decimals, but ${fixed.currency} has ${allowed === 0 ? "none" : allowed}`,
          });
        }
      })
      .optional()
      .openapi({ example: { amount: "2.50", currency: "USD" } }),
    percent: z
      .string()
      .regex(/^(100(\.0{1,4})?|[1-9]?\d(\.\d{1,4})?)$/, {
        error: 'must be a percentage from "0" to "100" with at most 4 decimals, such as "12.5"',
      })
      .optional()
      .openapi({ description: "A percentage of the conversion's amount.", example: "10" }),
  })
  .refine((rule) => rule.fixed !== undefined || rule.percent !== undefined, {
    error: "needs fixed, percent or both",
  })
  .openapi("PriceRule");

export type PriceRule = z.output<typeof PriceRuleSchema>;

/** Rules in order: the first one that matches prices the conversion; none matching pays nothing. */
export const PriceRulesSchema = z.array(PriceRuleSchema).max(50);

export const PayoutsSchema = z
  .strictObject({
    default: PriceRulesSchema.default([]).openapi({ description: "For every partner without its own rules." }),
    partners: z
      .record(z.string().regex(PARTNER_ID_PATTERN, { error: "must be a partner id" }), PriceRulesSchema)
      .default({})
      .openapi({ description: "Per-partner overrides: a partner listed here is priced by its rules only." }),
  })
  .openapi("Payouts");

export type Payouts = z.output<typeof PayoutsSchema>;

export const PixelSettingsSchema = z
  .strictObject({
    allowed_origins: z
      .array(
        z
          .url({ protocol: /^https?$/, error: "must be an origin such as https://shop.example" })
          .refine((value) => URL.canParse(value) && new URL(value).origin === value.replace(/\/$/, ""), {
            error: "must be an origin only (scheme, host and port), such as https://shop.example",
          }),
      )
      .max(50)
      .default([])
      .openapi({ description: "Pages allowed to fire the offer's pixel (their Origin or Referer). Empty: no pixel." }),
    notify_before_confirmation: z.boolean().default(false).openapi({
      description:
        "true: partners hear of a pixel conversion at once; false: only once the network's server-to-server postback confirms it.",
    }),
  })
  .openapi("PixelSettings");

export type PixelSettings = z.output<typeof PixelSettingsSchema>;

export interface Offer {
  id: string;
  /** The advertiser: the network whose postbacks can convert this offer's clicks. */
  network_id: string;
  name: string;
  status: "active" | "paused";
  /** Where a tracking link sends the visitor, with `{click_id}` and other click macros. */
  landing_url: string;
  attribution_window_days: number;
  /** The network's own id for the offer: prices conversions that name their partner directly. */
  campaign_id: string | null;
  /** What the network pays the hub (priced like payouts, for reports and margins). */
  revenue: PriceRule[];
  payouts: Payouts;
  /** Partners allowed to promote the offer; null: every attributed partner. */
  partners: string[] | null;
  pixel: PixelSettings;
  created_at: string;
  updated_at: string;
}

export const OFFER_STATUSES = ["active", "paused"] as const;
