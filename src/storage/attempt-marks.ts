/**
 * "Attempts since T" without an index on delivery_attempts (migration 0026): the rowid range after
 * the last mark taken at or before T. Each 15-minute cron marks the table's highest rowid with the
 * wall time it read it at; SQLite gives a new row the highest rowid plus one, and an attempt that
 * started at or after a mark's time was recorded after the mark, so every attempt started since T
 * lies above the last mark at or before T. The range is read with `started_at >= T` as before: the
 * marks only say where to start, so a count is exact, and reads at most the attempts since T and
 * the 15 minutes before it.
 */
import type { D1 } from "./d1";

/** Clocks of the cron and of the coordinators that time attempts may differ by this much. */
const CLOCK_SKEW_MS = 60_000;
/** Marks are kept this long: the longest window an alert rule may ask for (7 days), and a day. */
const MARKS_KEPT_MS = 8 * 86_400_000;

/**
 * Marks where delivery_attempts ends now, dropping old marks (the 15-minute cron). `nowMs` is the
 * wall clock as the statement runs, never a cron's scheduled time, which can be earlier.
 */
export async function markAttempts(db: D1, nowMs = Date.now()): Promise<void> {
  await db.batch([
    db
      .prepare(
        `INSERT INTO delivery_attempt_marks (at, last_rowid)
         SELECT ?, coalesce((SELECT max(rowid) FROM delivery_attempts), 0) WHERE true
         ON CONFLICT (at) DO NOTHING`,
      )
      .bind(new Date(nowMs).toISOString()),
    db.prepare("DELETE FROM delivery_attempt_marks WHERE at < ?").bind(new Date(nowMs - MARKS_KEPT_MS).toISOString()),
  ]);
}

/**
 * The condition that bounds a read of delivery_attempts (aliased `alias`) to the attempts started at
 * or after the time bound to `param` (an ISO time, e.g. "?1"), by rowid; the query says
 * `started_at >= param` itself. With no mark that old, the whole table.
 */
export function attemptsSince(alias: string, param: string): string {
  return `${alias}.rowid > coalesce((
      SELECT m.last_rowid FROM delivery_attempt_marks m
      WHERE m.at <= strftime('%Y-%m-%dT%H:%M:%fZ', ${param}, '-${CLOCK_SKEW_MS / 1000} seconds')
      ORDER BY m.at DESC LIMIT 1), 0)
    AND ${alias}.started_at >= ${param}`;
}
