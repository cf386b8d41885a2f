/**
 * Network parameter mappings: how the query (or form) parameters of an affiliate network's GET
 * postback become the canonical postback body. Most networks cannot sign a JSON body; they fire a
 * URL with their macros filled in, each network with its own parameter names. The mapped body then
 * goes through PostbackSchema like any JSON postback, so this module decides names and shapes only,
 * never validity. Pure, so that the explain endpoint shows exactly what a request turned into.
 */
import { z } from "@hono/zod-openapi";
import { ISO_4217_CODES } from "../domain/currencies";
import {
  CONVERSION_STATUSES,
  type ConversionStatus,
  MAX_META_KEYS,
  PostbackFieldsSchema,
  type PostbackInput,
} from "../domain/postback";

/** Fields no parameter maps to: meta takes parameters by name, and a GET marks a test with the reserved `pb_test`. */
const NOT_MAPPED = ["meta", "test"] as const;

/** The fields a parameter can map to. */
export type PostbackField = Exclude<keyof PostbackInput, (typeof NOT_MAPPED)[number]>;

/** Derived from the postback's schema, in its order: a field added there can be mapped at once. */
export const POSTBACK_FIELDS = Object.keys(PostbackFieldsSchema.shape).filter(
  (field) => !(NOT_MAPPED as readonly string[]).includes(field),
) as readonly PostbackField[];

/** Authentication parameters: checked by the auth layer, never data, so never in body or meta. */
export const RESERVED_PARAMS = ["token", "pb_id", "pb_ts", "pb_sig", "pb_body_sha256", "pb_scope"] as const;

export const PRESET_NAMES = ["generic", "keitaro", "binom", "voluum", "everflow", "tune", "hasoffers"] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const EVENT_TIME_FORMATS = ["auto", "rfc3339", "unix_seconds", "unix_millis"] as const;
export type EventTimeFormat = (typeof EVENT_TIME_FORMATS)[number];

export const MAX_PARAMS_PER_FIELD = 20;
export const MAX_STATUS_VALUES = 50;
export const MAX_META_PARAMS = 50;

const PARAM_NAME = /^[A-Za-z0-9_.[\]-]{1,64}$/;
const META_KEY = /^[A-Za-z0-9_.-]{1,64}$/;

function isReserved(name: string): boolean {
  return (RESERVED_PARAMS as readonly string[]).includes(name);
}

const reservedError = `is reserved for authentication (${RESERVED_PARAMS.join(", ")})`;

const ParamNameSchema = z
  .string()
  .regex(PARAM_NAME, { error: "must be 1 to 64 letters, digits, _ . - [ ]" })
  .refine((name) => !isReserved(name), { error: reservedError });

const ParamNamesSchema = z.array(ParamNameSchema).max(MAX_PARAMS_PER_FIELD, {
  error: `must list at most ${MAX_PARAMS_PER_FIELD} parameter names`,
});

const FieldsSchema = z
  .strictObject(
    Object.fromEntries(POSTBACK_FIELDS.map((field) => [field, ParamNamesSchema.optional()])) as Record<
      PostbackField,
      z.ZodOptional<typeof ParamNamesSchema>
    >,
  )
  .openapi({
    description:
      "Canonical field → parameter names to read, in order; the first one present with a non-empty value wins. An empty list turns off the preset's names for that field.",
    example: { transaction_id: ["txid"], amount: ["payout"], click_id: ["clickid"] },
  });

const StatusValuesSchema = z
  .record(z.string(), z.enum(CONVERSION_STATUSES, { error: `must be one of ${CONVERSION_STATUSES.join(", ")}` }))
  .superRefine((values, ctx) => {
    const keys = Object.keys(values);
    if (keys.length > MAX_STATUS_VALUES) {
      ctx.addIssue({ code: "custom", message: `must have at most ${MAX_STATUS_VALUES} values` });
    }
    const seen = new Set<string>();
    for (const key of keys) {
      if (key.length === 0 || key.length > 64) {
        ctx.addIssue({ code: "custom", path: [key], message: "a sent value is 1 to 64 characters" });
      }
      // Values match case-insensitively, so "Sale" and "sale" would be one value with two meanings.
      if (seen.has(key.toLowerCase())) {
        ctx.addIssue({ code: "custom", path: [key], message: "repeats another value in a different letter case" });
      }
      seen.add(key.toLowerCase());
    }
  })
  .openapi({
    description: "A sent status value → conversion status, matched case-insensitively.",
    example: { "1": "approved", "0": "pending", "-1": "declined" },
  });

const MetaParamsSchema = z
  .union(
    [
      z.literal("*"),
      z
        .array(
          z
            .string()
            // A kept parameter becomes a meta key, so it has to be a valid one.
            .regex(META_KEY, { error: "must be 1 to 64 letters, digits, _ . - (it becomes a meta key)" })
            .refine((name) => !isReserved(name), { error: reservedError }),
        )
        .max(MAX_META_PARAMS),
    ],
    { error: `must be "*" or a list of at most ${MAX_META_PARAMS} parameter names` },
  )
  .openapi({
    description: `Unmapped parameters to keep in meta; "*" keeps all of them (at most ${MAX_META_KEYS}) except the authentication parameters.`,
    example: ["sub2", "sub3"],
  });

export const NetworkMappingSchema = z
  .strictObject({
    preset: z
      .enum(PRESET_NAMES, { error: `must be one of ${PRESET_NAMES.join(", ")}` })
      .optional()
      .openapi({ description: "Parameter conventions to start from; generic when omitted.", example: "keitaro" }),
    fields: FieldsSchema.optional(),
    status_values: StatusValuesSchema.optional(),
    default_currency: z
      .string()
      .refine((code) => ISO_4217_CODES.has(code), { error: "must be an uppercase ISO 4217 code such as USD" })
      .optional()
      .openapi({ description: "Currency of an amount sent without one.", example: "USD" }),
    meta_params: MetaParamsSchema.optional(),
    event_time_format: z
      .enum(EVENT_TIME_FORMATS, { error: `must be one of ${EVENT_TIME_FORMATS.join(", ")}` })
      .optional()
      .openapi({
        description:
          "How event_time is sent. auto reads 10 digits as Unix seconds and 13 as Unix milliseconds, and passes anything else on as RFC 3339.",
        example: "auto",
      }),
  })
  .openapi("NetworkMapping", {
    description:
      "How a network's GET or form postback parameters become the canonical postback body. Explicit fields and status values override the preset's one by one.",
  });

export type NetworkMapping = z.output<typeof NetworkMappingSchema>;

/** A mapping with its preset applied: every field has its list of names (possibly empty). */
export interface ResolvedMapping {
  preset: PresetName;
  fields: Readonly<Record<PostbackField, readonly string[]>>;
  /** Keys lowercased. */
  status_values: Readonly<Record<string, ConversionStatus>>;
  default_currency?: string;
  meta_params: readonly string[] | "*";
  event_time_format: EventTimeFormat;
}

interface PresetSpec {
  fields: Partial<Record<PostbackField, readonly string[]>>;
  status_values?: Record<string, ConversionStatus>;
  meta_params?: readonly string[];
}

function fieldRecord(names: (field: PostbackField) => readonly string[]): Record<PostbackField, readonly string[]> {
  return Object.fromEntries(POSTBACK_FIELDS.map((field) => [field, names(field)])) as Record<
    PostbackField,
    readonly string[]
  >;
}

function preset(name: PresetName, spec: PresetSpec): ResolvedMapping {
  return {
    preset: name,
    fields: fieldRecord((field) => spec.fields[field] ?? []),
    status_values: spec.status_values ?? {},
    meta_params: spec.meta_params ?? [],
    event_time_format: "auto",
  };
}

// Presets are starting points, not promises: trackers differ between versions and operators can
// rename their macros, so the explain endpoint's preview is what an operator should trust.
// Networks disagree on numeric codes ("2" is pending in some, rejected in others), so a code is
// mapped only where one meaning is common to all the conventions a preset covers.

const TUNE = preset("tune", {
  // TUNE (formerly HasOffers) partner postbacks, written with TUNE's macro names as parameter
  // names (`?transaction_id={transaction_id}&payout={payout}&aff_sub={aff_sub}`). TUNE's
  // transaction_id names the click session: an offer with several goals per click needs a
  // per-goal id (for example adv_sub) mapped to transaction_id instead.
  fields: {
    transaction_id: ["transaction_id"],
    amount: ["payout"],
    currency: ["currency"],
    campaign_id: ["offer_id"],
    click_id: ["aff_sub"],
  },
  meta_params: ["adv_sub", "aff_sub2", "aff_sub3", "aff_sub4", "aff_sub5", "goal_id", "source"],
});

const GENERIC_ALIASES: Partial<Record<PostbackField, readonly string[]>> = {
  transaction_id: ["txid", "tid", "order_id"],
  amount: ["payout", "revenue", "sum"],
  campaign_id: ["offer_id", "camp"],
  click_id: ["clickid", "subid", "cid"],
  partner_id: ["aff_id", "affiliate_id"],
};

export const PRESETS: Readonly<Record<PresetName, ResolvedMapping>> = {
  // Every field by its canonical name first, then aliases common across networks.
  generic: preset("generic", {
    fields: fieldRecord((field) => [field, ...(GENERIC_ALIASES[field] ?? [])]),
    status_values: {
      "1": "approved",
      "0": "pending",
      "-1": "declined",
      approved: "approved",
      pending: "pending",
      declined: "declined",
      rejected: "declined",
    },
    meta_params: ["sub1", "sub2", "sub3", "sub4", "sub5"],
  }),
  // Keitaro's inbound postback (`/postback?subid=…&status=…&payout=…&currency=…&tid=…`), so a
  // network already set up for Keitaro only changes the host. tid tells repeat conversions of one
  // click apart; without it the subid is the key, hence the fallback. Its other statuses (rebill, custom ones) are
  // left to the operator.
  keitaro: preset("keitaro", {
    fields: {
      transaction_id: ["tid", "subid"],
      status: ["status"],
      amount: ["payout"],
      currency: ["currency"],
      click_id: ["subid"],
    },
    status_values: { lead: "pending", sale: "approved", rejected: "declined" },
  }),
  // Binom's inbound postback (`click.php?cnv_id=…&payout=…&cnv_status=…&cnv_currency=…`, the v1
  // names; newer versions may differ). Binom keeps one conversion per click id. Its statuses are
  // free text chosen per account, so none are mapped.
  binom: preset("binom", {
    fields: {
      transaction_id: ["cnv_id"],
      status: ["cnv_status"],
      amount: ["payout"],
      currency: ["cnv_currency"],
      click_id: ["cnv_id"],
    },
  }),
  // Voluum's inbound postback (`/postback?cid=…&payout=…&txid=…&currency=…&et=…&param1=…`).
  // A txid tells several conversions of one click apart, so the click id is only the fallback key;
  // et names a custom conversion type. Voluum has no status parameter.
  voluum: preset("voluum", {
    fields: {
      transaction_id: ["txid", "cid"],
      amount: ["payout"],
      currency: ["currency"],
      event_type: ["et"],
      click_id: ["cid"],
    },
    meta_params: ["param1", "param2", "param3", "param4", "param5"],
  }),
  // Everflow partner postbacks, written with Everflow's macro names as parameter names
  // (`?transaction_id={transaction_id}&payout_amount={payout_amount}&sub1={sub1}`); the partner's
  // own click id conventionally travels in sub1. `amount` is what Everflow's own inbound postback
  // calls the sale amount. No currency macro is assumed: set default_currency.
  everflow: preset("everflow", {
    fields: {
      transaction_id: ["transaction_id"],
      amount: ["payout_amount", "payout", "amount"],
      currency: ["currency"],
      campaign_id: ["offer_id"],
      click_id: ["sub1"],
    },
    meta_params: ["sub2", "sub3", "sub4", "sub5", "source_id", "affiliate_id"],
  }),
  tune: TUNE,
  hasoffers: { ...TUNE, preset: "hasoffers" },
};

/** The preset (generic when none is named) with the mapping's explicit settings laid over it. */
export function resolveMapping(mapping: NetworkMapping): ResolvedMapping {
  const base = PRESETS[mapping.preset ?? "generic"];
  const resolved: ResolvedMapping = {
    preset: base.preset,
    fields: fieldRecord((field) => [...(mapping.fields?.[field] ?? base.fields[field])]),
    // fromEntries defines own properties, so a key like "__proto__" stays a plain key.
    status_values: Object.fromEntries([
      ...Object.entries(base.status_values),
      ...Object.entries(mapping.status_values ?? {}).map(([value, status]) => [value.toLowerCase(), status] as const),
    ]),
    meta_params: mapping.meta_params ?? base.meta_params,
    event_time_format: mapping.event_time_format ?? base.event_time_format,
  };
  const currency = mapping.default_currency ?? base.default_currency;
  if (currency !== undefined) resolved.default_currency = currency;
  return resolved;
}

export interface MappingResult {
  /** The canonical postback body, still to be validated with PostbackSchema. */
  body: Record<string, unknown>;
  /** Canonical field → the parameter its value came from. */
  used: Record<string, string>;
  meta_keys: string[];
  /** Parameters neither mapped nor kept in meta (empty ones included), in request order. */
  ignored: string[];
}

/**
 * Every parameter except the authentication ones ends up in exactly one place: a field (`used`),
 * `meta`, or `ignored`. Values stay strings: amounts are exact decimals, and PostbackSchema is the
 * one place that judges them.
 */
export function mapParams(pairs: Iterable<readonly [string, string]>, mapping: ResolvedMapping): MappingResult {
  const params = firstOccurrences(pairs);
  const body: Record<string, unknown> = {};
  const used: Record<string, string> = {};

  for (const field of POSTBACK_FIELDS) {
    const name = mapping.fields[field].find((candidate) => params.get(candidate));
    const value = name === undefined ? undefined : params.get(name);
    if (name === undefined || value === undefined) continue;
    body[field] = convert(field, value, mapping);
    used[field] = name;
  }

  if (body.amount === undefined) {
    // A currency alone means nothing; templated URLs send it even when the payout is empty.
    delete body.currency;
    delete used.currency;
  } else if (body.currency === undefined && mapping.default_currency !== undefined) {
    body.currency = mapping.default_currency;
  }

  const usedNames = new Set(Object.values(used));
  const meta = new Map<string, string>();
  const ignored: string[] = [];
  for (const [name, value] of params) {
    if (usedNames.has(name)) continue;
    const keep = value !== "" && isMetaParam(name, mapping.meta_params) && meta.size < MAX_META_KEYS;
    if (keep) meta.set(name, value);
    else ignored.push(name);
  }
  if (meta.size > 0) body.meta = Object.fromEntries(meta);

  return { body, used, meta_keys: [...meta.keys()], ignored };
}

/** Repeated parameters: the first occurrence wins, even when empty; authentication ones are dropped. */
function firstOccurrences(pairs: Iterable<readonly [string, string]>): Map<string, string> {
  const params = new Map<string, string>();
  for (const [name, value] of pairs) {
    if (!params.has(name) && !isReserved(name)) params.set(name, value);
  }
  return params;
}

function isMetaParam(name: string, selected: readonly string[] | "*"): boolean {
  return META_KEY.test(name) && (selected === "*" || selected.includes(name));
}

function convert(field: PostbackField, value: string, mapping: ResolvedMapping): string {
  if (field === "status") {
    // An unknown value goes on unchanged, so PostbackSchema names it in its 422.
    const key = value.toLowerCase();
    return Object.hasOwn(mapping.status_values, key) ? (mapping.status_values[key] ?? value) : value;
  }
  if (field === "event_time") return toEventTime(value, mapping.event_time_format);
  return value;
}

function toEventTime(value: string, format: EventTimeFormat): string {
  const msPerUnit = /^\d+$/.test(value) ? unixUnitMs(value.length, format) : undefined;
  if (msPerUnit === undefined) return value;
  const date = new Date(Number(value) * msPerUnit);
  // Out of Date's range: pass it on, and PostbackSchema says what an event_time must look like.
  return Number.isNaN(date.getTime()) ? value : date.toISOString();
}

function unixUnitMs(digits: number, format: EventTimeFormat): number | undefined {
  switch (format) {
    case "unix_seconds":
      return 1000;
    case "unix_millis":
      return 1;
    case "auto":
      // Seconds and milliseconds since 1970 have had 10 and 13 digits since 2001 and will until 2286.
      return digits === 10 ? 1000 : digits === 13 ? 1 : undefined;
    case "rfc3339":
      return undefined;
  }
}

export interface FieldDescription {
  field: PostbackField;
  params: readonly string[];
}

/** Which parameters each field is read from, in order, for the explain endpoint and the docs. */
export function describeMapping(resolved: ResolvedMapping): FieldDescription[] {
  return POSTBACK_FIELDS.filter((field) => resolved.fields[field].length > 0).map((field) => ({
    field,
    params: resolved.fields[field],
  }));
}
