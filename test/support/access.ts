/** Helpers for the access tests: API keys made through the admin API, calls made with them, audit rows. */
import { env, exports } from "cloudflare:workers";
import { admin, BASE, expectStatus, uniqueId } from "./helpers";

export interface TestApiKey {
  id: string;
  name: string;
  scope: string;
  subject_id: string | null;
  status: string;
  prefix: string;
  created_by: string;
  expires_at: string | null;
  rotated_at: string | null;
  last_used_at: string | null;
  /** The value, as the creation (or a rotation) showed it once. */
  key: string;
}

/** Creates a key with the ADMIN_TOKEN; `scope` and `subject_id` as the API takes them. */
export async function createApiKey(fields: Record<string, unknown>): Promise<TestApiKey> {
  return expectStatus<TestApiKey>(
    await admin("/v1/keys", { method: "POST", body: JSON.stringify({ name: uniqueId("key"), ...fields }) }),
    201,
  );
}

/** A request to the hub with `Authorization: Bearer <key>` (a JSON content type when it has a body). */
export function withKey(key: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${key}`);
  if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`${BASE}${path}`, { ...init, headers }));
}

export interface AuditRowInD1 {
  id: string;
  at: string;
  key_id: string;
  key_name: string;
  scope: string;
  action: string;
  method: string;
  path: string;
  target: string;
  status: number;
  request_id: string;
  via: string;
}

/** The audit rows a key wrote, oldest first, as D1 holds them. */
export async function auditRowsOf(keyId: string): Promise<AuditRowInD1[]> {
  const { results } = await env.DB.prepare("SELECT * FROM audit_log WHERE key_id = ? ORDER BY id")
    .bind(keyId)
    .all<AuditRowInD1>();
  return results;
}

export async function auditCount(): Promise<number> {
  return (await env.DB.prepare("SELECT COUNT(*) AS n FROM audit_log").first<{ n: number }>())?.n ?? 0;
}
