/**
 * Keyed hashes of people's identifiers (docs/privacy.md). A network can have the hub keep its
 * `user_id` and `device_id` only as `h1:` + base64url of HMAC-SHA-256 under a key derived from the
 * hub's master key ("identifier-hash v1", lib/keys.ts), over `<field>:<value>`. The same value
 * always hashes the same, so joins inside the hub still work; without the master key nobody can
 * hash a guess to test it. The field is part of the message, so a user id and a device id that
 * happen to be equal do not hash alike. An erasure's record keeps the same digest of the value it
 * erased (never the value), which is how the events consumer recognises an erased value in flight.
 */
import { toBase64Url } from "./bytes";
import { looksLikeClickId } from "./click-id";
import { hmac } from "./keys";

/** The version of the scheme, at the front of every hashed value. */
export const IDENTIFIER_HASH_PREFIX = "h1:";
const HASHED = /^h1:[A-Za-z0-9_-]{43}$/;

/** The kinds of identifier the hub hashes or erases; only the first two are ever stored hashed. */
export type IdentifierKind = "user_id" | "device_id" | "click_id";

/** `h1:` + base64url (43 characters) of the 32-byte HMAC of `<kind>:<value>`. */
export async function hashIdentifier(key: CryptoKey, kind: IdentifierKind, value: string): Promise<string> {
  return IDENTIFIER_HASH_PREFIX + toBase64Url(await hmac(key, `${kind}:${value}`));
}

/** Whether `value` has the form of a hashed identifier (it may still be a raw value that looks like one). */
export function isHashedIdentifier(value: string): boolean {
  return HASHED.test(value);
}

/**
 * The digest that stands for a value in the erasure records: a hashed value is its own digest (it
 * is the HMAC of the raw value); a raw one is hashed. So an erasure by a raw value and an erasure
 * by the hashed value a hashing network stored are the same erasure.
 */
export async function identifierDigest(key: CryptoKey, kind: IdentifierKind, value: string): Promise<string> {
  if (kind === "click_id") return hashIdentifier(key, kind, canonicalClickId(value));
  return isHashedIdentifier(value) ? value : hashIdentifier(key, kind, value);
}

/**
 * A hub click id is read case-insensitively and without surrounding whitespace (lib/click-id.ts),
 * so it has one digest in any spelling; a network's own click id is taken as it is.
 */
export function canonicalClickId(value: string): string {
  return looksLikeClickId(value) ? value.trim().toLowerCase() : value;
}
