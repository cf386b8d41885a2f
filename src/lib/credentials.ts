/**
 * Credentials, for networks and partners alike: issued here (a Standard Webhooks `whsec_` signing
 * secret, or a network's static `pbt_` token), shown once by the call that issues them, stored
 * AES-256-GCM encrypted under the ENCRYPTION_KEY secret with the credential's id as additional
 * authenticated data (so a ciphertext cannot be moved to another row), and replaced by a rotation
 * that lets the previous ones work for a grace period.
 */

import { fromBase64, newId, randomBytes, toBase64, toBase64Url, utf8 } from "./bytes";
import { SECRET_PREFIX } from "./standard-webhooks";

const IV_BYTES = 12;
const keys = new Map<string, Promise<CryptoKey>>();

export function generateSecret(): string {
  return SECRET_PREFIX + toBase64(randomBytes(32));
}

export function generateToken(): string {
  return `pbt_${toBase64Url(randomBytes(24))}`;
}

/** What a credential is, and so its value's form and its id's prefix. */
export type CredentialType = "network-signing" | "network-token" | "partner-signing";

const ISSUED: Record<CredentialType, { prefix: string; generate: () => string }> = {
  "network-signing": { prefix: "sec", generate: generateSecret },
  "network-token": { prefix: "tok", generate: generateToken },
  "partner-signing": { prefix: "psec", generate: generateSecret },
};

export interface IssuedCredential {
  id: string;
  /** The value itself: returned once, by the call that issued it, and never again. */
  value: string;
  ciphertext: string;
}

/** A new credential: its id, its value (to show once) and the ciphertext to store. */
export async function issueCredential(encryptionKey: string, type: CredentialType): Promise<IssuedCredential> {
  const { prefix, generate } = ISSUED[type];
  const value = generate();
  const id = newId(prefix);
  return { id, value, ciphertext: await encryptSecret(encryptionKey, id, value) };
}

function encryptionKey(base64Key: string): Promise<CryptoKey> {
  let key = keys.get(base64Key);
  if (!key) {
    const raw = fromBase64(base64Key);
    if (raw?.length !== 32) throw new Error("ENCRYPTION_KEY must be 32 bytes in base64");
    key = crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
    keys.set(base64Key, key);
  }
  return key;
}

export async function encryptSecret(base64Key: string, secretId: string, plaintext: string): Promise<string> {
  const iv = randomBytes(IV_BYTES);
  const sealed = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: utf8(secretId) },
    await encryptionKey(base64Key),
    utf8(plaintext),
  );
  const out = new Uint8Array(IV_BYTES + sealed.byteLength);
  out.set(iv, 0);
  out.set(new Uint8Array(sealed), IV_BYTES);
  return toBase64(out);
}

export async function decryptSecret(base64Key: string, secretId: string, ciphertext: string): Promise<string> {
  const bytes = fromBase64(ciphertext);
  if (!bytes || bytes.length <= IV_BYTES) throw new Error(`secret ${secretId} is not a valid ciphertext`);
  const opened = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: bytes.slice(0, IV_BYTES), additionalData: utf8(secretId) },
    await encryptionKey(base64Key),
    bytes.slice(IV_BYTES),
  );
  return new TextDecoder().decode(opened);
}

/** When credentials replaced by a rotation stop working: the requested grace period, or the hub's default. */
export function graceEndsAt(nowMs: number, requestedSeconds: number | undefined, defaultSeconds: number): string {
  return new Date(nowMs + (requestedSeconds ?? defaultSeconds) * 1000).toISOString();
}
