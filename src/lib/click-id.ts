/**
 * Click ids: self-contained and authenticated, so that a redirect needs no storage round trip
 * and a conversion can be attributed from its click id alone. One id is 84 characters of
 * lowercase Crockford base32 (URL-safe, and read case-insensitively and without surrounding
 * whitespace, since advertisers' systems sometimes change the case of what they store, or pad it):
 *
 *   "1"  version
 *   26   the offer id without its `ofr_` prefix
 *   26   the partner id without its `ptn_` prefix
 *   7    the click time, Unix seconds (35 bits: until the year 3058)
 *   8    40 random bits (so two clicks in one second are two ids)
 *   16   the MAC: the first 80 bits of HMAC-SHA-256 over the 68 characters before it, under a key
 *        derived from the hub's master key (lib/keys.ts)
 *
 * Forging one takes 2^80 guesses; each guess costs the attacker a request.
 */
import { randomBytes, utf8 } from "./bytes";
import { hmac } from "./keys";

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const VERSION = "1";
const ID_CHARS = 26;
const TIME_CHARS = 7;
const RANDOM_CHARS = 8;
const MAC_CHARS = 16;
const SIGNED_CHARS = 1 + 2 * ID_CHARS + TIME_CHARS + RANDOM_CHARS;
export const CLICK_ID_LENGTH = SIGNED_CHARS + MAC_CHARS;

const GENERATED_ID = /^[0-9a-hjkmnp-tv-z]{26}$/;
const CLICK_ID = new RegExp(`^[${ALPHABET}]{${CLICK_ID_LENGTH}}$`);

export interface Click {
  offer_id: string;
  partner_id: string;
  /** Unix seconds. */
  clicked_at: number;
}

export type ClickIdReading = { ok: true; click: Click } | { ok: false; reason: "malformed" | "forged" };

/** A new click id for a click on `offer_id` by `partner_id` at `clickedAtSeconds`. */
export async function mintClickId(key: CryptoKey, click: Click): Promise<string> {
  const offer = unprefixed(click.offer_id, "ofr_");
  const partner = unprefixed(click.partner_id, "ptn_");
  const signed = `${VERSION}${offer}${partner}${encodeNumber(click.clicked_at, TIME_CHARS)}${encodeBytes(randomBytes(5))}`;
  return signed + (await macOf(key, signed));
}

/** What a click id says, if the hub minted it: never trust a part of an id whose MAC failed. */
export async function readClickId(key: CryptoKey, value: string): Promise<ClickIdReading> {
  const id = value.trim().toLowerCase();
  if (!CLICK_ID.test(id) || !id.startsWith(VERSION)) return { ok: false, reason: "malformed" };
  const signed = id.slice(0, SIGNED_CHARS);
  const expected = await macOf(key, signed);
  // Both are MAC_CHARS long (the pattern above), as timingSafeEqual requires.
  if (!crypto.subtle.timingSafeEqual(utf8(expected), utf8(id.slice(SIGNED_CHARS)))) {
    return { ok: false, reason: "forged" };
  }
  const offer = id.slice(1, 1 + ID_CHARS);
  const partner = id.slice(1 + ID_CHARS, 1 + 2 * ID_CHARS);
  const clickedAt = decodeNumber(id.slice(1 + 2 * ID_CHARS, 1 + 2 * ID_CHARS + TIME_CHARS));
  return { ok: true, click: { offer_id: `ofr_${offer}`, partner_id: `ptn_${partner}`, clicked_at: clickedAt } };
}

/** Whether `value` has the shape of a click id (not whether it is one the hub minted). */
export function looksLikeClickId(value: string): boolean {
  return CLICK_ID.test(value.trim().toLowerCase());
}

function unprefixed(id: string, prefix: string): string {
  const rest = id.startsWith(prefix) ? id.slice(prefix.length) : "";
  if (!GENERATED_ID.test(rest)) throw new Error(`${id} is not a generated ${prefix} id`);
  return rest;
}

async function macOf(key: CryptoKey, signed: string): Promise<string> {
  return encodeBytes((await hmac(key, signed)).subarray(0, (MAC_CHARS * 5) / 8));
}

/** Base32 of `bytes` (a multiple of 5 bytes: 8 characters per 5 bytes, no padding). */
function encodeBytes(bytes: Uint8Array): string {
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  return out;
}

function encodeNumber(value: number, chars: number): string {
  if (!Number.isSafeInteger(value) || value < 0 || value >= 32 ** chars) throw new RangeError(`${value} out of range`);
  let out = "";
  let rest = value;
  for (let i = 0; i < chars; i++) {
    out = (ALPHABET[rest % 32] ?? "0") + out;
    rest = Math.floor(rest / 32);
  }
  return out;
}

function decodeNumber(text: string): number {
  let value = 0;
  for (const char of text) value = value * 32 + ALPHABET.indexOf(char);
  return value;
}
