/**
 * A partner's signing keys, decrypted and imported once per isolate for a short while: every
 * attempt signs, and a rotation must show up soon without a D1 read per request. A key past its
 * grace period is never used, and a partner refusing our signature (401/403) drops the cache, so
 * the next delivery, or a replay of this one, signs with what D1 holds now.
 */

import { decryptSecret } from "../lib/credentials";
import { importSigningKey } from "../lib/standard-webhooks";
import type { D1 } from "../storage/d1";
import { activePartnerSecrets } from "../storage/partners";

const TTL_MS = 30_000;

interface CachedKey {
  key: CryptoKey;
  expiresAtMs: number | null;
}

const cache = new Map<string, { keys: CachedKey[]; loadedAtMs: number }>();

const live = (keys: CachedKey[], nowMs: number) =>
  keys.filter((k) => k.expiresAtMs === null || k.expiresAtMs > nowMs).map((k) => k.key);

export async function partnerSigningKeys(
  db: D1,
  encryptionKey: string,
  partnerId: string,
  nowMs: number,
): Promise<CryptoKey[]> {
  const hit = cache.get(partnerId);
  if (hit && nowMs - hit.loadedAtMs < TTL_MS) {
    const keys = live(hit.keys, nowMs);
    if (keys.length > 0) return keys;
  }
  const secrets = await activePartnerSecrets(db, partnerId, new Date(nowMs).toISOString());
  const keys = await Promise.all(
    secrets.map(async (s) => ({
      key: await importSigningKey(await decryptSecret(encryptionKey, s.id, s.ciphertext)),
      expiresAtMs: s.expires_at ? Date.parse(s.expires_at) : null,
    })),
  );
  cache.set(partnerId, { keys, loadedAtMs: nowMs });
  return live(keys, nowMs);
}

/** After a rotation in this isolate, or a partner refusing our signature. */
export function forgetPartnerKeys(partnerId: string): void {
  cache.delete(partnerId);
}
