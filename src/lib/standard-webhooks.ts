/**
 * Standard Webhooks (https://www.standardwebhooks.com), v1 scheme:
 * `webhook-signature: v1,<base64(HMAC-SHA256(key, "<id>.<timestamp>.<raw body>"))>`, where the key
 * is the base64 part of a `whsec_…` secret. Pure: no bindings, no clock of its own.
 */
import { fromBase64, toBase64, utf8 } from "./bytes";

export const SECRET_PREFIX = "whsec_";
export const DEFAULT_TOLERANCE_SECONDS = 300;
/** More entries than any honest sender needs during a rotation; bounds the HMAC work per request. */
const MAX_SIGNATURES = 8;

export interface WebhookHeaders {
  id: string | null;
  timestamp: string | null;
  signature: string | null;
}

/**
 * The names the scheme's three headers go by: Standard Webhooks' own, and Svix's (its client
 * libraries send `svix-id`, `svix-timestamp` and `svix-signature`, with the same content).
 */
export const HEADER_PREFIXES = ["webhook", "svix"] as const;
export type HeaderPrefix = (typeof HEADER_PREFIXES)[number];

/** The prefix a request signs with: `webhook-*` when it carries that signature, else `svix-*` if present. */
export function headerPrefixOf(headers: Headers): HeaderPrefix {
  return !headers.has("webhook-signature") && headers.has("svix-signature") ? "svix" : "webhook";
}

export function webhookHeaders(headers: Headers, prefix: HeaderPrefix = headerPrefixOf(headers)): WebhookHeaders {
  return {
    id: headers.get(`${prefix}-id`),
    timestamp: headers.get(`${prefix}-timestamp`),
    signature: headers.get(`${prefix}-signature`),
  };
}

export type VerifyResult =
  | { ok: true; keyIndex: number }
  /** `mismatch`: well-formed and in time, but signed by no key we hold. */
  | { ok: false; location: string; message: string; mismatch?: boolean };

export function secretBytes(secret: string): Uint8Array<ArrayBuffer> | null {
  const encoded = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const bytes = fromBase64(encoded);
  return bytes && bytes.length > 0 ? bytes : null;
}

export async function importSigningKey(secret: string): Promise<CryptoKey> {
  const bytes = secretBytes(secret);
  if (!bytes) throw new Error("a Standard Webhooks secret must be whsec_ followed by base64");
  return crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
}

export function signedContent(id: string, timestamp: string, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const prefix = utf8(`${id}.${timestamp}.`);
  const content = new Uint8Array(prefix.length + body.length);
  content.set(prefix, 0);
  content.set(body, prefix.length);
  return content;
}

/** The `v1,<base64>` entry for one key; what a sender puts in `webhook-signature`. */
export async function sign(key: CryptoKey, id: string, timestamp: string, body: Uint8Array): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, signedContent(id, timestamp, body));
  return `v1,${toBase64(new Uint8Array(mac))}`;
}

/** The decoded v1 signatures of a header; other versions and undecodable entries are skipped. */
export function parseSignatures(header: string): Uint8Array<ArrayBuffer>[] {
  const signatures: Uint8Array<ArrayBuffer>[] = [];
  for (const entry of header.split(" ")) {
    const comma = entry.indexOf(",");
    if (comma < 0 || entry.slice(0, comma) !== "v1") continue;
    const bytes = fromBase64(entry.slice(comma + 1));
    if (bytes && bytes.length === 32) signatures.push(bytes);
    if (signatures.length === MAX_SIGNATURES) break;
  }
  return signatures;
}

/**
 * Verifies a request against every active key of the sender. Each failure names the check that
 * failed so that a sender can fix it, and never reveals the expected signature.
 */
export async function verify(
  headers: WebhookHeaders,
  body: Uint8Array,
  keys: readonly CryptoKey[],
  nowSeconds: number,
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
  prefix: HeaderPrefix = "webhook",
): Promise<VerifyResult> {
  const { id, timestamp, signature } = headers;
  const [idName, timestampName, signatureName] = [`${prefix}-id`, `${prefix}-timestamp`, `${prefix}-signature`];
  if (!id) return fail(`header.${idName}`, `the ${idName} header is missing`);
  if (!timestamp) return fail(`header.${timestampName}`, `the ${timestampName} header is missing`);
  if (!signature) return fail(`header.${signatureName}`, `the ${signatureName} header is missing`);
  if (!/^\d{1,12}$/.test(timestamp)) {
    return fail(`header.${timestampName}`, `${timestampName} must be integer Unix seconds`);
  }
  const skew = nowSeconds - Number(timestamp);
  if (skew > toleranceSeconds) {
    return fail(
      `header.${timestampName}`,
      `${timestampName} is ${skew} s old; the tolerance is ${toleranceSeconds} s (check the sender's clock, and sign each attempt afresh)`,
    );
  }
  if (-skew > toleranceSeconds) {
    return fail(
      `header.${timestampName}`,
      `${timestampName} is ${-skew} s in the future; the tolerance is ${toleranceSeconds} s (check the sender's clock)`,
    );
  }
  const candidates = parseSignatures(signature);
  if (candidates.length === 0) {
    return fail(
      `header.${signatureName}`,
      `${signatureName} holds no v1 signature (expected space-separated entries like v1,<base64 HMAC-SHA256>)`,
    );
  }
  const content = signedContent(id, timestamp, body);
  for (const [keyIndex, key] of keys.entries()) {
    const expected = await crypto.subtle.sign("HMAC", key, content);
    for (const candidate of candidates) {
      if (crypto.subtle.timingSafeEqual(expected, candidate)) return { ok: true, keyIndex };
    }
  }
  return {
    ok: false,
    location: `header.${signatureName}`,
    message: `no v1 signature matches an active secret of this network; sign "<${idName}>.<${timestampName}>.<raw body bytes>" with HMAC-SHA256 keyed by the base64-decoded part of the whsec_ secret`,
    mismatch: true,
  };
}

function fail(location: string, message: string): VerifyResult {
  return { ok: false, location, message };
}
