/**
 * The inbound log of a network that hashes identifiers keeps, in its excerpts, the keyed hashes of
 * `user_id` and `device_id` in place of the values (docs/privacy.md), so the raw value is not
 * stored there either, whatever became of the request (a 401 or a 422 is logged too, before any
 * field was validated). Parameters are found by name (the field's own, and those the network's
 * mapping reads); a JSON body by its keys, wherever they are (a batch's events too), without
 * parsing: a body that is not valid JSON still has its identifiers hashed, and a body whose
 * identifier cannot be told apart (an unterminated string, an object for a value) is withheld.
 */
import type { HashableIdentifier } from "../domain/network";
import { normalizeIdentifier } from "../domain/postback";

export type HashValue = (field: HashableIdentifier, value: string) => Promise<string>;

/** `params` with the values of identifier parameters hashed. */
export async function hashParams(
  params: URLSearchParams,
  names: Readonly<Record<string, HashableIdentifier>>,
  hash: HashValue,
): Promise<URLSearchParams> {
  const kept = new URLSearchParams();
  for (const [name, value] of params) {
    const field = Object.hasOwn(names, name) ? names[name] : undefined;
    kept.append(name, field !== undefined && value !== "" ? await hash(field, normalizeIdentifier(value)) : value);
  }
  return kept;
}

const STRING_AT = /"(?:[^"\\\n]|\\.)*"/y;
const SCALAR_AT = /-?[0-9][0-9.eE+-]*|true|false|null/y;
const SPACE_AT = /\s*/y;

function matchAt(pattern: RegExp, text: string, index: number): string | null {
  pattern.lastIndex = index;
  return pattern.exec(text)?.[0] ?? null;
}

function skipSpace(text: string, index: number): number {
  return index + (matchAt(SPACE_AT, text, index)?.length ?? 0);
}

function decoded(literal: string): string | null {
  try {
    const value: unknown = JSON.parse(literal);
    return typeof value === "string" ? value : null;
  } catch {
    return null;
  }
}

/**
 * JSON text with the value of every `"<field>": …` member hashed (as a JSON string), the rest of
 * the text as it was. Null when an identifier's value cannot be delimited: then nothing of the
 * body may be kept.
 */
export async function hashJsonMembers(
  text: string,
  fields: readonly HashableIdentifier[],
  hash: HashValue,
): Promise<string | null> {
  let out = "";
  let at = 0;
  for (;;) {
    const quote = text.indexOf('"', at);
    if (quote < 0) return out + text.slice(at);
    const literal = matchAt(STRING_AT, text, quote);
    // An unterminated string: nothing after it can be a member.
    if (literal === null) return fields.some((field) => text.includes(field, quote)) ? null : out + text.slice(at);
    out += text.slice(at, quote) + literal;
    at = quote + literal.length;
    const key = decoded(literal);
    const field = fields.find((name) => name === key);
    const colon = skipSpace(text, at);
    if (field === undefined || text[colon] !== ":") continue;
    const start = skipSpace(text, colon + 1);
    out += text.slice(at, start);
    const value =
      text[start] === '"' ? matchAt(STRING_AT, text, start) : (matchAt(SCALAR_AT, text, start) ?? undefined);
    if (value === null || value === undefined) return null;
    const raw = text[start] === '"' ? decoded(value) : value;
    if (raw === null) return null;
    out += raw === "null" && text[start] !== '"' ? raw : JSON.stringify(await hash(field, normalizeIdentifier(raw)));
    at = start + value.length;
  }
}
