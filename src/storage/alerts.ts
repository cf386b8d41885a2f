/** SQL for operator alerts (alerts/alerts.ts). */
import type { D1 } from "./d1";

export interface AlertRow {
  id: string;
  type: string;
  partner_id: string | null;
  payload: string;
  created_at: string;
  attempts: number;
  next_attempt_at: string | null;
  delivered_at: string | null;
  last_error: string | null;
}

export function insertAlertStatement(db: D1, row: AlertRow): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO alerts (id, type, partner_id, payload, created_at, attempts, next_attempt_at, delivered_at, last_error)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
    )
    .bind(
      row.id,
      row.type,
      row.partner_id,
      row.payload,
      row.created_at,
      row.attempts,
      row.next_attempt_at,
      row.delivered_at,
      row.last_error,
    );
}

export async function dueAlerts(db: D1, now: string, limit: number): Promise<AlertRow[]> {
  const { results } = await db
    .prepare(
      "SELECT * FROM alerts WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
    )
    .bind(now, limit)
    .all<AlertRow>();
  return results;
}

export function recordAlertAttempt(
  db: D1,
  id: string,
  attempt: Pick<AlertRow, "attempts" | "next_attempt_at" | "delivered_at" | "last_error">,
): D1PreparedStatement {
  return db
    .prepare("UPDATE alerts SET attempts = ?, next_attempt_at = ?, delivered_at = ?, last_error = ? WHERE id = ?")
    .bind(attempt.attempts, attempt.next_attempt_at, attempt.delivered_at, attempt.last_error, id);
}
