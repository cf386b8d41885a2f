/**
 * Formatting functions in macros, written after the macro's name with pipes and applied left to
 * right: `{amount|cents}`, `{event_time|date:YYYY-MM-DD}`, `{sub1|default:none|upper}`.
 *
 * A chain is checked once, when a template is saved (`compileChain` names every unknown function,
 * missing or wrong argument, and function applied to a value it cannot format), and then formats
 * the raw value at send time, before the template encodes it for where it lands. A function never
 * fails a delivery: a value it cannot format (an amount without a currency, a meta value that is not
 * a time) comes out empty, and a later `default:` says what to send instead. The same analysis says
 * when a chain's result may be empty, so that saving a partner can warn about it.
 */

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { ISO_4217_CODES, minorUnits } from "../domain/currencies";
import { utf8 } from "../lib/bytes";
import { isPlainDecimal, toMinorUnits } from "../lib/money";

/** Every function, in the order the documentation's table lists them. */
export const FORMATTING_FUNCTIONS = [
  "cents",
  "unix",
  "unix_ms",
  "date",
  "sha256",
  "map",
  "default",
  "upper",
  "lower",
] as const;

export type FormattingFunction = (typeof FORMATTING_FUNCTIONS)[number];

/** The tokens of `date:`, all in UTC; any other letter but `T` and `Z` is refused (`yyyy` is a mistake, not text). */
export const DATE_TOKENS = ["YYYY", "MM", "DD", "HH", "mm", "ss"] as const;

/** One `|name:argument` of a macro; `argument` is null when there is no colon. */
export interface FunctionCall {
  name: string;
  argument: string | null;
}

/** What is known of a macro's value before any function runs. */
export interface MacroTraits {
  /**
   * What it is: money (`cents` formats it), a time (`unix`, `date`), text; a meta value may be text
   * or a time. `unknown`: the macro is an error of its own, and only its functions' names and
   * arguments are checked.
   */
  kind: "money" | "time" | "text" | "meta" | "unknown";
  /** Every value it can take when that set is closed (a status), so that `map` keys can be checked. */
  values: readonly string[] | null;
  /** Why some deliveries lack it; empty when every delivery has it. */
  emptyWhen: readonly string[];
}

/** Formats a raw value; `currency` is the money macro's own currency (`{amount}`'s `{currency}`), else empty. */
export type Format = (value: string, currency: string) => string;

export type CompiledChain = { ok: true; format: Format; emptyWhen: string[] } | { ok: false; problems: string[] };

/** `|cents|default:0` into its calls; an argument runs from the first colon to the next pipe. */
export function parseCalls(chain: string): FunctionCall[] {
  if (chain === "") return [];
  return chain
    .slice(1)
    .split("|")
    .map((call) => {
      const colon = call.indexOf(":");
      return colon === -1
        ? { name: call, argument: null }
        : { name: call.slice(0, colon), argument: call.slice(colon + 1) };
    });
}

interface State extends MacroTraits {
  /** The last function that changed what the value is (`cents` on `{amount}`), for the messages. */
  madeBy: string | null;
  /** Why the macro itself may be empty: its currency is missing then too, whatever a `default:` did. */
  macroEmptyWhen: readonly string[];
}

type Step = { format: Format; next: State } | { problem: string };

const KNOWN_LIST = FORMATTING_FUNCTIONS.join(", ");
const MONEY_MACROS = "{amount}, {payout} or {previous_payout}";
const TIME_MACROS = "{event_time}, {received_at} or {clicked_at}";

/**
 * The chain of `{macro|…}` checked against what the macro holds, and made into one formatter.
 * `macro` is the name as written (`status`, `meta.sub1`), for the messages.
 */
export function compileChain(macro: string, traits: MacroTraits, calls: readonly FunctionCall[]): CompiledChain {
  let state: State = { ...traits, emptyWhen: [...traits.emptyWhen], madeBy: null, macroEmptyWhen: traits.emptyWhen };
  const formats: Format[] = [];
  const problems: string[] = [];
  for (const call of calls) {
    const step = compileCall(call, state, macro);
    if ("problem" in step) {
      problems.push(step.problem);
      // What the value is after a function that failed is unknown: check the rest of the chain leniently.
      state = { ...state, kind: "unknown", values: null, madeBy: call.name };
      continue;
    }
    formats.push(step.format);
    state = step.next;
  }
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    format: (value, currency) => formats.reduce((current, format) => format(current, currency), value),
    emptyWhen: [...new Set(state.emptyWhen)],
  };
}

function compileCall({ name, argument }: FunctionCall, state: State, macro: string): Step {
  if (name === "") return { problem: `a "|" must be followed by a function; known: ${KNOWN_LIST}` };
  if (!isFormattingFunction(name)) return { problem: `unknown function ${name}; known: ${KNOWN_LIST}` };
  const takesArgument = name === "date" || name === "map" || name === "default";
  if (!takesArgument && argument !== null) {
    return { problem: `${name} takes no argument (remove ":${argument}")` };
  }
  const text = (format: Format, values: readonly string[] | null = null, emptyWhen = state.emptyWhen): Step => ({
    format,
    next: { ...state, kind: "text", values, emptyWhen, madeBy: name },
  });
  switch (name) {
    case "cents":
      if (state.kind !== "money" && state.kind !== "unknown") {
        return { problem: `cents formats ${MONEY_MACROS}, ${notThis(state, macro)}` };
      }
      // `{amount|default:0|cents}` is still empty without an amount: there is no currency then.
      return text(cents, null, [...state.emptyWhen, ...state.macroEmptyWhen]);
    case "unix":
    case "unix_ms":
    case "date": {
      if (state.kind === "money" || state.kind === "text") {
        return { problem: `${name} formats a time (${TIME_MACROS}, or a meta value), ${notThis(state, macro)}` };
      }
      let format: Format = name === "unix" ? unixSeconds : unixMilliseconds;
      if (name === "date") {
        const pattern = datePattern(argument);
        if (typeof pattern === "string") return { problem: pattern };
        format = (value) => formatDate(value, pattern);
      }
      if (state.kind !== "meta") return text(format);
      return text(format, null, [...state.emptyWhen, "a meta value that is not an RFC 3339 time"]);
    }
    case "sha256":
      return text(sha256Hex);
    case "upper":
      return text(upper, state.values?.map(upper) ?? null);
    case "lower":
      return text(lower, state.values?.map(lower) ?? null);
    case "map":
      return compileMap(argument, state);
    case "default":
      if (argument === null) {
        return {
          problem:
            'default needs a value after a colon, like default:none ("default:" with nothing after it sends the empty string on purpose)',
        };
      }
      return {
        format: (value) => (value === "" ? argument : value),
        next: { ...state, values: state.values === null ? null : [...state.values, argument], emptyWhen: [] },
      };
  }
}

function isFormattingFunction(name: string): name is FormattingFunction {
  return (FORMATTING_FUNCTIONS as readonly string[]).includes(name);
}

/** "not {status}", or "not what sha256 made of it" once a function has changed the value. */
function notThis(state: State, macro: string): string {
  return state.madeBy === null ? `not {${macro}}` : `not what ${state.madeBy} made of {${macro}}`;
}

function compileMap(argument: string | null, state: State): Step {
  if (argument === null || argument === "") {
    return { problem: "map needs pairs after a colon, like map:approved=1,declined=2" };
  }
  const pairs = new Map<string, string>();
  for (const pair of argument.split(",")) {
    const equals = pair.indexOf("=");
    if (equals <= 0) {
      return { problem: `map: "${pair}" is not a pair like approved=1 (pairs are separated by commas)` };
    }
    const key = pair.slice(0, equals);
    if (pairs.has(key)) return { problem: `map: "${key}" is mapped twice` };
    pairs.set(key, pair.slice(equals + 1));
  }
  const possible = state.values;
  if (possible !== null) {
    const never = [...pairs.keys()].filter((key) => !possible.includes(key));
    if (never.length > 0) {
      const list = never.map((key) => `"${key}"`).join(", ");
      return { problem: `map: ${list} can never match; the value is one of ${possible.join(", ")}` };
    }
  }
  const missed = possible === null ? null : possible.filter((value) => !pairs.has(value));
  const emptyWhen = [...state.emptyWhen];
  if (missed === null) emptyWhen.push("a value not in the map");
  else if (missed.length > 0) emptyWhen.push(`a value not in the map (${missed.join(", ")})`);
  return {
    // A value not in the map renders empty, so that `|default:` decides what a miss sends.
    format: (value) => pairs.get(value) ?? "",
    next: { ...state, kind: "text", values: [...new Set(pairs.values())], emptyWhen, madeBy: "map" },
  };
}

/** An exact decimal in the currency's ISO 4217 minor units, rounded half to even past them; empty without a currency. */
function cents(value: string, currency: string): string {
  if (!isPlainDecimal(value) || !ISO_4217_CODES.has(currency)) return "";
  return toMinorUnits(value, minorUnits(currency));
}

const RFC_3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** Milliseconds since the epoch of an RFC 3339 time, or null: `Date.parse` alone reads "1" as the year 2001. */
function timeOf(value: string): number | null {
  if (!RFC_3339.test(value)) return null;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

function unixSeconds(value: string): string {
  const ms = timeOf(value);
  return ms === null ? "" : String(Math.floor(ms / 1000));
}

function unixMilliseconds(value: string): string {
  const ms = timeOf(value);
  return ms === null ? "" : String(ms);
}

type DateToken = (typeof DATE_TOKENS)[number];
type DatePart = { token: DateToken } | { text: string };

/** A `date:` pattern into tokens and literal text, or what is wrong with it. */
function datePattern(pattern: string | null): DatePart[] | string {
  if (pattern === null || pattern === "") return "date needs a pattern after a colon, like date:YYYY-MM-DD";
  const parts: DatePart[] = [];
  let index = 0;
  while (index < pattern.length) {
    const token = DATE_TOKENS.find((candidate) => pattern.startsWith(candidate, index));
    if (token !== undefined) {
      parts.push({ token });
      index += token.length;
      continue;
    }
    const letters = /^[A-Za-z]+/.exec(pattern.slice(index))?.[0];
    if (letters !== undefined && !/^[TZ]$/.test(letters.charAt(0))) {
      return `date: "${letters}" is not a token of ${DATE_TOKENS.join(" ")} (UTC); letters other than T and Z cannot stand as text`;
    }
    parts.push({ text: pattern.charAt(index) });
    index += 1;
  }
  if (!parts.some((part) => "token" in part)) {
    return `date: "${pattern}" has none of the tokens ${DATE_TOKENS.join(" ")}`;
  }
  return parts;
}

function formatDate(value: string, parts: readonly DatePart[]): string {
  const ms = timeOf(value);
  if (ms === null) return "";
  const date = new Date(ms);
  const fields: Record<DateToken, string> = {
    YYYY: String(date.getUTCFullYear()).padStart(4, "0"),
    MM: String(date.getUTCMonth() + 1).padStart(2, "0"),
    DD: String(date.getUTCDate()).padStart(2, "0"),
    HH: String(date.getUTCHours()).padStart(2, "0"),
    mm: String(date.getUTCMinutes()).padStart(2, "0"),
    ss: String(date.getUTCSeconds()).padStart(2, "0"),
  };
  return parts.map((part) => ("token" in part ? fields[part.token] : part.text)).join("");
}

/** Lowercase hex of the UTF-8 bytes; an empty value stays empty (a digest of nothing would look like a value). */
function sha256Hex(value: string): string {
  return value === "" ? "" : bytesToHex(sha256(utf8(value)));
}

function upper(value: string): string {
  return value.toUpperCase();
}

function lower(value: string): string {
  return value.toLowerCase();
}
