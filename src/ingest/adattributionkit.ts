/**
 * AdAttributionKit postbacks: a compact JWS (RFC 7515) signed with ES256 by a key Apple names by
 * `kid`. The verifier takes the keys it trusts by kid, refuses any other algorithm (alg none, HS256
 * with a public key as its secret…) and any kid it does not hold, and returns the payload decoded
 * from the signed JWS alone: no field beside the JWS is ever read as verified. A JWS ES256
 * signature is already IEEE P1363 (r || s), which Web Crypto verifies as is. Pure; never throws.
 */
import { fromBase64Url } from "../lib/bytes";

export type TrustedKeys = Readonly<Record<string, CryptoKey | JsonWebKey>>;

export type AdAttributionKitVerdict =
  | { ok: true; kid: string; header: Record<string, unknown>; payload: Record<string, unknown> }
  | { ok: false; reason: string };

/** Header parameters whose meaning would change what is verified: refused, as RFC 7515 §4.1.11 asks for crit. */
const REFUSED_HEADER_PARAMETERS = ["crit", "jku", "jwk", "x5u", "x5c", "b64"];

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });
const ascii = new TextEncoder();

/** JWK imports, by the JWK object: the same trusted set is not re-imported per postback. */
const importedJwks = new WeakMap<JsonWebKey, Promise<CryptoKey>>();

function decodeJson(segment: string): Record<string, unknown> | null {
  const bytes = fromBase64Url(segment);
  if (!bytes) return null;
  try {
    const value: unknown = JSON.parse(strictUtf8.decode(bytes));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

function isCryptoKey(key: CryptoKey | JsonWebKey): key is CryptoKey {
  return typeof CryptoKey !== "undefined" && key instanceof CryptoKey;
}

async function verifyingKey(key: CryptoKey | JsonWebKey): Promise<CryptoKey | null> {
  if (isCryptoKey(key)) {
    const algorithm = key.algorithm as CryptoKeyEllipticKeyAlgorithm;
    const usable = algorithm.name === "ECDSA" && algorithm.namedCurve === "P-256" && key.usages.includes("verify");
    return usable ? key : null;
  }
  if (key.kty !== "EC" || key.crv !== "P-256" || key.d !== undefined) return null; // a private JWK is no trust anchor
  let imported = importedJwks.get(key);
  if (!imported) {
    const { kty, crv, x, y } = key;
    imported = crypto.subtle.importKey("jwk", { kty, crv, x, y }, { name: "ECDSA", namedCurve: "P-256" }, false, [
      "verify",
    ]);
    importedJwks.set(key, imported);
  }
  try {
    return await imported;
  } catch {
    importedJwks.delete(key);
    return null;
  }
}

export async function verifyAdAttributionKit(jws: string, trustedKeys: TrustedKeys): Promise<AdAttributionKitVerdict> {
  const segments = jws.split(".");
  if (segments.length !== 3) return { ok: false, reason: "not a compact JWS (header.payload.signature)" };
  const [headerSegment = "", payloadSegment = "", signatureSegment = ""] = segments;

  const header = decodeJson(headerSegment);
  if (!header) return { ok: false, reason: "the JWS header is not base64url JSON object" };
  if (header.alg !== "ES256") {
    return { ok: false, reason: `the JWS alg must be ES256, not ${JSON.stringify(header.alg ?? null)}` };
  }
  const refused = REFUSED_HEADER_PARAMETERS.find((name) => Object.hasOwn(header, name));
  if (refused) return { ok: false, reason: `the JWS header parameter ${refused} is not accepted` };
  const kid = header.kid;
  if (typeof kid !== "string" || kid === "") return { ok: false, reason: "the JWS header has no kid" };
  const trusted = Object.hasOwn(trustedKeys, kid) ? trustedKeys[kid] : undefined;
  if (!trusted) return { ok: false, reason: `the JWS kid ${JSON.stringify(kid)} is not a trusted key` };
  const key = await verifyingKey(trusted);
  if (!key) return { ok: false, reason: `the trusted key ${JSON.stringify(kid)} is not a P-256 verification key` };

  const signature = fromBase64Url(signatureSegment);
  if (signature?.length !== 64) {
    return { ok: false, reason: "the JWS signature is not 64 bytes of base64url (ES256 r || s)" };
  }
  let valid: boolean;
  try {
    valid = await crypto.subtle.verify(
      { name: "ECDSA", hash: "SHA-256" },
      key,
      signature,
      ascii.encode(`${headerSegment}.${payloadSegment}`),
    );
  } catch {
    valid = false;
  }
  if (!valid) return { ok: false, reason: `the JWS signature does not verify with the key ${JSON.stringify(kid)}` };

  const payload = decodeJson(payloadSegment);
  if (!payload) return { ok: false, reason: "the JWS payload is not base64url JSON object" };
  return { ok: true, kid, header, payload };
}
