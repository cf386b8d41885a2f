/**
 * Signed query strings, for affiliate networks that fire a GET (or a form-encoded POST) with macros
 * in its parameters and so cannot sign a JSON body. In the spirit of Standard Webhooks, with the
 * same `whsec_` keys: the sender adds `pb_id`, `pb_ts` and
 * `pb_sig = v1,<base64(HMAC-SHA256(key, "<pb_id>.<pb_ts>.<canonical query>"))>`.
 * The canonical query (every parameter but `pb_sig`, percent-encoded with only RFC 3986 unreserved
 * characters literal, then sorted) makes the signature independent of parameter order and of how
 * a tracker chose to encode its URL (`+` or `%20`, hex case). The spec for senders, with vectors,
 * is docs/signed-query.md. Pure: no bindings, no clock of its own.
 */
import { toBase64, utf8 } from "../lib/bytes";
import { DEFAULT_TOLERANCE_SECONDS, parseSignatures } from "../lib/standard-webhooks";

export const SIGNED_QUERY_PARAMS = ["pb_id", "pb_ts", "pb_sig"] as const;
export type SignedQueryParam = (typeof SIGNED_QUERY_PARAMS)[number];

const MAX_ID_CHARACTERS = 128;

/** Decoded name/value pairs of a request, in any order; a name may repeat. */
export type QueryPairs = readonly (readonly [string, string])[];

export type SignedQueryResult =
  | { ok: true; keyIndex: number; canonical: string }
  /** `signedContent` is what the sender should have signed (null without pb_id and pb_ts); never a signature. */
  | { ok: false; location: string; message: string; signedContent: string | null };

/** UTF-8 percent-encoding where only `A–Z a–z 0–9 - . _ ~` stay literal, with uppercase hex. */
export function percentEncode(text: string): string {
  // encodeURIComponent also leaves ! ' ( ) * literal, and throws on a lone surrogate, which no
  // UTF-8 encoder can write: it becomes U+FFFD, as TextEncoder would make it.
  return encodeURIComponent(text.toWellFormed()).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

/** Every pair but `pb_sig`, encoded, sorted by encoded name then encoded value, joined by `&`. */
export function canonicalQuery(pairs: QueryPairs): string {
  return pairs
    .filter(([name]) => name !== "pb_sig")
    .map(([name, value]) => [percentEncode(name), percentEncode(value)] as const)
    .sort(([nameA, valueA], [nameB, valueB]) => compare(nameA, nameB) || compare(valueA, valueB))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

/**
 * `<pb_id>.<pb_ts>.<canonical query>`. The pairs may or may not already hold pb_id and pb_ts:
 * any pb_* pair among them is replaced by the given id and timestamp, so the same call serves a
 * sender building a URL and a verifier reading one.
 */
export function signedQueryContent(id: string, timestamp: string, pairs: QueryPairs): string {
  const others = pairs.filter(([name]) => !isSignedQueryParam(name));
  const canonical = canonicalQuery([...others, ["pb_id", id], ["pb_ts", timestamp]]);
  return `${id}.${timestamp}.${canonical}`;
}

/** The `v1,<base64>` value of `pb_sig` for one key. */
export async function signQuery(key: CryptoKey, id: string, timestamp: string, pairs: QueryPairs): Promise<string> {
  const mac = await crypto.subtle.sign("HMAC", key, utf8(signedQueryContent(id, timestamp, pairs)));
  return `v1,${toBase64(new Uint8Array(mac))}`;
}

/**
 * Verifies a request's pairs (pb_* included) against every active key of the sender. Each failure
 * names the parameter at fault and, once pb_id and pb_ts are known, carries the exact content the
 * sender should have signed, so that an explain endpoint can show it; never the expected signature.
 */
export async function verifySignedQuery(
  pairs: QueryPairs,
  keys: readonly CryptoKey[],
  nowSeconds: number,
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
): Promise<SignedQueryResult> {
  const id = singleValue(pairs, "pb_id");
  if ("problem" in id) return failure("pb_id", id.problem, null);
  const timestamp = singleValue(pairs, "pb_ts");
  if ("problem" in timestamp) return failure("pb_ts", timestamp.problem, null);

  const content = signedQueryContent(id.value, timestamp.value, pairs);
  const fail = (param: SignedQueryParam, message: string) => failure(param, message, content);

  const signature = singleValue(pairs, "pb_sig");
  if ("problem" in signature) return fail("pb_sig", signature.problem);
  if ([...id.value].length > MAX_ID_CHARACTERS) {
    return fail("pb_id", `pb_id must be at most ${MAX_ID_CHARACTERS} characters`);
  }
  if (!/^\d{1,12}$/.test(timestamp.value)) return fail("pb_ts", "pb_ts must be integer Unix seconds");
  const skew = nowSeconds - Number(timestamp.value);
  if (skew > toleranceSeconds) {
    return fail(
      "pb_ts",
      `pb_ts is ${skew} s old; the tolerance is ${toleranceSeconds} s (check the sender's clock, and sign each attempt afresh)`,
    );
  }
  if (-skew > toleranceSeconds) {
    return fail(
      "pb_ts",
      `pb_ts is ${-skew} s in the future; the tolerance is ${toleranceSeconds} s (check the sender's clock)`,
    );
  }
  const candidates = parseSignatures(signature.value);
  if (candidates.length === 0) {
    return fail(
      "pb_sig",
      "pb_sig holds no v1 signature (expected space-separated entries like v1,<base64 HMAC-SHA256>; percent-encode the value in the URL: + is %2B, / is %2F, = is %3D, and a bare + means a space)",
    );
  }
  const message = utf8(content);
  for (const [keyIndex, key] of keys.entries()) {
    const expected = await crypto.subtle.sign("HMAC", key, message);
    for (const candidate of candidates) {
      if (crypto.subtle.timingSafeEqual(expected, candidate)) {
        return { ok: true, keyIndex, canonical: canonicalQuery(pairs) };
      }
    }
  }
  return fail(
    "pb_sig",
    `no v1 signature matches an active secret of this network; sign "<pb_id>.<pb_ts>.<canonical query of every parameter but pb_sig>" with HMAC-SHA256 keyed by the base64-decoded part of the whsec_ secret`,
  );
}

function isSignedQueryParam(name: string): name is SignedQueryParam {
  return (SIGNED_QUERY_PARAMS as readonly string[]).includes(name);
}

/** A pb_* parameter must appear exactly once: two values would leave open which one was meant. */
function singleValue(pairs: QueryPairs, name: SignedQueryParam): { value: string } | { problem: string } {
  const values = pairs.filter(([n]) => n === name).map(([, value]) => value);
  if (values.length > 1) return { problem: `the ${name} parameter appears ${values.length} times; send it once` };
  const [value] = values;
  if (!value) return { problem: `the ${name} parameter is missing or empty` };
  return { value };
}

function failure(param: SignedQueryParam, message: string, signedContent: string | null): SignedQueryResult {
  return { ok: false, location: `query.${param}`, message, signedContent };
}

function compare(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}
