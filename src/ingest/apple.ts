/**
 * Apple's postbacks into the hub's model (docs/apple-postbacks.md). A body is an SKAdNetwork
 * install-validation postback, or an AdAttributionKit stanza (it has `jws-string`). Apple's
 * signature is its only credential: it is verified first, and everything that says whose
 * conversion it is (the transaction, the ad network, the source, did-win, the window) is read from
 * what Apple signed. The conversion values, which no version signs, are kept under `unsigned.*`.
 * Then the postback is one conversion, recorded by its Durable Object like any other: the hot path
 * keeps its one object call (the receiver's settings come with the cached network).
 */

import {
  type AdAttributionKitPayload,
  AdAttributionKitPayloadSchema,
  type AdAttributionKitStanza,
  AdAttributionKitStanzaSchema,
  APPLE_ADATTRIBUTIONKIT_KEYS,
} from "../domain/adattributionkit";
import { type AppleReceiver, lowercaseAdNetworkId, sourceOf } from "../domain/apple-receiver";
import type { IngestAnswer } from "../domain/conversion";
import { type Postback, PostbackSchema } from "../domain/postback";
import { APPLE_SKADNETWORK_KEYS, type SkadnetworkPostback, SkadnetworkPostbackSchema } from "../domain/skadnetwork";
import { type FieldError, ProblemError, validationFailed, zodFieldErrors } from "../errors";
import { verifyAdAttributionKit } from "./adattributionkit";
import { parseJson, readRawBody } from "./body";
import { type IngestDeps, recordPostback, resolveNetwork, spendRateLimit } from "./ingest";
import { p256Key, verifySkadnetwork } from "./skadnetwork";

export type AppleKind = "skadnetwork" | "adattributionkit";

/** Keys an operator added (APPLE_POSTBACK_KEYS); Apple's published ones are always trusted. */
export interface ApplePostbackKeys {
  skadnetwork: readonly string[];
  adattributionkit: Readonly<Record<string, JsonWebKey>>;
}

export type ParsedApple =
  | { kind: "skadnetwork"; postback: SkadnetworkPostback }
  | { kind: "adattributionkit"; stanza: AdAttributionKitStanza };

/** What Apple signed, once verified: the postback's identity comes from here only. */
export type VerifiedApple =
  | {
      kind: "skadnetwork";
      postback: SkadnetworkPostback;
      signed: string;
      /** Which key verified it: Apple's, or the n-th of APPLE_POSTBACK_KEYS.skadnetwork (from 1). */
      key: "apple" | number;
      test: false;
    }
  | {
      kind: "adattributionkit";
      payload: AdAttributionKitPayload;
      stanza: AdAttributionKitStanza;
      kid: string;
      /** Signed by one of Apple's development keys: a test postback. */
      test: boolean;
    };

export type AppleVerification =
  | { ok: true; verified: VerifiedApple }
  | {
      ok: false;
      reason: string;
      /** SKAdNetwork: the string the signature should cover (null when it cannot be built). */
      signed: string | null;
    };

/** The body's shape, before any signature is checked: 422 with every bad field named. */
export function parseApple(body: unknown): { ok: true; parsed: ParsedApple } | { ok: false; errors: FieldError[] } {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    return { ok: false, errors: [{ location: "body", message: "must be a JSON object" }] };
  }
  if (Object.hasOwn(body, "jws-string")) {
    const stanza = AdAttributionKitStanzaSchema.safeParse(body);
    return stanza.success
      ? { ok: true, parsed: { kind: "adattributionkit", stanza: stanza.data } }
      : { ok: false, errors: zodFieldErrors("body", stanza.error) };
  }
  const postback = SkadnetworkPostbackSchema.safeParse(body);
  return postback.success
    ? { ok: true, parsed: { kind: "skadnetwork", postback: postback.data } }
    : { ok: false, errors: zodFieldErrors("body", postback.error) };
}

/** Apple's AdAttributionKit keys by kid, imported once per isolate. */
const appleJwsKeys = new Map<string, Promise<CryptoKey | null>>();

/**
 * The keys trusted by kid: Apple's (imported from SPKI) and the operator's added JWKs, which the
 * JWS verifier imports itself. Apple's kids keep Apple's keys: an added key cannot stand in for one.
 */
async function trustedJwsKeys(
  extra: ApplePostbackKeys["adattributionkit"],
): Promise<Record<string, CryptoKey | JsonWebKey>> {
  const apple = await Promise.all(
    Object.entries(APPLE_ADATTRIBUTIONKIT_KEYS).map(async ([kid, { spki }]) => {
      let key = appleJwsKeys.get(kid);
      if (!key) {
        key = (p256Key(spki) ?? Promise.resolve(null)).catch(() => null);
        appleJwsKeys.set(kid, key);
      }
      return [kid, await key] as const;
    }),
  );
  // Own properties only (fromEntries): a kid such as "__proto__" is a name, never a prototype.
  return Object.fromEntries([
    ...Object.entries(extra).filter(([kid]) => !Object.hasOwn(APPLE_ADATTRIBUTIONKIT_KEYS, kid)),
    ...apple.flatMap(([kid, key]) => (key ? [[kid, key] as const] : [])),
  ]);
}

/** Signed by one of Apple's development keys: recorded as a test. */
function isDevelopmentKid(kid: string): boolean {
  return (
    Object.hasOwn(APPLE_ADATTRIBUTIONKIT_KEYS, kid) &&
    APPLE_ADATTRIBUTIONKIT_KEYS[kid as keyof typeof APPLE_ADATTRIBUTIONKIT_KEYS].test
  );
}

/** Apple's signature over the postback, against Apple's keys and the operator's added ones. */
export async function verifyApple(parsed: ParsedApple, extra: ApplePostbackKeys): Promise<AppleVerification> {
  if (parsed.kind === "skadnetwork") {
    const verdict = await verifySkadnetwork(parsed.postback, {
      p256: [APPLE_SKADNETWORK_KEYS.p256, ...extra.skadnetwork],
    });
    if (!verdict.ok) return { ok: false, reason: verdict.reason, signed: verdict.signed };
    const key = verdict.key === 0 ? "apple" : verdict.key;
    return {
      ok: true,
      verified: { kind: "skadnetwork", postback: parsed.postback, signed: verdict.signed, key, test: false },
    };
  }
  const trusted = await trustedJwsKeys(extra.adattributionkit);
  const verdict = await verifyAdAttributionKit(parsed.stanza["jws-string"], trusted);
  if (!verdict.ok) return { ok: false, reason: verdict.reason, signed: null };
  const payload = AdAttributionKitPayloadSchema.safeParse(verdict.payload);
  if (!payload.success) {
    const errors = zodFieldErrors("body.jws-string.payload", payload.error);
    return {
      ok: false,
      reason: `the signed payload is not an AdAttributionKit postback: ${errors.map((e) => `${e.location} ${e.message}`).join("; ")}`,
      signed: null,
    };
  }
  return {
    ok: true,
    verified: {
      kind: "adattributionkit",
      payload: payload.data,
      stanza: parsed.stanza,
      kid: verdict.kid,
      test: isDevelopmentKid(verdict.kid),
    },
  };
}

/** The ad network the postback was signed for, lowercased as receivers are configured. */
export function adNetworkIdOf(verified: VerifiedApple): string {
  return lowercaseAdNetworkId(
    verified.kind === "skadnetwork" ? verified.postback["ad-network-id"] : verified.payload["ad-network-identifier"],
  );
}

/** Where a postback sits among Apple's conversion windows (0, 1, 2), when its version has them. */
function sequenceIndexOf(verified: VerifiedApple): number | null {
  if (verified.kind === "adattributionkit") return verified.payload["postback-sequence-index"];
  return verified.postback.version === "4.0" ? verified.postback["postback-sequence-index"] : null;
}

/** Versions before 3.0 have no did-win: only the winner got a postback. */
export function didWin(verified: VerifiedApple): boolean {
  if (verified.kind === "adattributionkit") return verified.payload["did-win"];
  const postback = verified.postback;
  return "did-win" in postback ? postback["did-win"] : true;
}

/** The source identifier (4.0, AdAttributionKit) or the campaign id (before 4.0), as a decimal string. */
export function sourceKeyOf(verified: VerifiedApple): string | null {
  if (verified.kind === "adattributionkit") return verified.payload["source-identifier"];
  const postback = verified.postback;
  if ("source-identifier" in postback) return postback["source-identifier"];
  return "campaign-id" in postback ? String(postback["campaign-id"]) : null;
}

/**
 * The hub's postback for a verified Apple postback: the transaction (with its window, where there
 * are several), an install or a re-engagement, the mapped source's campaign and (only when the ad
 * network won) its partner, and Apple's fields as meta.
 */
export function applePostback(verified: VerifiedApple, receiver: AppleReceiver): Postback {
  const index = sequenceIndexOf(verified);
  const id =
    verified.kind === "skadnetwork" ? verified.postback["transaction-id"] : verified.payload["postback-identifier"];
  const won = didWin(verified);
  const sourceKey = sourceKeyOf(verified);
  const mapped = sourceOf(receiver, sourceKey);
  const meta: Record<string, string | number | boolean> = {
    apple_framework: verified.kind,
    ad_network_id: adNetworkIdOf(verified),
    did_win: won,
  };
  if (index !== null) meta.postback_sequence_index = index;
  if (sourceKey !== null) meta.source_identifier = sourceKey;
  let eventType = "install";
  if (verified.kind === "skadnetwork") {
    const p = verified.postback;
    meta.skadnetwork_version = p.version;
    meta.app_id = p["app-id"];
    meta.transaction_id = p["transaction-id"];
    if ("redownload" in p) meta.redownload = p.redownload;
    if ("fidelity-type" in p) meta.fidelity_type = p["fidelity-type"];
    if ("source-app-id" in p && p["source-app-id"] !== undefined) meta.source_app_id = p["source-app-id"];
    if ("source-domain" in p && p["source-domain"] !== undefined) meta.source_domain = p["source-domain"];
    if ("conversion-value" in p && p["conversion-value"] !== undefined)
      meta.unsigned_conversion_value = p["conversion-value"];
    if ("coarse-conversion-value" in p && p["coarse-conversion-value"] !== undefined) {
      meta.unsigned_coarse_conversion_value = p["coarse-conversion-value"];
    }
  } else {
    const p = verified.payload;
    const s = verified.stanza;
    meta.postback_identifier = p["postback-identifier"];
    meta.app_id = p["advertised-item-identifier"];
    meta.conversion_type = p["conversion-type"];
    meta.redownload = p["conversion-type"] === "redownload";
    if (p["publisher-item-identifier"] !== undefined) meta.source_app_id = p["publisher-item-identifier"];
    if (p["marketplace-identifier"] !== undefined) meta.marketplace_identifier = p["marketplace-identifier"];
    if (p["impression-type"] !== undefined) meta.impression_type = p["impression-type"];
    meta.jws_kid = verified.kid;
    if (s["conversion-value"] !== undefined) meta.unsigned_conversion_value = s["conversion-value"];
    if (s["coarse-conversion-value"] !== undefined)
      meta.unsigned_coarse_conversion_value = s["coarse-conversion-value"];
    if (s["ad-interaction-type"] !== undefined) meta.unsigned_ad_interaction_type = s["ad-interaction-type"];
    if (s["country-code"] !== undefined) meta.unsigned_country_code = s["country-code"];
    if (p["conversion-type"] === "re-engagement") eventType = "re-engagement";
  }
  const candidate = {
    transaction_id: index === null ? id : `${id}:${index}`,
    status: "approved",
    event_type: eventType,
    platform: "ios",
    ...(mapped ? { campaign_id: mapped.source.campaign_id } : {}),
    // Only the winner is credited: a losing postback is recorded and reported, and earns nobody.
    ...(mapped?.source.partner_id && won ? { partner_id: mapped.source.partner_id } : {}),
    meta,
  };
  const parsed = PostbackSchema.safeParse(candidate);
  if (!parsed.success) throw validationFailed(appleFieldErrors(verified.kind, zodFieldErrors("body", parsed.error)));
  return parsed.data;
}

/** Where each of the hub's fields comes from in Apple's postback, for a refusal to name what Apple sent. */
const APPLE_FIELDS: Record<AppleKind, Readonly<Record<string, string>>> = {
  skadnetwork: {
    "body.transaction_id": "body.transaction-id",
    "body.meta.transaction_id": "body.transaction-id",
    "body.meta.ad_network_id": "body.ad-network-id",
    "body.meta.source_domain": "body.source-domain",
  },
  adattributionkit: {
    "body.transaction_id": "body.jws-string.postback-identifier",
    "body.meta.postback_identifier": "body.jws-string.postback-identifier",
    "body.meta.ad_network_id": "body.jws-string.ad-network-identifier",
    "body.meta.marketplace_identifier": "body.jws-string.marketplace-identifier",
    "body.meta.impression_type": "body.jws-string.impression-type",
    "body.meta.unsigned_ad_interaction_type": "body.ad-interaction-type",
  },
};

/** The hub's postback schema's errors, located at Apple's fields (one per field and message). */
function appleFieldErrors(kind: AppleKind, errors: FieldError[]): FieldError[] {
  const seen = new Set<string>();
  return errors.flatMap((error) => {
    const location = APPLE_FIELDS[kind][error.location] ?? error.location;
    const key = `${location}\n${error.message}`;
    if (seen.has(key)) return [];
    seen.add(key);
    return [{ location, message: error.message }];
  });
}

export function appleRefusal(verification: Extract<AppleVerification, { ok: false }>, kind: AppleKind): ProblemError {
  const location = kind === "skadnetwork" ? "body.attribution-signature" : "body.jws-string";
  return new ProblemError("unauthorized", `Apple's signature does not hold: ${verification.reason}.`, [
    { location, message: verification.reason },
  ]);
}

// --- the entry point ---------------------------------------------------------------------------

export interface AppleIngestDeps extends IngestDeps {
  /** The network that receives Apple's postbacks for an ad network id (cached like networks), or null. */
  networkOfAdNetwork(adNetworkId: string): Promise<string | null>;
  appleKeys: ApplePostbackKeys;
}

export interface AppleIngested {
  answer: IngestAnswer;
  networkId: string;
  verified: VerifiedApple;
}

/** What an Apple postback's credential is, for the inbound log: the framework and the key. */
function credentialOf(verified: VerifiedApple): string {
  if (verified.kind === "adattributionkit") return `apple:${verified.kid}`;
  return verified.key === "apple" ? "apple:skadnetwork-p256" : `apple:skadnetwork-added-${verified.key}`;
}

/**
 * Verified, routed and recorded: to the network of the path, or (Apple's well-known paths,
 * `networkId` null) to the network that receives the signed ad network id. Either way the network
 * must be a receiver of that id: Apple's signature says whose postback it is, and a network cannot
 * take in another ad network's.
 */
export async function ingestApple(
  request: Request,
  deps: AppleIngestDeps,
  networkId: string | null,
): Promise<AppleIngested> {
  const pathNetwork = networkId === null ? null : await resolveNetwork(networkId, deps);
  const body = await readRawBody(request, deps.maxBodyBytes);
  if (deps.trace) deps.trace.body = body;
  const parsed = parseApple(parseJson(body));
  if (!parsed.ok) throw validationFailed(parsed.errors);
  const verification = await verifyApple(parsed.parsed, deps.appleKeys);
  if (!verification.ok) throw appleRefusal(verification, parsed.parsed.kind);
  const { verified } = verification;
  const adNetworkId = adNetworkIdOf(verified);
  const adNetworkField =
    verified.kind === "skadnetwork" ? "body.ad-network-id" : "body.jws-string.ad-network-identifier";
  let auth = pathNetwork;
  if (!auth) {
    const id = await deps.networkOfAdNetwork(adNetworkId);
    if (!id) {
      throw new ProblemError(
        "network_not_found",
        `No network of this hub receives Apple's postbacks for "${adNetworkId}".`,
        [{ location: adNetworkField, message: "is no network's ad network id" }],
      );
    }
    if (deps.trace) deps.trace.networkId = id;
    auth = await resolveNetwork(id, deps);
  }
  const receiver = auth.network.apple;
  if (!receiver?.ad_network_ids.includes(adNetworkId)) {
    throw new ProblemError(
      "forbidden",
      `Network "${auth.network.id}" does not receive Apple's postbacks for "${adNetworkId}" (its apple.ad_network_ids).`,
      [{ location: adNetworkField, message: `is not an ad network id of ${auth.network.id}` }],
    );
  }
  // Apple's signature authenticates the postback for this network only once it is this network's
  // ad network id: another ad network's postback is a stranger's request here (no body kept, and
  // not spending the network's own share of its log).
  if (deps.trace) Object.assign(deps.trace, { authMethod: "apple", credentialId: credentialOf(verified) });
  await spendRateLimit(auth.network.id, 1, deps);
  const postback = applePostback(verified, receiver);
  const test = auth.network.test_mode || verified.test;
  if (deps.trace) Object.assign(deps.trace, { transactionId: postback.transaction_id, test });
  const answer = await recordPostback(auth.network.id, postback, test, deps);
  if (deps.trace) deps.trace.verdict = answer.status;
  return { answer, networkId: auth.network.id, verified };
}
