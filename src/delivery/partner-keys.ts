/**
 * A partner's signing keys, decrypted and imported once per isolate for a minute: every attempt
 * signs, and a rotation must show up soon without a D1 read per request.
 */
import { importSigningKey } from "../ingest/standard-webhooks";
import { decryptSecret } from "../networks/secrets";
import type { D1 } from "../storage/d1";
import { activePartnerSecrets } from "../storage/partners";

const TTL_MS = 60_000;
const cache = new Map<string, { keys: CryptoKey[]; loadedAtMs: number }>();

export async function partnerSigningKeys(
  db: D1,
  encryptionKey: string,
  partnerId: string,
  nowMs: number,
): Promise<CryptoKey[]> {
  const hit = cache.get(partnerId);
  if (hit && nowMs - hit.loadedAtMs < TTL_MS) return hit.keys;
  const secrets = await activePartnerSecrets(db, partnerId, new Date(nowMs).toISOString());
  const keys = await Promise.all(
    secrets.map(async (s) => importSigningKey(await decryptSecret(encryptionKey, s.id, s.ciphertext))),
  );
  cache.set(partnerId, { keys, loadedAtMs: nowMs });
  return keys;
}

/** After a rotation in this isolate. */
export function forgetPartnerKeys(partnerId: string): void {
  cache.delete(partnerId);
}
