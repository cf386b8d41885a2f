/**
 * The audit log: one row per admin action that changed something, with the key that did it. Written
 * before the answer leaves, so an action the caller saw succeed is in the log; never with a body.
 */
import type { Principal } from "../domain/access";
import { newId } from "../lib/bytes";
import { logLine } from "../lib/log";
import { insertAudit } from "../storage/api-keys";
import type { D1 } from "../storage/d1";

export interface AuditedAction {
  action: string;
  method: string;
  path: string;
  /** The ids the action was on (path parameters). */
  target: Record<string, string>;
  status: number;
  request_id: string;
  via: "api" | "console";
}

export async function recordAudit(
  db: D1,
  principal: Principal,
  action: AuditedAction,
  nowMs = Date.now(),
): Promise<void> {
  const row = {
    id: newId("aud", nowMs),
    at: new Date(nowMs).toISOString(),
    key_id: principal.key_id,
    key_name: principal.name,
    scope: principal.scope,
    ...action,
    target: JSON.stringify(action.target),
  };
  try {
    await insertAudit(db, row);
  } catch (error) {
    // Once more before giving up: the action itself is done and cannot be taken back here.
    try {
      await insertAudit(db, row);
    } catch {
      logLine("error", { message: "audit row not written", audit: row, error: String(error) });
    }
  }
}
