/**
 * Partner postback templates: `https://partner.example/pb?tx={transaction_id}` or a JSON body with
 * macros. Conversion values come from networks, so each one is encoded for where it lands
 * (percent-encoded in a URL, JSON-escaped in a body) and can never change the shape of the request.
 * Braces around anything that is not a macro name stay literal, so JSON braces pass through.
 */
import { MATERIAL_FIELDS, type MaterialField } from "../domain/conversion";
import { SUB_ID_NAMES } from "../domain/offer";
import type { FieldError } from "../errors";

/** The conversion's own fields, each a macro (meta goes by key: `{meta.KEY}`), derived from its schema. */
export const CONVERSION_MACROS = MATERIAL_FIELDS.filter(
  (field): field is Exclude<MaterialField, "meta"> => field !== "meta",
);

type ConversionMacro = (typeof CONVERSION_MACROS)[number];

/**
 * A list in the order partners have always seen it, with any conversion field the schema gained
 * since appended after the last one it names: a new field needs no edit here, and nothing that was
 * there moves.
 */
function withNewFields<T extends string>(order: readonly T[]): (T | ConversionMacro)[] {
  const named = new Set<string>(order);
  const last = order.findLastIndex((name) => (CONVERSION_MACROS as readonly string[]).includes(name));
  const added = CONVERSION_MACROS.filter((field) => !named.has(field));
  return [...order.slice(0, last + 1), ...added, ...order.slice(last + 1)];
}

/** Whose conversion it is and what it pays the credited partner (docs/attribution.md). */
export const ATTRIBUTION_MACROS = [
  "attribution",
  "offer_id",
  "clicked_at",
  "payout",
  "previous_payout",
  "payout_currency",
  ...SUB_ID_NAMES,
  "source",
] as const;

export const KNOWN_MACROS = withNewFields([
  "transaction_id",
  "network_id",
  "status",
  "previous_status",
  "amount",
  "currency",
  "event_time",
  "event_type",
  "campaign_id",
  "click_id",
  "user_id",
  "device_id",
  "platform",
  "event_id",
  "delivery_id",
  "attempt",
  "verdict",
  "received_at",
  "test",
  ...ATTRIBUTION_MACROS,
] as const);

export type KnownMacro = (typeof KNOWN_MACROS)[number];

type Scalar = string | number | boolean;

export type MacroValues = {
  values: Readonly<Record<string, Scalar | null | undefined>>;
  meta: Readonly<Record<string, Scalar>>;
};

const MACRO = /\{([a-z_][a-z0-9_]*|meta\.[A-Za-z0-9_.-]{1,64})\}/g;
const META_PREFIX = "meta.";
const KNOWN = new Set<string>(KNOWN_MACROS);
const KNOWN_LIST = [...KNOWN_MACROS, "meta.KEY"].map((name) => `{${name}}`).join(", ");

/**
 * A realistic conversion for linting templates. Its strings carry a quote, a backslash and non-ASCII
 * text, so a template that only works for tame values fails when it is saved, not when it is sent.
 */
export const SAMPLE_VALUES: MacroValues = {
  values: {
    transaction_id: 'ord_8812 "spring\\sale" é',
    network_id: "net_01jcx5m2k8b3v9q4w7z6y1t0rs",
    status: "approved",
    previous_status: "pending",
    amount: "29.99",
    currency: "EUR",
    event_time: "2026-11-27T12:34:56.000Z",
    event_type: "purchase",
    campaign_id: "camp-987",
    click_id: 'clk_1f3a9 "q"\\ ü',
    user_id: "user-42",
    device_id: "dev-7c1e",
    platform: "android",
    partner_id: "ptn_01jcx5m2k8b3v9q4w7z6y1t0rs",
    event_id: "evt_01jcx5m2k8a7f3d9e2c4b6h8j0",
    delivery_id: "dlv_01jcx5m2k9n5p7r9s1t3v5w7x9",
    attempt: 1,
    verdict: "accepted",
    received_at: "2026-11-27T12:34:57.120Z",
    test: false,
    attribution: "click",
    offer_id: "ofr_01jcx5m2k8b3v9q4w7z6y1t0rs",
    clicked_at: "2026-11-27T11:02:13.000Z",
    payout: "2.50",
    previous_payout: "1.25",
    payout_currency: "EUR",
    sub1: 'banner "7" \\ ü',
    sub2: "s2",
    sub3: "s3",
    sub4: "s4",
    sub5: "s5",
    source: "s2s",
  },
  meta: { sub1: 'spring "sale" \\ café', sub2: 7, vip: true },
};

/** Every macro name in the template, in order, repeats included. */
export function macroNames(template: string): string[] {
  return [...template.matchAll(MACRO)].map((match) => match[1] ?? "");
}

export function isKnownMacro(name: string): boolean {
  return KNOWN.has(name) || name.startsWith(META_PREFIX);
}

export function lintTemplate(template: string, location: string): FieldError[] {
  const unknown = new Set(macroNames(template).filter((name) => !isKnownMacro(name)));
  return [...unknown].map((name) => ({ location, message: `unknown macro {${name}}; known: ${KNOWN_LIST}` }));
}

export function renderUrl(template: string, values: MacroValues): string {
  return render(template, values, encodeURIComponent);
}

/**
 * A URL template's scheme, authority and path as written: the authority runs to the first `/`, `\`,
 * `?` or `#` after the slashes, the path to the first `?` or `#` (the URL parser treats `\` as `/`
 * and tolerates `https:host`, so this must too).
 */
export function urlParts(template: string): { scheme: string; authority: string; path: string } {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*/.exec(template)?.[0] ?? "";
  const rest = template.slice(scheme.length);
  const authorityEnd = rest.search(/[/\\?#]|$/);
  const afterAuthority = rest.slice(authorityEnd);
  return {
    scheme,
    authority: rest.slice(0, authorityEnd),
    path: afterAuthority.slice(0, afterAuthority.search(/[?#]|$/)),
  };
}

/** `.` and `..` as the URL parser sees path segments: `%2e` is a dot too, in either case. */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/**
 * The first path segment that the values turn into `.` or `..`, as in `/api/{transaction_id}/confirm`
 * with the transaction id `..`: the URL parser resolves it, and the request would go to another
 * path. No spelling survives (`%2E%2E` is a dot segment too, `%252E` reaches the partner as `%2E`),
 * so such a conversion cannot be sent to this template faithfully. Null when there is none.
 */
export function dotSegmentFromValues(
  template: string,
  values: MacroValues,
): { segment: string; macros: string[] } | null {
  for (const segment of urlParts(template).path.split(/[/\\]/)) {
    const macros = macroNames(segment);
    if (macros.length === 0) continue;
    const rendered = renderUrl(segment, values);
    if (DOT_SEGMENT.test(rendered)) return { segment: rendered, macros };
  }
  return null;
}

/** Values land inside JSON strings: `{"txid":"{transaction_id}","payout":{amount}}`. */
export function renderBody(template: string, values: MacroValues): string {
  return render(template, values, (text) => JSON.stringify(text).slice(1, -1));
}

export function lintBodyTemplate(template: string, location: string): FieldError[] {
  const errors = lintTemplate(template, location);
  try {
    JSON.parse(renderBody(template, SAMPLE_VALUES));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    errors.push({
      location,
      message: `must be valid JSON once macros are filled in; with a sample conversion: ${reason}. Put text macros inside quotes, like "{transaction_id}"`,
    });
  }
  return errors;
}

/** The default body's fields, in the order partners have always received them. */
const DEFAULT_BODY_FIELDS = withNewFields([
  "event_id",
  "delivery_id",
  "attempt",
  "verdict",
  "network_id",
  "transaction_id",
  "status",
  "previous_status",
  "amount",
  "currency",
  "event_time",
  "event_type",
  "campaign_id",
  "click_id",
  "user_id",
  "device_id",
  "platform",
  "meta",
  "received_at",
  "test",
  ...ATTRIBUTION_MACROS,
] as const);

/** The body a POST partner gets without a template: one stable shape, amount kept as an exact decimal string. */
export function defaultBody({ values, meta }: MacroValues): string {
  const body: Record<string, unknown> = {};
  for (const field of DEFAULT_BODY_FIELDS) {
    if (field === "meta") {
      body.meta = meta;
      continue;
    }
    const value = Object.hasOwn(values, field) ? values[field] : undefined;
    if (value !== undefined) body[field] = bodyValue(field, value);
  }
  return JSON.stringify(body);
}

function bodyValue(field: string, value: Scalar | null): Scalar | null {
  if (value === null) return null;
  if (field === "attempt") return Number(value);
  if (field === "test") return value === true || value === "true";
  return String(value);
}

function render(template: string, values: MacroValues, encode: (text: string) => string): string {
  return template.replace(MACRO, (_match, name: string) => encode(lookUp(name, values)));
}

function lookUp(name: string, { values, meta }: MacroValues): string {
  const [source, key] = name.startsWith(META_PREFIX) ? [meta, name.slice(META_PREFIX.length)] : [values, name];
  // `Object.hasOwn`, so that `{constructor}` or `{meta.__proto__}` cannot reach the prototype.
  const value = Object.hasOwn(source, key) ? source[key] : undefined;
  return value === null || value === undefined ? "" : String(value);
}
