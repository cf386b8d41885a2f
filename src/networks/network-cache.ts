/**
 * What the ingest path knows of a network: its status and its imported signing keys, cached in
 * the isolate for NETWORK_CACHE_TTL_SECONDS so that a steady-state postback never waits on D1.
 * A miss reads D1 through a Sessions API session, which may be served by a nearby replica.
 * Unknown networks are cached too (lib/isolate-cache.ts).
 */

import type { Network } from "../domain/network";
import { utf8 } from "../lib/bytes";
import { decryptSecret } from "../lib/credentials";
import { IsolateCache } from "../lib/isolate-cache";
import { importSigningKey } from "../lib/standard-webhooks";
import { activeSecrets, getNetwork, networkIdOfAdNetwork } from "../storage/networks";

export interface SigningKey {
  id: string;
  key: CryptoKey;
  /** Epoch ms after which the key stops verifying, or null while it is current. */
  expiresAtMs: number | null;
}

/** A static token, kept only as its SHA-256 digest so it is compared in constant time. */
export interface TokenDigest {
  id: string;
  digest: ArrayBuffer;
  expiresAtMs: number | null;
}

export interface NetworkAuth {
  network: Network;
  keys: SigningKey[];
  tokens: TokenDigest[];
}

const cache = new IsolateCache<NetworkAuth | null>();
/** Apple's ad network ids → the network that receives their postbacks (null: none), for the well-known paths. */
const adNetworks = new IsolateCache<string | null>();

export interface NetworkSource {
  db: D1Database;
  encryptionKey: string;
  ttlSeconds: number;
  nowMs: number;
}

/** A signature failure may mean the network just rotated its secret: re-read at most this often. */
const REFRESH_AFTER_FAILURE_MS = 5_000;

export async function loadNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  return cache.get(id, source.nowMs, source.ttlSeconds * 1000, () => readNetworkAuth(id, source));
}

/**
 * After a signature failed against cached keys: re-reads the network unless the cached copy is
 * fresher than REFRESH_AFTER_FAILURE_MS, so a rotation is seen at once by every isolate while bad
 * signatures cannot make D1 reads more often than that.
 */
export async function refreshNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  const loadedAtMs = cache.loadedAtMs(id);
  if (loadedAtMs !== null && source.nowMs - loadedAtMs < REFRESH_AFTER_FAILURE_MS) return null;
  return cache.reload(id, source.nowMs, () => readNetworkAuth(id, source));
}

/** The network that receives Apple's postbacks for `adNetworkId`, cached as networks are. */
export async function networkOfAdNetwork(adNetworkId: string, source: NetworkSource): Promise<string | null> {
  return adNetworks.get(adNetworkId, source.nowMs, source.ttlSeconds * 1000, () =>
    networkIdOfAdNetwork(source.db.withSession("first-unconstrained"), adNetworkId),
  );
}

/**
 * Called after an admin write, so this isolate sees it at once; others within the TTL. The ad
 * network ids are those the write gave or took away.
 */
export function invalidateNetwork(id: string, adNetworkIds: readonly string[] = []): void {
  cache.invalidate(id);
  for (const adNetworkId of adNetworkIds) adNetworks.invalidate(adNetworkId);
}

/** The credentials that verify at `nowMs`. */
export function live<T extends { expiresAtMs: number | null }>(credentials: readonly T[], nowMs: number): T[] {
  return credentials.filter((c) => c.expiresAtMs === null || c.expiresAtMs > nowMs);
}

export function tokenDigest(token: string): Promise<ArrayBuffer> {
  return crypto.subtle.digest("SHA-256", utf8(token));
}

async function readNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  const session = source.db.withSession("first-unconstrained");
  const network = await getNetwork(session, id);
  if (!network) return null;
  const secrets = await activeSecrets(session, id, new Date(source.nowMs).toISOString());
  const opened = await Promise.all(
    secrets.map(async (secret) => ({
      secret,
      plaintext: await decryptSecret(source.encryptionKey, secret.id, secret.ciphertext),
      expiresAtMs: secret.expires_at ? Date.parse(secret.expires_at) : null,
    })),
  );
  const keys = await Promise.all(
    opened
      .filter((o) => o.secret.kind === "signing")
      .map(async (o) => ({ id: o.secret.id, key: await importSigningKey(o.plaintext), expiresAtMs: o.expiresAtMs })),
  );
  const tokens = await Promise.all(
    opened
      .filter((o) => o.secret.kind === "token")
      .map(async (o) => ({ id: o.secret.id, digest: await tokenDigest(o.plaintext), expiresAtMs: o.expiresAtMs })),
  );
  return { network, keys, tokens };
}
