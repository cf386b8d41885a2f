/**
 * The postback body a network sends, as one zod schema built at module load. It documents the
 * API (OpenAPI is generated from it) and it is the only gate between a request and storage.
 */
import { z } from "@hono/zod-openapi";
import { ISO_4217_CODES } from "./currencies";

export const CONVERSION_STATUSES = ["pending", "approved", "paid", "declined", "reversed"] as const;
export type ConversionStatus = (typeof CONVERSION_STATUSES)[number];
export const DEFAULT_STATUS: ConversionStatus = "approved";

export const PLATFORMS = ["web", "ios", "android", "other"] as const;
export const KNOWN_EVENT_TYPES = ["install", "purchase", "lead", "registration"] as const;

/** An `event_time` further ahead of the hub's clock than this is a sender bug, not a conversion. */
export const MAX_EVENT_TIME_AHEAD_SECONDS = 300;
export const MAX_META_KEYS = 32;

const CONTROL_CHARACTERS = /\p{Cc}/u;
/**
 * Zero-width characters, bidi controls, soft hyphens, variation selectors, Hangul fillers…:
 * invisible (format characters and every default-ignorable code point), so two ids that look the
 * same could differ.
 */
const FORMAT_CHARACTERS = /[\p{Cf}\p{Default_Ignorable_Code_Point}]/u;
const DECIMAL = /^(0|[1-9]\d{0,14})(\.\d{1,8})?$/;
/** An RFC 3339 time with its offset (a calendar check is isCalendarDate's). */
export const RFC_3339 =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$/;

/** A lone surrogate (`"\ud800"` in JSON) is no character: it cannot be stored as UTF-8 nor hashed as RFC 8785 JSON. */
const WELL_FORMED = { error: "must be valid Unicode text (it holds a lone surrogate escape)" };

function text(maxLength: number) {
  return z
    .string()
    .min(1, { error: "must not be empty" })
    .max(maxLength, { error: `must be at most ${maxLength} characters` })
    .refine((value) => !CONTROL_CHARACTERS.test(value), {
      error: "must not contain control characters",
    })
    .refine((value) => value.isWellFormed(), WELL_FORMED);
}

/**
 * An identifier names a Durable Object and joins records, so it must be what it looks like: no
 * invisible format characters, no lone surrogates (which UTF-8 cannot carry), and one Unicode
 * form (NFC), so that `é` typed as one code point or as `e` + U+0301 is the same transaction.
 */
function identifier(maxLength: number) {
  return z.preprocess(
    (value) => (typeof value === "string" ? normalizeIdentifier(value) : value),
    text(maxLength).refine((value) => !FORMAT_CHARACTERS.test(value), {
      error: "must not contain invisible format characters (zero-width or bidi controls)",
    }),
  );
}

/** NFC, as `identifier` stores it: for looking an identifier up the way it was recorded. */
export function normalizeIdentifier(value: string): string {
  return value.isWellFormed() ? value.normalize("NFC") : value;
}

function lowercased<T extends z.ZodType>(schema: T) {
  return z.preprocess((value) => (typeof value === "string" ? value.toLowerCase() : value), schema);
}

export const AmountSchema = z
  .string({ error: 'must be a decimal number or string, such as 29.99 or "29.99"' })
  .superRefine((value, ctx) => {
    if (value.startsWith("-")) {
      ctx.addIssue({
        code: "custom",
        message: "must not be negative; report a refund as status reversed",
      });
    } else if (!DECIMAL.test(value)) {
      ctx.addIssue({
        code: "custom",
        message: "must be a plain decimal with at most 15 integer and 8 fraction digits, such as 29.99",
      });
    }
  })
  .openapi({
    description:
      "Revenue or payout as an exact decimal. JSON numbers are read from their source text, never through a binary float.",
    example: "29.99",
  });

/** `Date.parse` rolls 2026-02-31 over to March 3rd; a real date survives the round trip. */
export function isCalendarDate(value: string): boolean {
  const [year, month, day] = value.slice(0, 10).split("-").map(Number);
  if (year === undefined || month === undefined || day === undefined) return false;
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

const EventTimeSchema = z
  .string()
  // `abort` stops at the first failure, so a malformed value gets one message that says how to fix it.
  .regex(RFC_3339, {
    error: "must be an RFC 3339 timestamp with a time zone, such as 2026-01-15T12:34:56Z",
    abort: true,
  })
  .refine(isCalendarDate, { error: "is not a real calendar date", abort: true })
  .refine((value) => Date.parse(value) <= Date.now() + MAX_EVENT_TIME_AHEAD_SECONDS * 1000, {
    error: `must not be more than ${MAX_EVENT_TIME_AHEAD_SECONDS} s in the future`,
  })
  .transform((value) => new Date(value).toISOString())
  .openapi({ description: "When the conversion happened (RFC 3339).", example: "2026-01-15T12:34:56Z" });

const MetaValueSchema = z.union(
  [
    z
      .string()
      .max(512)
      .refine((v) => !CONTROL_CHARACTERS.test(v), {
        error: "must not contain control characters",
      })
      .refine((v) => v.isWellFormed(), WELL_FORMED),
    z.number(),
    z.boolean(),
  ],
  { error: "must be a string (up to 512 characters), a number or a boolean" },
);

function isObjectPayload(payload: { value: unknown }): boolean {
  return typeof payload.value === "object" && payload.value !== null && !Array.isArray(payload.value);
}

/**
 * The postback's fields, each declared once: every list of conversion fields elsewhere (material
 * fields, mapping targets, macros, stored messages) is derived from this shape. Add a field here
 * (at the end, before `test`: the order of the material fields is part of the dedupe fingerprint),
 * in a migration and in the SQL.
 */
export const PostbackFieldsSchema = z.strictObject({
  transaction_id: identifier(128).openapi({
    description: "The network's unique id of the conversion; the deduplication key.",
    example: "ord_8812",
  }),
  status: lowercased(
    z.enum(CONVERSION_STATUSES, {
      error: `must be one of ${CONVERSION_STATUSES.join(", ")}`,
    }),
  )
    .default(DEFAULT_STATUS)
    .openapi({ description: "Lifecycle status; approved when omitted.", example: "approved" }),
  amount: AmountSchema.optional(),
  currency: lowercased(z.string())
    .transform((value) => value.toUpperCase())
    .refine((value) => ISO_4217_CODES.has(value), { error: "must be an ISO 4217 code such as USD" })
    .optional()
    .openapi({ description: "ISO 4217 currency of amount.", example: "USD" }),
  event_time: EventTimeSchema.optional(),
  event_type: lowercased(
    z.string().regex(/^[a-z0-9][a-z0-9_.:-]{0,63}$/, {
      error: `must be ${KNOWN_EVENT_TYPES.join(", ")}, or a custom name of letters, digits, _ . : - (at most 64)`,
    }),
  )
    .optional()
    .openapi({ description: `One of ${KNOWN_EVENT_TYPES.join(", ")}, or a custom name.`, example: "purchase" }),
  campaign_id: identifier(128).optional().openapi({ example: "camp-987" }),
  click_id: identifier(256).optional().openapi({ example: "clk_1f3a9" }),
  user_id: identifier(256).optional(),
  device_id: identifier(256).optional(),
  platform: lowercased(z.enum(PLATFORMS, { error: `must be one of ${PLATFORMS.join(", ")}` }))
    .optional()
    .openapi({ example: "android" }),
  meta: z
    .record(
      z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, {
        error: "meta keys are 1 to 64 letters, digits, _ . -",
      }),
      MetaValueSchema,
    )
    .refine((meta) => Object.keys(meta).length <= MAX_META_KEYS, {
      error: `must have at most ${MAX_META_KEYS} keys`,
    })
    .optional()
    .openapi({ description: "Custom scalar fields kept with the conversion.", example: { sub1: "spring" } }),
  partner_id: identifier(128).optional().openapi({
    description:
      "The hub partner (ptn_…) the network itself attributes the conversion to, for trackers that attribute without the hub's click id. Ignored when click_id is a valid hub click id.",
    example: "ptn_01m8t94drzt2dvtb14rreyz833",
  }),
  test: z.boolean({ error: "must be true or false" }).optional().openapi({
    description:
      "true: a test postback, kept apart from live conversions and delivered only to partners that take test traffic. Inside the signed body, so it is the way to mark a signed postback as a test.",
  }),
});

export const PostbackSchema = PostbackFieldsSchema
  // Run even when other fields failed, so that one 422 lists every problem.
  .refine((postback) => postback.currency === undefined || postback.amount !== undefined, {
    path: ["currency"],
    error: "is only allowed together with amount",
    when: isObjectPayload,
  })
  .refine((postback) => postback.amount === undefined || postback.currency !== undefined, {
    path: ["amount"],
    error: "needs a currency",
    when: isObjectPayload,
  })
  .openapi("Postback");

export type Postback = z.output<typeof PostbackSchema>;
export type PostbackInput = z.input<typeof PostbackSchema>;
