/**
 * Keys the hub derives from its one master secret (ENCRYPTION_KEY) with HKDF-SHA-256, one per
 * purpose (the `info`), so that a click id's MAC, a pseudonymised identifier and an encrypted
 * secret never share a key, and an operator still has one secret to keep. Imported once per
 * isolate and purpose.
 */
import { fromBase64, utf8 } from "./bytes";

export type KeyPurpose = "click-id v1" | "identifier-hash v1" | "api-key v1" | "console-session v1";

const derived = new Map<string, Promise<CryptoKey>>();

/** An HMAC-SHA-256 key for `purpose`, derived from the base64 master key. */
export function hmacKey(masterKeyBase64: string, purpose: KeyPurpose): Promise<CryptoKey> {
  const cacheKey = `${purpose}\u0000${masterKeyBase64}`;
  let key = derived.get(cacheKey);
  if (!key) {
    key = derive(masterKeyBase64, purpose);
    key.catch(() => derived.delete(cacheKey));
    derived.set(cacheKey, key);
  }
  return key;
}

async function derive(masterKeyBase64: string, purpose: KeyPurpose): Promise<CryptoKey> {
  const master = fromBase64(masterKeyBase64);
  if (!master) throw new Error("the master key is not base64");
  const ikm = await crypto.subtle.importKey("raw", master, "HKDF", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt: utf8("postback-hub"), info: utf8(purpose) },
    ikm,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign"],
  );
}

/** HMAC-SHA-256 of `message` under `key`. */
export async function hmac(key: CryptoKey, message: string): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, utf8(message)));
}
