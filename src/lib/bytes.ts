/**
 * Small byte helpers over Web APIs: the runtime's own base64 and hex (`Uint8Array.fromBase64`,
 * `toBase64`, `toHex`), held to the strict forms the hub accepts; random ids; constant-time
 * comparison.
 */

const encoder = new TextEncoder();

export function utf8(text: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(encoder.encode(text));
}

export function toBase64(bytes: Uint8Array): string {
  return bytes.toBase64();
}

/**
 * Decodes standard, padded base64; null for anything else. The runtime's decoder also skips
 * whitespace and takes unpadded input: a secret or a signature must be exactly what was issued.
 */
export function fromBase64(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  return decoded(() => Uint8Array.fromBase64(text));
}

export function toHex(bytes: Uint8Array): string {
  return bytes.toHex();
}

/** SHA-256 of `bytes` (a string as UTF-8), in lower-case hex. */
export async function sha256Hex(bytes: Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? utf8(bytes) : bytes;
  return toHex(new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>)));
}

export function toBase64Url(bytes: Uint8Array): string {
  return bytes.toBase64({ alphabet: "base64url", omitPadding: true });
}

/** Decodes unpadded base64url (cursors); null for anything else. */
export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  return decoded(() => Uint8Array.fromBase64(text, { alphabet: "base64url" }));
}

function decoded(decode: () => Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> | null {
  try {
    return decode();
  } catch {
    return null;
  }
}

export function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  return crypto.getRandomValues(new Uint8Array(length));
}

const ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";

/**
 * A sortable id: `prefix_` + 10 chars of millisecond time + 16 random chars (Crockford base32).
 * Sortable ids keep cursor pagination and D1 indexes in arrival order.
 */
export function newId(prefix: string, nowMs: number = Date.now()): string {
  let time = "";
  let t = nowMs;
  for (let i = 0; i < 10; i++) {
    time = (ID_ALPHABET[t % 32] ?? "0") + time;
    t = Math.floor(t / 32);
  }
  let rand = "";
  for (const byte of randomBytes(16)) rand += ID_ALPHABET[byte % 32];
  return `${prefix}_${time}${rand}`;
}

/**
 * Compares two secrets in constant time, whatever their lengths: both sides are hashed first,
 * so neither the content nor the length of the expected value leaks through timing.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", utf8(given)),
    crypto.subtle.digest("SHA-256", utf8(expected)),
  ]);
  return crypto.subtle.timingSafeEqual(a, b);
}
