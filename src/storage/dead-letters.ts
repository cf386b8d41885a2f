/**
 * SQL for reading and replaying dead letters. They are written by every queue's consumer through
 * `deadLetterStatement` (storage/d1.ts), keyed `<queue name>:<message id>`.
 */
import type { D1 } from "./d1";

export interface DeadLetterRow {
  id: string;
  queue: string;
  /** The message body as JSON text. */
  body: string;
  reason: string;
  attempts: number;
  created_at: string;
  replayed_at: string | null;
}

export interface DeadLetterFilter {
  /** Any of these queue names; every queue when null. */
  queues: readonly string[] | null;
  since: string | null;
  until: string | null;
}

/** Newest first by `created_at`; `after` is the sort key of the last row of the previous page. */
export async function listDeadLetters(
  db: D1,
  filter: DeadLetterFilter,
  limit: number,
  after: [string, string] | null,
): Promise<DeadLetterRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM dead_letters
       WHERE (?1 IS NULL OR queue IN (SELECT value FROM json_each(?1)))
         AND (?2 IS NULL OR created_at >= ?2) AND (?3 IS NULL OR created_at < ?3)
         AND (?4 IS NULL OR (created_at, id) < (?4, ?5))
       ORDER BY created_at DESC, id DESC LIMIT ?6`,
    )
    .bind(
      filter.queues === null ? null : JSON.stringify(filter.queues),
      filter.since,
      filter.until,
      after?.[0] ?? null,
      after?.[1] ?? null,
      limit,
    )
    .all<DeadLetterRow>();
  return results;
}

export async function getDeadLetter(db: D1, id: string): Promise<DeadLetterRow | null> {
  return db.prepare("SELECT * FROM dead_letters WHERE id = ?").bind(id).first<DeadLetterRow>();
}

/**
 * Marks the letter replayed at `now`, only while its `replayed_at` is still `seen` (what the caller
 * read), so two replays racing each other cannot both go through. The row, or null when it lost.
 */
export async function markReplayed(
  db: D1,
  id: string,
  seen: string | null,
  now: string,
): Promise<DeadLetterRow | null> {
  return db
    .prepare("UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at IS ? RETURNING *")
    .bind(now, id, seen)
    .first<DeadLetterRow>();
}

/** Undoes `markReplayed` when the send failed, unless another replay marked it since. */
export async function unmarkReplayed(db: D1, id: string, marked: string, previous: string | null): Promise<void> {
  await db
    .prepare("UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at = ?")
    .bind(previous, id, marked)
    .run();
}
