/**
 * SQL for bulk replay jobs (`replay_jobs`, migration 0010). A step is two-phase: `armChunk` re-arms
 * a chunk of deliveries and records which in the job's row, in one transaction; after the chunk's
 * DELIVERIES messages are sent, `confirmChunk` counts it and clears the record. A step that died
 * between the two leaves the record, and the next step sends that chunk again before moving on.
 */
import { type ReplayFilter, ReplayFilterSchema, type ReplayJobState } from "../domain/replay";
import type { D1 } from "./d1";
import { type ReplayPosition, type ReplaySelection, replayIdsStatement } from "./deliveries";

export interface ReplayJobRow {
  id: string;
  filter: string;
  state: ReplayJobState;
  total: number;
  done: number;
  steps: number;
  cursor_created_at: string | null;
  cursor_id: string | null;
  pending_ids: string | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
}

export function filterOf(row: ReplayJobRow): ReplayFilter {
  return ReplayFilterSchema.parse(JSON.parse(row.filter));
}

/** The chunk the job's last step re-armed and has not confirmed sent; null between steps. */
export function pendingIdsOf(row: ReplayJobRow): string[] | null {
  return row.pending_ids === null ? null : (JSON.parse(row.pending_ids) as string[]);
}

export function cursorOf(row: ReplayJobRow): ReplayPosition | null {
  return row.cursor_created_at !== null && row.cursor_id !== null
    ? { created_at: row.cursor_created_at, id: row.cursor_id }
    : null;
}

export async function insertReplayJob(
  db: D1,
  job: { id: string; filter: ReplayFilter; total: number; now: string },
): Promise<ReplayJobRow> {
  const row = await db
    .prepare(
      `INSERT INTO replay_jobs (id, filter, state, total, created_at, updated_at)
       VALUES (?, ?, 'queued', ?, ?, ?) RETURNING *`,
    )
    .bind(job.id, JSON.stringify(job.filter), job.total, job.now, job.now)
    .first<ReplayJobRow>();
  if (!row) throw new Error(`replay job ${job.id} was not inserted`);
  return row;
}

export async function getReplayJob(db: D1, id: string): Promise<ReplayJobRow | null> {
  return db.prepare("SELECT * FROM replay_jobs WHERE id = ?").bind(id).first<ReplayJobRow>();
}

/** Newest first; `after` is the sort key of the last row of the previous page. */
export async function listReplayJobs(
  db: D1,
  state: ReplayJobState | undefined,
  limit: number,
  after: [string, string] | null,
): Promise<ReplayJobRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM replay_jobs
       WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR (created_at, id) < (?2, ?3))
       ORDER BY created_at DESC, id DESC LIMIT ?4`,
    )
    .bind(state ?? null, after?.[0] ?? null, after?.[1] ?? null, limit)
    .all<ReplayJobRow>();
  return results;
}

/**
 * Re-arms those of `candidates` the selection still takes and records exactly those as the job's
 * pending chunk, with the cursor moved past every candidate; one transaction. Both statements
 * require that the job is still where this step found it (no chunk pending, the same cursor), so
 * a second runner of the same step changes nothing. Answers the chunk recorded (a JSON array of
 * ids), or null when another runner took this step first.
 */
export async function armChunk(
  db: D1,
  job: ReplayJobRow,
  selection: ReplaySelection,
  candidates: readonly ReplayPosition[],
  now: string,
): Promise<string | null> {
  const last = candidates[candidates.length - 1];
  if (last === undefined) throw new Error("armChunk needs at least one candidate");
  const ids = JSON.stringify(candidates.map((c) => c.id));
  const unchanged = {
    sql: `EXISTS (SELECT 1 FROM replay_jobs j WHERE j.id = ? AND j.pending_ids IS NULL AND j.cursor_id IS ?
            AND j.state IN ('queued', 'running'))`,
    params: [job.id, job.cursor_id],
  };
  const [, recorded] = await db.batch([
    replayIdsStatement(
      db,
      candidates.map((c) => c.id),
      selection,
      now,
      unchanged,
    ),
    // Inside the transaction nothing else writes: the candidates now pending since `now` are
    // exactly those the statement above re-armed.
    db
      .prepare(
        `UPDATE replay_jobs SET
           pending_ids = (SELECT json_group_array(id) FROM (
                            SELECT id FROM deliveries
                            WHERE id IN (SELECT value FROM json_each(?1)) AND state = 'pending' AND updated_at = ?2
                            -- The replay's order, said: not whichever index the planner walks.
                            ORDER BY created_at, id)),
           cursor_created_at = ?3, cursor_id = ?4, state = 'running', started_at = coalesce(started_at, ?2),
           updated_at = ?2
         WHERE id = ?5 AND pending_ids IS NULL AND cursor_id IS ?6 AND state IN ('queued', 'running')
         RETURNING pending_ids`,
      )
      .bind(ids, now, last.created_at, last.id, job.id, job.cursor_id),
  ]);
  const row = recorded?.results[0] as { pending_ids: string } | undefined;
  return row?.pending_ids ?? null;
}

/** Counts the pending chunk as done and clears it, once: only while it is still the job's pending chunk. */
export async function confirmChunk(db: D1, jobId: string, pendingIds: string, now: string): Promise<boolean> {
  const result = await db
    .prepare(
      `UPDATE replay_jobs SET done = done + json_array_length(pending_ids), pending_ids = NULL, steps = steps + 1,
         error = NULL, updated_at = ?1
       WHERE id = ?2 AND pending_ids = ?3`,
    )
    .bind(now, jobId, pendingIds)
    .run();
  return result.meta.changes > 0;
}

/** The job has nothing more to select: finished (only between steps, so no chunk is left unsent). */
export async function finishJob(db: D1, jobId: string, now: string): Promise<void> {
  await db
    .prepare(
      `UPDATE replay_jobs SET state = 'finished', finished_at = ?1, updated_at = ?1, started_at = coalesce(started_at, ?1)
       WHERE id = ?2 AND pending_ids IS NULL AND state IN ('queued', 'running')`,
    )
    .bind(now, jobId)
    .run();
}

/** A step failed: the reason is shown until a later step succeeds; `failed` ends the job. */
export async function recordStepError(
  db: D1,
  jobId: string,
  error: string,
  failed: boolean,
  now: string,
): Promise<void> {
  await db
    .prepare(
      `UPDATE replay_jobs SET error = ?1, updated_at = ?2,
         state = CASE WHEN ?3 THEN 'failed' ELSE state END,
         finished_at = CASE WHEN ?3 THEN ?2 ELSE finished_at END
       WHERE id = ?4 AND state IN ('queued', 'running')`,
    )
    .bind(error, now, failed ? 1 : 0, jobId)
    .run();
}

/** Unfinished jobs untouched since `before`: their runner may need a nudge (the cron's safety net). */
export async function stalledReplayJobs(db: D1, before: string, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare(
      "SELECT id FROM replay_jobs WHERE state IN ('queued', 'running') AND updated_at < ? ORDER BY updated_at LIMIT ?",
    )
    .bind(before, limit)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}
