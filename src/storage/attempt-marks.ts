/**
 * "Attempts since T" without an index on delivery_attempts (migration 0026): the rowid range after
 * the last mark taken at or before T. Each 15-minute cron marks the table's highest rowid with the
 * time D1 read it at; SQLite gives a new row the highest rowid plus one, and an attempt that
 * started at or after a mark's time was recorded after the mark, so every attempt started since T
 * lies above the last mark at or before T. The range is read with `started_at >= T` as before: the
 * marks only say where to start, so a count is exact, and reads at most the attempts since T and
 * the 15 minutes before it. A mark is used only while the row it names is there with the start it
 * had: rowids that moved (a rebuild, a VACUUM) or came again (the newest rows deleted) void it, and
 * the read starts from an older mark that holds, or from the table's beginning.
 */
import type { D1 } from "./d1";

/** Clocks of the cron and of the coordinators that time attempts may differ by this much. */
const CLOCK_SKEW_MS = 60_000;
/** Marks are kept this long: the longest window an alert rule may ask for (7 days), and a day. */
const MARKS_KEPT_MS = 8 * 86_400_000;

/**
 * Marks where delivery_attempts ends now, dropping old marks (the 15-minute cron). The mark's time
 * is D1's clock as the statement reads the table's end, never a cron's scheduled time, which is
 * earlier; `nowMs` stands in for it in tests.
 */
export async function markAttempts(db: D1, nowMs?: number): Promise<void> {
  const at = nowMs === undefined ? null : new Date(nowMs).toISOString();
  await db.batch([
    db
      .prepare(
        `INSERT INTO delivery_attempt_marks (at, last_rowid, last_started_at)
         SELECT coalesce(?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), coalesce(last.rowid, 0), last.started_at
         FROM (SELECT 1) LEFT JOIN (SELECT rowid, started_at FROM delivery_attempts ORDER BY rowid DESC LIMIT 1) AS last
         WHERE true
         ON CONFLICT (at) DO NOTHING`,
      )
      .bind(at),
    db
      .prepare(
        `DELETE FROM delivery_attempt_marks
         WHERE at < strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(?1, 'now'), '-${MARKS_KEPT_MS / 1000} seconds')`,
      )
      .bind(at),
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
        AND (m.last_rowid = 0 OR EXISTS (
          SELECT 1 FROM delivery_attempts x WHERE x.rowid = m.last_rowid AND x.started_at IS m.last_started_at))
      ORDER BY m.at DESC LIMIT 1), 0)
    AND ${alias}.started_at >= ${param}`;
}
