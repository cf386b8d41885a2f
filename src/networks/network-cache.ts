/**
 * What the ingest path knows of a network: its status and its imported signing keys, cached in
 * the isolate for NETWORK_CACHE_TTL_SECONDS so that a steady-state postback never waits on D1.
 * A miss reads D1 through a Sessions API session, which may be served by a nearby replica.
 * Unknown networks are cached too, so a flood of posts to a wrong id costs no D1 reads.
 */
import { importSigningKey } from "../ingest/standard-webhooks";
import { activeSecrets, getNetwork, type NetworkRow } from "../storage/d1";
import { decryptSecret } from "./secrets";

export interface SigningKey {
  id: string;
  key: CryptoKey;
  /** Epoch ms after which the key stops verifying, or null while it is current. */
  expiresAtMs: number | null;
}

export interface NetworkAuth {
  network: NetworkRow;
  keys: SigningKey[];
}

interface Entry {
  value: NetworkAuth | null;
  loadedAtMs: number;
}

/** Bounds the memory that posts to made-up network ids can take. */
const MAX_ENTRIES = 10_000;
const cache = new Map<string, Entry>();
const loading = new Map<string, Promise<NetworkAuth | null>>();

export interface NetworkSource {
  db: D1Database;
  encryptionKey: string;
  ttlSeconds: number;
  nowMs: number;
}

/** A signature failure may mean the network just rotated its secret: re-read at most this often. */
const REFRESH_AFTER_FAILURE_MS = 5_000;

export async function loadNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  const hit = cache.get(id);
  if (hit && source.nowMs - hit.loadedAtMs < source.ttlSeconds * 1000) return hit.value;
  return reload(id, source);
}

/**
 * After a signature failed against cached keys: re-reads the network unless the cached copy is
 * fresher than REFRESH_AFTER_FAILURE_MS, so a rotation is seen at once by every isolate while bad
 * signatures cannot make D1 reads more often than that.
 */
export async function refreshNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  const hit = cache.get(id);
  if (hit && source.nowMs - hit.loadedAtMs < REFRESH_AFTER_FAILURE_MS) return null;
  return reload(id, source);
}

async function reload(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  let pending = loading.get(id);
  if (!pending) {
    pending = readNetworkAuth(id, source).finally(() => loading.delete(id));
    loading.set(id, pending);
  }
  const value = await pending;
  cache.delete(id);
  cache.set(id, { value, loadedAtMs: source.nowMs });
  if (cache.size > MAX_ENTRIES) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  return value;
}

/** Called after an admin write, so this isolate sees it at once; others within the TTL. */
export function invalidateNetwork(id: string): void {
  cache.delete(id);
}

/** The keys that verify at `nowMs`. */
export function liveKeys(auth: NetworkAuth, nowMs: number): SigningKey[] {
  return auth.keys.filter((key) => key.expiresAtMs === null || key.expiresAtMs > nowMs);
}

async function readNetworkAuth(id: string, source: NetworkSource): Promise<NetworkAuth | null> {
  const session = source.db.withSession("first-unconstrained");
  const network = await getNetwork(session, id);
  if (!network) return null;
  const secrets = await activeSecrets(session, id, new Date(source.nowMs).toISOString());
  const keys = await Promise.all(
    secrets.map(async (secret) => ({
      id: secret.id,
      key: await importSigningKey(await decryptSecret(source.encryptionKey, secret.id, secret.ciphertext)),
      expiresAtMs: secret.expires_at ? Date.parse(secret.expires_at) : null,
    })),
  );
  return { network, keys };
}
