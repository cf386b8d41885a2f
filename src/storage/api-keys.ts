/** SQL for API keys and the audit log (access/). */
import type { Scope } from "../domain/access";
import type { D1 } from "./d1";

export interface ApiKeyRow {
  id: string;
  name: string;
  scope: Scope;
  subject_id: string | null;
  prefix: string;
  created_at: string;
  created_by: string;
  expires_at: string | null;
  disabled_at: string | null;
  rotated_at: string | null;
  last_used_at: string | null;
  previous_expires_at: string | null;
}

const COLUMNS =
  "id, name, scope, subject_id, prefix, created_at, created_by, expires_at, disabled_at, rotated_at, last_used_at, previous_expires_at";

export async function insertApiKey(db: D1, row: ApiKeyRow, secretHash: string): Promise<void> {
  await db
    .prepare(`INSERT INTO api_keys (${COLUMNS}, secret_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
    .bind(
      row.id,
      row.name,
      row.scope,
      row.subject_id,
      row.prefix,
      row.created_at,
      row.created_by,
      row.expires_at,
      row.disabled_at,
      row.rotated_at,
      row.last_used_at,
      row.previous_expires_at,
      secretHash,
    )
    .run();
}

/** The key whose current value hashes to `hash`, or whose previous one does while it still works. */
export async function apiKeyByHash(db: D1, hash: string, now: string): Promise<ApiKeyRow | null> {
  return db
    .prepare(
      `SELECT ${COLUMNS} FROM api_keys
       WHERE secret_hash = ?1
          OR (previous_secret_hash = ?1 AND previous_expires_at > ?2)
       LIMIT 1`,
    )
    .bind(hash, now)
    .first<ApiKeyRow>();
}

export async function apiKeyById(db: D1, id: string): Promise<ApiKeyRow | null> {
  return db.prepare(`SELECT ${COLUMNS} FROM api_keys WHERE id = ?`).bind(id).first<ApiKeyRow>();
}

export async function listApiKeys(
  db: D1,
  filter: { scope?: Scope; subject_id?: string; after?: string },
  limit: number,
): Promise<ApiKeyRow[]> {
  const { results } = await db
    .prepare(
      `SELECT ${COLUMNS} FROM api_keys
       WHERE (?1 IS NULL OR scope = ?1) AND (?2 IS NULL OR subject_id = ?2) AND (?3 IS NULL OR id > ?3)
       ORDER BY id LIMIT ?4`,
    )
    .bind(filter.scope ?? null, filter.subject_id ?? null, filter.after ?? null, limit)
    .all<ApiKeyRow>();
  return results;
}

/** Name, expiry and disabled state; null when there is no such key. */
export async function updateApiKey(
  db: D1,
  id: string,
  patch: { name?: string; expires_at?: string | null; disabled_at?: string | null },
): Promise<ApiKeyRow | null> {
  return db
    .prepare(
      `UPDATE api_keys SET
         name = CASE WHEN ?2 THEN ?3 ELSE name END,
         expires_at = CASE WHEN ?4 THEN ?5 ELSE expires_at END,
         disabled_at = CASE WHEN ?6 THEN ?7 ELSE disabled_at END
       WHERE id = ?1 RETURNING ${COLUMNS}`,
    )
    .bind(
      id,
      patch.name !== undefined ? 1 : 0,
      patch.name ?? null,
      patch.expires_at !== undefined ? 1 : 0,
      patch.expires_at ?? null,
      patch.disabled_at !== undefined ? 1 : 0,
      patch.disabled_at ?? null,
    )
    .first<ApiKeyRow>();
}

/** A new value: the current hash becomes the previous one, working until `previousExpiresAt` (none when that is now). */
export async function rotateApiKey(
  db: D1,
  id: string,
  secretHash: string,
  prefix: string,
  now: string,
  previousExpiresAt: string,
): Promise<ApiKeyRow | null> {
  return db
    .prepare(
      // No grace: the previous value is forgotten, not kept until a time that an isolate whose
      // clock lags behind would still find in the future.
      `UPDATE api_keys SET previous_secret_hash = CASE WHEN ?3 > ?5 THEN secret_hash END,
         previous_expires_at = CASE WHEN ?3 > ?5 THEN ?3 END,
         secret_hash = ?2, prefix = ?4, rotated_at = ?5
       WHERE id = ?1 RETURNING ${COLUMNS}`,
    )
    .bind(id, secretHash, previousExpiresAt, prefix, now)
    .first<ApiKeyRow>();
}

/** Marks a key used; only when the mark is older than `staleBefore`, so a busy key writes once a minute. */
export async function touchApiKey(db: D1, id: string, now: string, staleBefore: string): Promise<void> {
  await db
    .prepare("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?3)")
    .bind(id, now, staleBefore)
    .run();
}

export interface AuditRow {
  id: string;
  at: string;
  key_id: string;
  key_name: string;
  scope: Scope;
  action: string;
  method: string;
  path: string;
  target: string;
  status: number;
  request_id: string;
  via: "api" | "console";
}

export async function insertAudit(db: D1, row: AuditRow): Promise<void> {
  await db
    .prepare(
      `INSERT INTO audit_log (id, at, key_id, key_name, scope, action, method, path, target, status, request_id, via)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .bind(
      row.id,
      row.at,
      row.key_id,
      row.key_name,
      row.scope,
      row.action,
      row.method,
      row.path,
      row.target,
      row.status,
      row.request_id,
      row.via,
    )
    .run();
}

/** Newest first; `before` is the last id of the previous page. */
export async function listAudit(
  db: D1,
  filter: { key_id?: string; action?: string; since?: string; until?: string; before?: string },
  limit: number,
): Promise<AuditRow[]> {
  const { results } = await db
    .prepare(
      `SELECT id, at, key_id, key_name, scope, action, method, path, target, status, request_id, via FROM audit_log
       WHERE (?1 IS NULL OR key_id = ?1) AND (?2 IS NULL OR action = ?2)
         AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4) AND (?5 IS NULL OR id < ?5)
       ORDER BY id DESC LIMIT ?6`,
    )
    .bind(
      filter.key_id ?? null,
      filter.action ?? null,
      filter.since ?? null,
      filter.until ?? null,
      filter.before ?? null,
      limit,
    )
    .all<AuditRow>();
  return results;
}

/** The owner of a delivery (its partner) and of an inbound request (its network), for scoped keys. */
export async function deliveryPartnerOf(db: D1, deliveryId: string): Promise<string | null> {
  return (
    (
      await db
        .prepare("SELECT partner_id FROM deliveries WHERE id = ?")
        .bind(deliveryId)
        .first<{ partner_id: string }>()
    )?.partner_id ?? null
  );
}

export async function inboundRequestNetworkOf(db: D1, requestId: string): Promise<string | null> {
  return (
    (
      await db
        .prepare("SELECT network_id FROM inbound_requests WHERE request_id = ?")
        .bind(requestId)
        .first<{ network_id: string | null }>()
    )?.network_id ?? null
  );
}
