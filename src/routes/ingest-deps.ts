/** The ingest pipeline's dependencies for one request: the cached network, the limiter, the objects. */
import type { Context } from "hono";
import { attributeBatch } from "../attribution/event-attribution";
import { configOf } from "../config";
import { cachingRecorder, isolateAnswers } from "../ingest/answer-cache";
import type { AppleIngestDeps } from "../ingest/apple";
import type { ExplainDeps } from "../ingest/explain";
import type { IngestDeps } from "../ingest/ingest";
import { hmacKey } from "../lib/keys";
import { loadNetworkAuth, networkOfAdNetwork, refreshNetworkAuth } from "../networks/network-cache";
import { noteCredentialUse } from "../networks/usage";
import { allPartners } from "../storage/partners";
import type { AppEnv } from "./common";

export function ingestDeps(c: Context<AppEnv>): IngestDeps {
  const config = configOf(c.env);
  const nowMs = Date.now();
  const trace = c.get("inbound");
  const source = {
    db: c.env.DB,
    encryptionKey: config.ENCRYPTION_KEY,
    ttlSeconds: config.NETWORK_CACHE_TTL_SECONDS,
    nowMs,
  };
  const answerCache = { cache: isolateAnswers, ttlMs: config.DUPLICATE_CACHE_SECONDS * 1000, nowMs };
  return {
    nowMs,
    maxBodyBytes: config.MAX_BODY_BYTES,
    toleranceSeconds: config.SIGNATURE_TOLERANCE_SECONDS,
    loadNetwork: (id) => loadNetworkAuth(id, source),
    refreshNetwork: (id) => refreshNetworkAuth(id, source),
    withinRateLimit: async (id) => (await c.env.INGEST_RATE_LIMITER.limit({ key: id })).success,
    noteCredentialUse: (credentialId) =>
      noteCredentialUse(c.env.DB, credentialId, nowMs, (promise) => c.executionCtx.waitUntil(promise)),
    conversion: (name) => cachingRecorder(name, () => c.env.CONVERSIONS.getByName(name), answerCache),
    identifierKey: () => hmacKey(config.ENCRYPTION_KEY, "identifier-hash v1"),
    ...(trace ? { trace } : {}),
  };
}

/** Ingest's dependencies for Apple's postbacks: the same, and the ad network ids and Apple's keys. */
export function appleIngestDeps(c: Context<AppEnv>): AppleIngestDeps {
  const config = configOf(c.env);
  const deps = ingestDeps(c);
  const source = {
    db: c.env.DB,
    encryptionKey: config.ENCRYPTION_KEY,
    ttlSeconds: config.NETWORK_CACHE_TTL_SECONDS,
    nowMs: deps.nowMs,
  };
  return {
    ...deps,
    networkOfAdNetwork: (adNetworkId) => networkOfAdNetwork(adNetworkId, source),
    appleKeys: config.APPLE_POSTBACK_KEYS,
  };
}

/** Explain's dependencies: ingest's, and the partners, attribution and the object's peek, read-only. */
export function explainDeps(c: Context<AppEnv>, caller: "operator" | "network" | null): ExplainDeps {
  const config = configOf(c.env);
  return {
    ...ingestDeps(c),
    isAdmin: caller === "operator",
    keyHolder: caller !== null,
    allowInsecurePartnerUrls: config.ALLOW_INSECURE_PARTNER_URLS,
    partners: () => allPartners(c.env.DB),
    attribute: async (event, partners) => {
      const key = await hmacKey(config.ENCRYPTION_KEY, "click-id v1");
      return (await attributeBatch(c.env.DB, key, [event], partners)).get(event.event_id) ?? null;
    },
    peek: (name, input) => c.env.CONVERSIONS.getByName(name).peek(input),
  };
}
