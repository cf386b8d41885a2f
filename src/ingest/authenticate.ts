/**
 * Authenticating a postback with the network's configured methods: Standard Webhooks headers, a
 * static token (query parameter or header), or a signed query string; plus, when configured, an
 * IP allowlist on the address Cloudflare reports (`CF-Connecting-IP`, never `X-Forwarded-For`).
 * A request is checked with the method whose credentials it carries; every comparison is constant
 * time, and a failure says which check failed (and, for signatures, what should have been signed)
 * but never an expected value.
 */

import type { AuthMethod } from "../domain/network";
import { sha256Hex } from "../lib/bytes";
import { ipMatches, parseCidr } from "../lib/cidr";
import { headerPrefixOf, verify, webhookHeaders } from "../lib/standard-webhooks";
import { live, type NetworkAuth, tokenDigest } from "../networks/network-cache";
import { verifySignedQuery } from "./signed-query";

export type AuthResult =
  | { ok: true; method: AuthMethod; credentialId: string }
  | {
      ok: false;
      code: "unauthorized" | "ip_not_allowed";
      location: string;
      message: string;
      /** What the sender should have signed, when it was a signature that failed. */
      signedContent?: string;
      /** The credential was well-formed but matched none we hold: fresher credentials may match. */
      mismatch?: boolean;
    };

export interface AuthInput {
  request: Request;
  kind: "json" | "form" | "query";
  /** The raw body (empty for GET); a Standard Webhooks signature covers exactly these bytes. */
  body: Uint8Array;
  /** Query parameters, plus form fields for a form-encoded POST. */
  params: readonly [string, string][];
  nowMs: number;
  toleranceSeconds: number;
  /** What the request is for: a signed query counts only for the scope it signed (postback unless said). */
  scope?: SignedQueryScope;
}

export const TOKEN_PARAM = "token";
/**
 * A signed query's scope: a postback (the default, without the parameter) or a read of the
 * network's own inbound log (`pb_scope=requests`, signed). A signature covers its parameters, not
 * the path, so without a scope a captured postback URL would read the log, and a signed log read
 * with `transaction_id=…` would post that conversion.
 */
export const SCOPE_PARAM = "pb_scope";
export type SignedQueryScope = "postback" | "requests";

/** A signed query's digest of the body it vouches for: lowercase hex SHA-256 of the raw bytes. */
export const BODY_DIGEST_PARAM = "pb_body_sha256";
export const TOKEN_HEADER = "x-postback-token";

const cidrCache = new WeakMap<readonly string[], ReturnType<typeof parseCidr>[]>();

export async function authenticate(auth: NetworkAuth, input: AuthInput): Promise<AuthResult> {
  const allowlist = auth.network.auth.ip_allowlist;
  if (allowlist.length > 0) {
    const ip = input.request.headers.get("cf-connecting-ip");
    let cidrs = cidrCache.get(allowlist);
    if (!cidrs) {
      cidrs = allowlist.map(parseCidr);
      cidrCache.set(allowlist, cidrs);
    }
    const ranges = cidrs.filter((c) => c !== null);
    if (!ip || !ipMatches(ip, ranges)) {
      return {
        ok: false,
        code: "ip_not_allowed",
        location: "header.cf-connecting-ip",
        message: `the client address ${ip ?? "(unknown)"} is not in this network's IP allowlist`,
      };
    }
  }

  const methods = auth.network.auth.methods;
  const carried = carriedMethods(input);
  // A request with no credentials at all, to a network with one method, is checked by that method,
  // so the answer names exactly what is missing.
  const method =
    carried.find((m) => methods.includes(m)) ?? (carried.length === 0 && methods.length === 1 ? methods[0] : undefined);
  if (!method) {
    const accepted = methods.map(describeMethod).join("; or ");
    const sent =
      carried.length > 0 ? ` (this request carries ${carried.join(", ")}, which the network does not use)` : "";
    return {
      ok: false,
      code: "unauthorized",
      location: carried.length > 0 ? credentialLocation(carried[0] ?? "token") : "header.webhook-signature",
      message: `no credentials this network accepts${sent}; send ${accepted}`,
    };
  }
  switch (method) {
    case "standard_webhooks":
      return checkStandardWebhooks(auth, input);
    case "signed_query":
      return checkSignedQuery(auth, input);
    case "token":
      return checkToken(auth, input);
    default:
      return method satisfies never;
  }
}

/** Which kinds of credentials the request carries, in order of preference. */
export function carriedMethods(input: Pick<AuthInput, "request" | "params">): AuthMethod[] {
  const has = (name: string) => input.params.some(([key]) => key === name);
  const carried: AuthMethod[] = [];
  const headers = input.request.headers;
  if (headers.has("webhook-signature") || headers.has("svix-signature")) carried.push("standard_webhooks");
  if (has("pb_sig")) carried.push("signed_query");
  if (has(TOKEN_PARAM) || input.request.headers.has(TOKEN_HEADER)) carried.push("token");
  return carried;
}

function describeMethod(method: AuthMethod): string {
  switch (method) {
    case "standard_webhooks":
      return "Standard Webhooks headers (webhook-id, webhook-timestamp, webhook-signature, or their svix-* names)";
    case "signed_query":
      return "a signed query (pb_id, pb_ts, pb_sig)";
    case "token":
      return `the network's token (the ${TOKEN_PARAM} parameter or the ${TOKEN_HEADER} header)`;
    default:
      return method satisfies never;
  }
}

function credentialLocation(method: AuthMethod): string {
  switch (method) {
    case "standard_webhooks":
      return "header.webhook-signature";
    case "signed_query":
      return "query.pb_sig";
    case "token":
      return `query.${TOKEN_PARAM}`;
    default:
      return method satisfies never;
  }
}

async function checkStandardWebhooks(auth: NetworkAuth, input: AuthInput): Promise<AuthResult> {
  if (input.kind === "query") {
    // The signature covers the body, and a GET has none: its parameters would not be authenticated.
    return {
      ok: false,
      code: "unauthorized",
      location: "header.webhook-signature",
      message:
        "Standard Webhooks signs a body and a GET carries none; sign the parameters as a signed query (pb_id, pb_ts, pb_sig), or POST them",
    };
  }
  const keys = live(auth.keys, input.nowMs);
  const prefix = headerPrefixOf(input.request.headers);
  const headers = webhookHeaders(input.request.headers, prefix);
  const { id, timestamp } = headers;
  const result = await verify(
    headers,
    input.body,
    keys.map((k) => k.key),
    Math.floor(input.nowMs / 1000),
    input.toleranceSeconds,
    prefix,
  );
  if (result.ok) return { ok: true, method: "standard_webhooks", credentialId: keys[result.keyIndex]?.id ?? "" };
  return {
    ok: false,
    code: "unauthorized",
    location: result.location,
    message: result.message,
    mismatch: result.mismatch === true,
    ...(id && timestamp ? { signedContent: `${id}.${timestamp}.<the raw body bytes>` } : {}),
  };
}

async function checkSignedQuery(auth: NetworkAuth, input: AuthInput): Promise<AuthResult> {
  const keys = live(auth.keys, input.nowMs);
  const result = await verifySignedQuery(
    input.params,
    keys.map((k) => k.key),
    Math.floor(input.nowMs / 1000),
    input.toleranceSeconds,
  );
  if (result.ok) {
    const refused = checkScope(input) ?? (await checkBodyDigest(input));
    if (refused !== null) return refused;
    return { ok: true, method: "signed_query", credentialId: keys[result.keyIndex]?.id ?? "" };
  }
  return {
    ok: false,
    code: "unauthorized",
    location: result.location,
    message: result.message,
    // Well-formed and in time but signed by no key we hold: a fresher key (a rotation) may match.
    mismatch: result.location === "query.pb_sig" && result.signedContent !== null,
    ...(result.signedContent ? { signedContent: result.signedContent } : {}),
  };
}

/** A signed query counts only for the scope it signed: none for a postback, `requests` for the log. */
function checkScope(input: AuthInput): AuthResult | null {
  const given = input.params.filter(([name]) => name === SCOPE_PARAM).map(([, value]) => value);
  const scope = input.scope ?? "postback";
  const location = `query.${SCOPE_PARAM}`;
  if (scope === "postback" && given.length > 0) {
    return {
      ok: false,
      code: "unauthorized",
      location,
      message: `a signed query with ${SCOPE_PARAM} was signed for another route (${given.join(", ")}) and cannot post a conversion`,
    };
  }
  if (scope === "requests" && (given.length !== 1 || given[0] !== "requests")) {
    return {
      ok: false,
      code: "unauthorized",
      location,
      message: `reading the inbound log with a signed query needs ${SCOPE_PARAM}=requests among the signed parameters, so that a signed postback URL can never read it`,
    };
  }
  return null;
}

/**
 * A signed query covers its parameters (a form body's fields among them) and nothing else, so a
 * JSON body rides on it only with its SHA-256 among the signed parameters (`pb_body_sha256`);
 * without one, a captured signed URL could carry any body. Checked after the signature, so the
 * digest of an unsigned request tells a prober nothing.
 */
async function checkBodyDigest(input: AuthInput): Promise<AuthResult | null> {
  const given = input.params.filter(([name]) => name === BODY_DIGEST_PARAM).map(([, value]) => value);
  const location = `query.${BODY_DIGEST_PARAM}`;
  if (given.length === 0) {
    if (input.kind !== "json") return null;
    return {
      ok: false,
      code: "unauthorized",
      location,
      message: `a signed query does not cover a JSON body: add ${BODY_DIGEST_PARAM}=<lowercase hex SHA-256 of the body bytes> to the parameters you sign, or sign the request with Standard Webhooks headers`,
    };
  }
  if (given.length > 1) {
    return {
      ok: false,
      code: "unauthorized",
      location,
      message: `${BODY_DIGEST_PARAM} appears ${given.length} times; send it once`,
    };
  }
  // A digest of bytes the sender sent, under its own signature: no secret for timing to reveal.
  const digest = await sha256Hex(input.body);
  if (digest !== given[0]?.toLowerCase()) {
    return {
      ok: false,
      code: "unauthorized",
      location,
      message: `${BODY_DIGEST_PARAM} is not the SHA-256 of the body received (${input.body.length} bytes); hash the exact bytes you send`,
    };
  }
  return null;
}

async function checkToken(auth: NetworkAuth, input: AuthInput): Promise<AuthResult> {
  const given = input.request.headers.get(TOKEN_HEADER) ?? input.params.find(([key]) => key === TOKEN_PARAM)?.[1];
  if (!given) {
    return {
      ok: false,
      code: "unauthorized",
      location: `query.${TOKEN_PARAM}`,
      message: `the token is missing: send it as the ${TOKEN_PARAM} parameter or the ${TOKEN_HEADER} header`,
    };
  }
  const digest = await tokenDigest(given);
  for (const token of live(auth.tokens, input.nowMs)) {
    if (crypto.subtle.timingSafeEqual(digest, token.digest))
      return { ok: true, method: "token", credentialId: token.id };
  }
  return {
    ok: false,
    code: "unauthorized",
    location: input.request.headers.has(TOKEN_HEADER) ? `header.${TOKEN_HEADER}` : `query.${TOKEN_PARAM}`,
    message: "the token does not match an active token of this network",
    mismatch: true,
  };
}
