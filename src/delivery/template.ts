/**
 * Partner postback templates: `https://partner.example/pb?tx={transaction_id}` or a JSON body with
 * macros, each optionally formatted (`{amount|cents}`, formatting.ts). Conversion values come from
 * networks, so each one is encoded for where it lands (percent-encoded in a URL, JSON-escaped in a
 * body) after its functions ran, and can never change the shape of the request. Braces around
 * anything that is not a macro name stay literal, so JSON braces pass through.
 */
import { EVENT_SOURCES, MATERIAL_FIELDS, type MaterialField } from "../domain/conversion";
import { SUB_ID_NAMES } from "../domain/offer";
import { CONVERSION_STATUSES, PLATFORMS } from "../domain/postback";
import type { FieldError } from "../errors";
import { type CompiledChain, compileChain, type FunctionCall, type MacroTraits, parseCalls } from "./formatting";

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

/** A name, then any functions: `{amount}`, `{meta.sub1}`, `{amount|cents|default:0}`. Sticky: tried at each `{`. */
const MACRO = /\{([a-z_][a-z0-9_]*|meta\.[A-Za-z0-9_.-]{1,64})((?:\|[^{}|]*)*)\}/y;
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

/** A macro as written in a template. */
export interface MacroUse {
  /** Where it starts in the template, counting from 0. */
  start: number;
  end: number;
  /** As written: `{amount|cents}`. */
  text: string;
  /** `amount`, `meta.sub1`. */
  name: string;
  calls: FunctionCall[];
  /** Inside a JSON string of the template's own (between its quotes): in a body, an empty unquoted macro is `null`. */
  quoted: boolean;
}

/** Every macro in the template, in order, repeats included. */
export function macroUses(template: string): MacroUse[] {
  const uses: MacroUse[] = [];
  let quoted = false;
  for (let index = 0; index < template.length; ) {
    const char = template.charAt(index);
    if (char === "{") {
      MACRO.lastIndex = index;
      const match = MACRO.exec(template);
      if (match !== null) {
        const text = match[0];
        uses.push({
          start: index,
          end: index + text.length,
          text,
          name: match[1] ?? "",
          calls: parseCalls(match[2] ?? ""),
          quoted,
        });
        index += text.length;
        continue;
      }
    }
    if (quoted && char === "\\" && /["\\]/.test(template.charAt(index + 1))) {
      index += 2;
      continue;
    }
    if (char === '"') quoted = !quoted;
    index += 1;
  }
  return uses;
}

/** Every macro name in the template, in order, repeats included. */
export function macroNames(template: string): string[] {
  return macroUses(template).map((use) => use.name);
}

export function isKnownMacro(name: string): boolean {
  return KNOWN.has(name) || name.startsWith(META_PREFIX);
}

/** The money macros, each with the macro of its currency (what `cents` needs). */
const CURRENCY_OF: Readonly<Record<string, KnownMacro>> = {
  amount: "currency",
  payout: "payout_currency",
  previous_payout: "payout_currency",
};

/** `Object.hasOwn`, so that `{constructor|upper}` cannot reach the prototype. */
function currencyMacro(name: string): KnownMacro | null {
  return Object.hasOwn(CURRENCY_OF, name) ? (CURRENCY_OF[name] ?? null) : null;
}

const TIME_MACROS: ReadonlySet<string> = new Set<KnownMacro>(["event_time", "received_at", "clicked_at"]);

/** Macros whose every value is known, so that a `map` key none of them can be is refused. */
const CLOSED_VALUES: Readonly<Partial<Record<KnownMacro, readonly string[]>>> = {
  status: CONVERSION_STATUSES,
  previous_status: CONVERSION_STATUSES,
  verdict: ["accepted", "updated"],
  test: ["true", "false"],
  source: EVENT_SOURCES,
  platform: PLATFORMS,
};

/**
 * Macros every new delivery has. Any other may be empty for some conversions, a conversion field
 * added to the schema since included, until it is named here.
 */
const ALWAYS_PRESENT: ReadonlySet<string> = new Set<KnownMacro>([
  "transaction_id",
  "network_id",
  "status",
  "event_time",
  "event_id",
  "delivery_id",
  "attempt",
  "verdict",
  "received_at",
  "test",
  "source",
  "attribution",
]);

/** For whom a macro that may be empty is empty, in the warnings' words ("{x} is empty for …"). */
const EMPTY_FOR: Readonly<Partial<Record<KnownMacro, string>>> = {
  previous_status: "a new conversion",
  amount: "a conversion without an amount, and for an attributed partner that does not share it",
  currency: "a conversion without an amount, and for an attributed partner that does not share it",
  partner_id: "a conversion credited to no partner and naming none",
  offer_id: "a conversion attributed to no offer",
  clicked_at: "a conversion without a click",
  payout: "a conversion that pays no partner",
  previous_payout: "a conversion that paid no partner before this event",
  payout_currency: "a conversion that pays no partner",
};

function traitsOf(name: string): MacroTraits {
  if (name.startsWith(META_PREFIX)) {
    return {
      kind: "meta",
      values: null,
      emptyWhen: [`a conversion whose meta has no ${name.slice(META_PREFIX.length)}`],
    };
  }
  // An unknown macro is refused on its own; its functions are checked as if it could be anything.
  if (!KNOWN.has(name)) return { kind: "unknown", values: null, emptyWhen: [] };
  const known = name as KnownMacro;
  const subId = (SUB_ID_NAMES as readonly string[]).includes(name);
  const emptyFor =
    EMPTY_FOR[known] ??
    (subId ? `a conversion without a click, or whose click had no ${name}` : `a conversion without ${name}`);
  return {
    kind: currencyMacro(name) !== null ? "money" : TIME_MACROS.has(name) ? "time" : "text",
    values: CLOSED_VALUES[known] ?? null,
    emptyWhen: ALWAYS_PRESENT.has(name) ? [] : [emptyFor],
  };
}

function chainOf(use: MacroUse): CompiledChain {
  return compileChain(use.name, traitsOf(use.name), use.calls);
}

/** Where a problem or a warning is: `at character 41: {amount|centz}` (counting from 1, as the URL checks do). */
function at(use: MacroUse): string {
  return `at character ${use.start + 1}: ${use.text}`;
}

export function lintTemplate(template: string, location: string): FieldError[] {
  const uses = macroUses(template);
  const unknown = new Set(uses.map((use) => use.name).filter((name) => !isKnownMacro(name)));
  const errors = [...unknown].map((name) => ({ location, message: `unknown macro {${name}}; known: ${KNOWN_LIST}` }));
  for (const use of uses) {
    const chain = chainOf(use);
    if (!chain.ok) errors.push(...chain.problems.map((problem) => ({ location, message: `${at(use)}: ${problem}` })));
  }
  return errors;
}

/**
 * The macros that some conversions leave empty and no `default:` fills: not an error (an empty
 * value is sent as the empty string, or `null` unquoted in a body), but worth a look when saving.
 * One warning per macro as written, at its first place.
 */
export function templateWarnings(template: string, location: string, place: "url" | "body"): FieldError[] {
  const warned = new Set<string>();
  const warnings: FieldError[] = [];
  for (const use of macroUses(template)) {
    const chain = chainOf(use);
    if (!chain.ok || chain.emptyWhen.length === 0 || !isKnownMacro(use.name) || warned.has(use.text)) continue;
    warned.add(use.text);
    const sentAs = place === "body" && !use.quoted ? "null" : "the empty string";
    warnings.push({
      location,
      message: `${at(use)} is empty for ${chain.emptyWhen.join(", or for ")}; it is then sent as ${sentAs}. To send something else, add a default: ${use.text.slice(0, -1)}|default:…}`,
    });
  }
  return warnings;
}

export function renderUrl(template: string, values: MacroValues): string {
  return render(template, values, encodeURIComponent, false);
}

/**
 * A URL template's scheme, authority and path as written: the authority runs to the first `/`, `\`,
 * `?` or `#` after the slashes, the path to the first `?` or `#` (the URL parser treats `\` as `/`
 * and tolerates `https:host`, so this must too).
 */
export function urlParts(template: string): { scheme: string; authority: string; path: string } {
  // Read with each macro masked: a value is percent-encoded, so a `/` in `{event_time|date:YYYY/MM}`
  // never ends anything in the rendered URL.
  const masked = maskMacros(template);
  const schemeEnd = /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*/.exec(masked)?.[0].length ?? 0;
  const authorityEnd = schemeEnd + masked.slice(schemeEnd).search(/[/\\?#]|$/);
  const pathEnd = authorityEnd + masked.slice(authorityEnd).search(/[?#]|$/);
  return {
    scheme: template.slice(0, schemeEnd),
    authority: template.slice(schemeEnd, authorityEnd),
    path: template.slice(authorityEnd, pathEnd),
  };
}

/** The template with every macro's characters replaced by `x`, so that positions stay the same. */
function maskMacros(template: string): string {
  let masked = "";
  let last = 0;
  for (const use of macroUses(template)) {
    masked += template.slice(last, use.start) + "x".repeat(use.text.length);
    last = use.end;
  }
  return masked + template.slice(last);
}

/** A path's segments as the URL parser splits the rendered path (at `/` and `\`, never inside a macro). */
function pathSegments(path: string): string[] {
  const segments: string[] = [];
  let from = 0;
  for (const separator of maskMacros(path).matchAll(/[/\\]/g)) {
    segments.push(path.slice(from, separator.index));
    from = separator.index + 1;
  }
  segments.push(path.slice(from));
  return segments;
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
  for (const segment of pathSegments(urlParts(template).path)) {
    const macros = macroNames(segment);
    if (macros.length === 0) continue;
    const rendered = renderUrl(segment, values);
    if (DOT_SEGMENT.test(rendered)) return { segment: rendered, macros };
  }
  return null;
}

/**
 * Values land inside JSON strings, `{"txid":"{transaction_id}"}`, or stand as JSON numbers and
 * booleans, `{"payout":{amount}}`; an unquoted macro with no value is `null`, so that a conversion
 * without an amount still makes valid JSON.
 */
export function renderBody(template: string, values: MacroValues): string {
  return render(template, values, (text) => JSON.stringify(text).slice(1, -1), true);
}

/**
 * The sample, with a text value for every meta key the template names that the sample lacks: a
 * meta value may be text, so an unquoted `{meta.KEY}` must not pass for lack of a sample.
 */
function lintSample(template: string): MacroValues {
  const meta: Record<string, string | number | boolean> = { ...SAMPLE_VALUES.meta };
  for (const name of macroNames(template)) {
    const key = name.slice(META_PREFIX.length);
    if (name.startsWith(META_PREFIX) && !Object.hasOwn(meta, key)) meta[key] = 'spring "sale" \\ café';
  }
  return { values: SAMPLE_VALUES.values, meta };
}

/**
 * The sample with only what every delivery has: each macro some conversions lack is empty, as a
 * conversion with nothing but a status would leave it.
 */
export const SPARSE_SAMPLE: MacroValues = {
  values: Object.fromEntries(Object.entries(SAMPLE_VALUES.values).filter(([name]) => ALWAYS_PRESENT.has(name))),
  meta: {},
};

export function lintBodyTemplate(template: string, location: string): FieldError[] {
  const errors = lintTemplate(template, location);
  // A macro whose functions are wrong is sent as written: JSON errors about it would only be noise.
  if (macroUses(template).some((use) => !chainOf(use).ok)) return errors;
  const fullError = jsonError(renderBody(template, lintSample(template)));
  const emptyError = fullError === null ? jsonError(renderBody(template, SPARSE_SAMPLE)) : null;
  if (fullError !== null) {
    errors.push({
      location,
      message: `must be valid JSON once macros are filled in; with a sample conversion: ${fullError}. Put text macros inside quotes, like "{transaction_id}"`,
    });
  } else if (emptyError !== null) {
    errors.push({
      location,
      message: `must be valid JSON when macros are empty too (an unquoted macro without a value is sent as null); for a conversion with none of the values some conversions lack: ${emptyError}. Put an unquoted macro where a JSON value goes, like {"payout":{amount}}`,
    });
  }
  return errors;
}

function jsonError(text: string): string | null {
  try {
    JSON.parse(text);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
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

/**
 * Each macro's value, formatted by its functions, then encoded. A macro whose functions do not
 * compile (a template saved before they existed, where `{x|y}` was text) stays as it is written.
 */
function render(template: string, values: MacroValues, encode: (text: string) => string, json: boolean): string {
  let rendered = "";
  let last = 0;
  for (const use of macroUses(template)) {
    rendered += template.slice(last, use.start);
    last = use.end;
    const chain = use.calls.length === 0 ? null : chainOf(use);
    if (chain !== null && !chain.ok) {
      rendered += use.text;
      continue;
    }
    const raw = lookUp(use.name, values);
    const currency = currencyMacro(use.name);
    const value = chain === null ? raw : chain.format(raw, currency === null ? "" : lookUp(currency, values));
    rendered += json && !use.quoted && value === "" ? "null" : encode(value);
  }
  return rendered + template.slice(last);
}

function lookUp(name: string, { values, meta }: MacroValues): string {
  const [source, key] = name.startsWith(META_PREFIX) ? [meta, name.slice(META_PREFIX.length)] : [values, name];
  // `Object.hasOwn`, so that `{constructor}` or `{meta.__proto__}` cannot reach the prototype.
  const value = Object.hasOwn(source, key) ? source[key] : undefined;
  return value === null || value === undefined ? "" : String(value);
}
