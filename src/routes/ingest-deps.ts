/** The ingest pipeline's dependencies for one request: the cached network, the limiter, the objects. */
import type { Context } from "hono";
import { configOf } from "../config";
import type { IngestDeps } from "../ingest/ingest";
import { hmacKey } from "../lib/keys";
import { loadNetworkAuth, refreshNetworkAuth } from "../networks/network-cache";
import { noteCredentialUse } from "../networks/usage";
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
  return {
    nowMs,
    maxBodyBytes: config.MAX_BODY_BYTES,
    toleranceSeconds: config.SIGNATURE_TOLERANCE_SECONDS,
    loadNetwork: (id) => loadNetworkAuth(id, source),
    refreshNetwork: (id) => refreshNetworkAuth(id, source),
    withinRateLimit: async (id) => (await c.env.INGEST_RATE_LIMITER.limit({ key: id })).success,
    noteCredentialUse: (credentialId) =>
      noteCredentialUse(c.env.DB, credentialId, nowMs, (promise) => c.executionCtx.waitUntil(promise)),
    conversion: (name) => c.env.CONVERSIONS.getByName(name),
    identifierKey: () => hmacKey(config.ENCRYPTION_KEY, "identifier-hash v1"),
    ...(trace ? { trace } : {}),
  };
}
