/**
 * Console sessions: a signed cookie (HMAC-SHA-256 under a key derived from ENCRYPTION_KEY for
 * "console-session v1") holding the key id, the sign-in time, the expiry and a random session id,
 * never the key itself. Nothing is stored server side: every request re-resolves the key
 * (access/keys.ts principalForSession), so disabling, expiring or rotating it ends its sessions at
 * once; an ADMIN_TOKEN session also carries a MAC of the token it signed in with, so changing the
 * secret ends those. The CSRF token of a session is a MAC of its id.
 */
import { configOf } from "../config";
import { ADMIN_TOKEN_KEY_ID, type Principal } from "../domain/access";
import { fromBase64Url, randomBytes, secretsEqual, toBase64Url, utf8 } from "../lib/bytes";
import { hmac, hmacKey } from "../lib/keys";

/** Over https the cookie is `__Secure-` prefixed (`__Host-` would need Path=/, and it is Path=/console). */
export const SESSION_COOKIE = "phc_session";
export const SECURE_SESSION_COOKIE = `__Secure-${SESSION_COOKIE}`;
export const CONSOLE_PATH = "/console";

export interface Session {
  /** The API key's id, or ADMIN_TOKEN_KEY_ID. */
  key_id: string;
  signed_in_ms: number;
  expires_ms: number;
  /** Random: names the session (its CSRF token is a MAC of it). */
  id: string;
  /** An ADMIN_TOKEN session: a MAC of the token it signed in with. */
  admin?: string;
}

function sessionKey(env: Env): Promise<CryptoKey> {
  return hmacKey(configOf(env).ENCRYPTION_KEY, "console-session v1");
}

async function mac(env: Env, purpose: string, value: string): Promise<string> {
  return toBase64Url(await hmac(await sessionKey(env), `${purpose}\u0000${value}`));
}

/** A MAC of the current ADMIN_TOKEN: an ADMIN_TOKEN session ends when the secret changes. */
export function adminTokenFingerprint(env: Env): Promise<string> {
  return mac(env, "admin-token", configOf(env).ADMIN_TOKEN);
}

export async function newSession(env: Env, principal: Principal, nowMs = Date.now()): Promise<Session> {
  const hours = configOf(env).CONSOLE_SESSION_HOURS;
  return {
    key_id: principal.key_id,
    signed_in_ms: nowMs,
    expires_ms: nowMs + Math.round(hours * 3_600_000),
    id: toBase64Url(randomBytes(16)),
    ...(principal.key_id === ADMIN_TOKEN_KEY_ID ? { admin: await adminTokenFingerprint(env) } : {}),
  };
}

/** The cookie's value: the session as base64url JSON, a dot, its MAC. */
export async function sealSession(env: Env, session: Session): Promise<string> {
  const body = toBase64Url(utf8(JSON.stringify(session)));
  return `${body}.${await mac(env, "session", body)}`;
}

export type OpenedSession = { ok: true; session: Session } | { ok: false; reason: "invalid" | "expired" };

/** The session a cookie holds, if its MAC is right and it has not expired. */
export async function openSession(env: Env, value: string | undefined, nowMs = Date.now()): Promise<OpenedSession> {
  const [body, tag, ...rest] = (value ?? "").split(".");
  if (!body || !tag || rest.length > 0) return { ok: false, reason: "invalid" };
  if (!(await secretsEqual(tag, await mac(env, "session", body)))) return { ok: false, reason: "invalid" };
  const bytes = fromBase64Url(body);
  if (!bytes) return { ok: false, reason: "invalid" };
  let session: Session;
  try {
    session = JSON.parse(new TextDecoder().decode(bytes)) as Session;
  } catch {
    return { ok: false, reason: "invalid" };
  }
  if (typeof session.expires_ms !== "number" || session.expires_ms <= nowMs) return { ok: false, reason: "expired" };
  return { ok: true, session };
}

/** Whether an ADMIN_TOKEN session was signed in with the ADMIN_TOKEN the hub has now. */
export async function adminTokenUnchanged(env: Env, session: Session): Promise<boolean> {
  return session.admin !== undefined && (await secretsEqual(session.admin, await adminTokenFingerprint(env)));
}

/** The hidden `csrf` field of every form of this session. */
export function csrfTokenOf(env: Env, sessionId: string): Promise<string> {
  return mac(env, "csrf", sessionId);
}

export async function csrfTokenMatches(env: Env, sessionId: string, given: unknown): Promise<boolean> {
  return typeof given === "string" && given !== "" && secretsEqual(given, await csrfTokenOf(env, sessionId));
}
