/**
 * Verifies Apple's SKAdNetwork install-validation postbacks: the version's signed fields
 * (src/domain/skadnetwork.ts) joined with U+2063, checked against Apple's P-256 key with ECDSA
 * SHA-256. Apple sends the signature DER-encoded; Web Crypto verifies IEEE P1363 (r || s), so it is
 * converted first. Versions 1.0 and 2.0 are signed with P-192, which Web Crypto lacks: they are
 * refused, never accepted unverified. Pure (Web Crypto only); never throws on a malformed signature.
 */

import {
  APPLE_SKADNETWORK_KEYS,
  P192_VERSIONS,
  SIGNED_FIELD_SEPARATOR,
  SIGNED_FIELDS,
  type SignedSlot,
  type SkadnetworkPostback,
} from "../domain/skadnetwork";
import { fromBase64, utf8 } from "../lib/bytes";

export type SkadnetworkVerdict =
  /** `key`: the index in `keys.p256` of the key that verified it. */
  | { ok: true; signed: string; key: number }
  /** `signed` is the string the signature should cover (null when the hub cannot build it). */
  | { ok: false; reason: string; signed: string | null };

/** The keys to verify with, tried in order: P-256 SPKI (base64), Apple's first. Tests may pass their own. */
export interface SkadnetworkKeys {
  p256: readonly string[];
}

export const P192_REASON =
  "SKAdNetwork 1.0 and 2.0 are signed with P-192, which the hub cannot verify; Web Crypto has no P-192 curve, so the postback is refused rather than accepted unverified (ad networks should serve SKAdNetwork 2.1 or later)";

/** The value of one field as Apple signs it: text as is, booleans as true/false, numbers in decimal. */
function signedValue(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number" && Number.isSafeInteger(value)) return value.toString(10);
  return undefined;
}

function slotValue(postback: Readonly<Record<string, unknown>>, slot: SignedSlot): string | null | undefined {
  if ("oneOf" in slot) {
    for (const field of slot.oneOf) {
      const value = signedValue(postback[field]);
      if (value !== undefined) return value;
    }
    return null; // neither is present: the slot is left out
  }
  const value = signedValue(postback[slot.field]);
  if (value === undefined) return slot.whenPresent ? null : undefined;
  return value;
}

/**
 * The version's signed fields joined with U+2063. Throws only for a postback the schema would have
 * refused (a required field missing or not text, boolean or integer).
 */
export function signedString(postback: SkadnetworkPostback): string {
  const fields = postback as unknown as Readonly<Record<string, unknown>>;
  const parts: string[] = [];
  for (const slot of SIGNED_FIELDS[postback.version]) {
    const value = slotValue(fields, slot);
    if (value === undefined) {
      throw new TypeError(`a ${postback.version} postback must carry ${"field" in slot ? slot.field : "its fields"}`);
    }
    if (value !== null) parts.push(value);
  }
  return parts.join(SIGNED_FIELD_SEPARATOR);
}

/** The imported keys, by SPKI: a verification per postback must not re-import Apple's key (null: not base64). */
const importedKeys = new Map<string, Promise<CryptoKey>>();

export function p256Key(spkiBase64: string): Promise<CryptoKey> | null {
  const cached = importedKeys.get(spkiBase64);
  if (cached) return cached;
  const spki = fromBase64(spkiBase64);
  if (!spki) return null;
  const imported = crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
  importedKeys.set(spkiBase64, imported);
  // A key that fails to import is not kept: the next call tries again (and fails the same way).
  imported.catch(() => importedKeys.delete(spkiBase64));
  return imported;
}

/**
 * A DER ECDSA signature (SEQUENCE of two INTEGERs) as IEEE P1363: r and s, each left-padded to
 * `size` bytes. Leading zero bytes (DER's sign byte, or a sender's padding) are dropped; integers
 * shorter than `size` are padded; anything else (a negative integer, one too long, trailing bytes,
 * long-form lengths a P-256 signature never needs) is null.
 */
export function derToP1363(der: Uint8Array, size = 32): Uint8Array<ArrayBuffer> | null {
  let offset = 0;
  const byte = () => (offset < der.length ? (der[offset++] ?? -1) : -1);
  if (byte() !== 0x30) return null;
  const sequenceLength = byte();
  if (sequenceLength < 0 || sequenceLength > 0x7f || offset + sequenceLength !== der.length) return null;
  const out = new Uint8Array(size * 2);
  for (const half of [0, 1]) {
    if (byte() !== 0x02) return null;
    const length = byte();
    if (length <= 0 || length > 0x7f || offset + length > der.length) return null;
    let integer = der.subarray(offset, offset + length);
    offset += length;
    if ((integer[0] ?? 0) & 0x80) return null; // negative: never an ECDSA r or s
    let start = 0;
    while (start < integer.length - 1 && integer[start] === 0) start++;
    integer = integer.subarray(start);
    if (integer.length > size) return null;
    out.set(integer, half * size + (size - integer.length));
  }
  return offset === der.length ? out : null;
}

/** Verifies a parsed postback (SkadnetworkPostbackSchema) against Apple's key. */
export async function verifySkadnetwork(
  postback: SkadnetworkPostback,
  keys: SkadnetworkKeys = { p256: [APPLE_SKADNETWORK_KEYS.p256] },
): Promise<SkadnetworkVerdict> {
  let signed: string;
  try {
    signed = signedString(postback);
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error), signed: null };
  }
  // The string is still shown: it is what Apple signed, though no Worker can check it.
  if (P192_VERSIONS.includes(postback.version)) return { ok: false, reason: P192_REASON, signed };
  const der = fromBase64(postback["attribution-signature"]);
  if (!der) {
    return { ok: false, reason: "attribution-signature is not standard padded base64", signed };
  }
  const signature = derToP1363(der);
  if (!signature) {
    return {
      ok: false,
      reason: "attribution-signature is not a DER-encoded ECDSA P-256 signature (SEQUENCE of two INTEGERs)",
      signed,
    };
  }
  for (const [index, spki] of keys.p256.entries()) {
    const keyImport = p256Key(spki);
    if (!keyImport) return { ok: false, reason: "a P-256 public key is not base64 SPKI", signed };
    let key: CryptoKey;
    try {
      key = await keyImport;
    } catch {
      return { ok: false, reason: "a P-256 public key could not be imported (not an SPKI P-256 key)", signed };
    }
    let valid: boolean;
    try {
      valid = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, signature, utf8(signed));
    } catch {
      valid = false;
    }
    if (valid) return { ok: true, signed, key: index };
  }
  return {
    ok: false,
    reason: `attribution-signature does not verify against Apple's P-256 key over the ${postback.version} signed fields`,
    signed,
  };
}
