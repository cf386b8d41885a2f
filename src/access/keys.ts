/**
 * API keys: issued here (`phk_` + 32 random bytes, shown once), kept as an HMAC under a key derived
 * from ENCRYPTION_KEY ("api-key v1"), found by that HMAC. The keys are random, so a keyed hash is
 * enough (no slow password hash), and a lookup by hash compares no secret byte by byte.
 * ADMIN_TOKEN is the bootstrap admin and is compared in constant time before any lookup.
 */
import { configOf } from "../config";
import { ADMIN_TOKEN_KEY_ID, API_KEY_PREFIX, type Principal } from "../domain/access";
import { randomBytes, secretsEqual, toBase64Url } from "../lib/bytes";
import { hmac, hmacKey } from "../lib/keys";
import { logLine } from "../lib/log";
import { UseThrottle } from "../lib/use-throttle";
import { type ApiKeyRow, apiKeyByHash, apiKeyById, touchApiKey } from "../storage/api-keys";

/** How often `last_used_at` is written for a busy key (per isolate, and in D1 whatever the isolate). */
const LAST_USED_RESOLUTION_MS = 60_000;
const uses = new UseThrottle(LAST_USED_RESOLUTION_MS);

/** Shown beside a key's name so an operator can tell which one is which: never enough to use. */
const PREFIX_SHOWN = API_KEY_PREFIX.length + 6;

export interface IssuedApiKey {
  value: string;
  hash: string;
  prefix: string;
}

export async function issueApiKey(encryptionKey: string): Promise<IssuedApiKey> {
  const value = API_KEY_PREFIX + toBase64Url(randomBytes(32));
  return { value, hash: await apiKeyHash(encryptionKey, value), prefix: value.slice(0, PREFIX_SHOWN) };
}

export async function apiKeyHash(encryptionKey: string, value: string): Promise<string> {
  return toBase64Url(await hmac(await hmacKey(encryptionKey, "api-key v1"), value));
}

/** Whether the key works now: not disabled, not expired. */
export function keyIsLive(row: ApiKeyRow, nowIso: string): boolean {
  return row.disabled_at === null && (row.expires_at === null || row.expires_at > nowIso);
}

export function principalOf(row: ApiKeyRow): Principal {
  return {
    key_id: row.id,
    name: row.name,
    scope: row.scope,
    subject_id: row.subject_id,
    issued_at_ms: Date.parse(row.rotated_at ?? row.created_at),
  };
}

export function adminTokenPrincipal(): Principal {
  return { key_id: ADMIN_TOKEN_KEY_ID, name: "ADMIN_TOKEN", scope: "admin", subject_id: null, issued_at_ms: 0 };
}

/**
 * Who `token` is: the ADMIN_TOKEN, or a live API key (whose `last_used_at` is marked); null for
 * anything else. A disabled or expired key is null too: the caller answers 401 the same way.
 */
export async function authenticateToken(env: Env, token: string, nowMs = Date.now()): Promise<Principal | null> {
  const config = configOf(env);
  if (await secretsEqual(token, config.ADMIN_TOKEN)) return adminTokenPrincipal();
  if (!token.startsWith(API_KEY_PREFIX)) return null;
  const now = new Date(nowMs).toISOString();
  const row = await apiKeyByHash(env.DB, await apiKeyHash(config.ENCRYPTION_KEY, token), now);
  if (!row || !keyIsLive(row, now)) return null;
  if (uses.due(row.id, nowMs)) {
    // Telemetry: a failed write must not fail the request it describes; the next use tries again.
    await touchApiKey(env.DB, row.id, now, new Date(nowMs - LAST_USED_RESOLUTION_MS).toISOString()).catch(
      (error: unknown) => {
        uses.forget(row.id);
        logLine("warn", { message: "could not record API key use", key_id: row.id, error: String(error) });
      },
    );
  }
  return principalOf(row);
}

/**
 * The principal behind a console session signed in as `keyId` at `signedInAtMs`: null when the key
 * is gone, disabled, expired, or was rotated after the sign-in (rotating a key ends its sessions).
 */
export async function principalForSession(
  env: Env,
  keyId: string,
  signedInAtMs: number,
  nowMs = Date.now(),
): Promise<Principal | null> {
  if (keyId === ADMIN_TOKEN_KEY_ID) return adminTokenPrincipal();
  const row = await apiKeyById(env.DB, keyId);
  if (!row || !keyIsLive(row, new Date(nowMs).toISOString())) return null;
  const principal = principalOf(row);
  return principal.issued_at_ms > signedInAtMs ? null : principal;
}

/** The bearer token of an `Authorization` header, if it has one. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
}
