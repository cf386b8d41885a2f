/**
 * Bulk replay (docs/partners-and-delivery.md, "Recovering in bulk"): which deliveries a replay job
 * selects, the job's states, and its pace. A job re-arms the selected deliveries in chunks, oldest
 * first, each keeping its id (the partner's `webhook-id`); operations/replays.ts runs the steps.
 */
import { z } from "zod";
import { REPLAYABLE_STATES } from "./delivery";
import { CONVERSION_STATUSES } from "./postback";

export const REPLAY_JOB_STATES = ["queued", "running", "finished", "failed"] as const;
export type ReplayJobState = (typeof REPLAY_JOB_STATES)[number];

/** What a bulk replay selects when `states` is not given: parked deliveries wait for their partner. */
export const BULK_REPLAY_DEFAULT_STATES = [
  "failed",
  "dead",
] as const satisfies readonly (typeof REPLAYABLE_STATES)[number][];

/** Deliveries re-armed and sent per step: at most one chunk reaches the DELIVERIES queue per step. */
export const REPLAY_CHUNK_SIZE = 200;
/** The pause between two steps of a job: with the chunk, at most 200 deliveries a second. */
export const REPLAY_STEP_PAUSE_MS = 1_000;
/** A step that fails is tried again after this, doubling up to REPLAY_MAX_BACKOFF_MS… */
export const REPLAY_FIRST_BACKOFF_MS = 5_000;
export const REPLAY_MAX_BACKOFF_MS = 5 * 60_000;
/** …and after this many failures in a row (about half an hour of them) the job is failed. */
export const REPLAY_MAX_STEP_FAILURES = 12;
/** The ids a dry run shows of what it counted. */
export const REPLAY_SAMPLE_SIZE = 10;

/** A job's filter as stored (defaults applied); every field but `states` may be null (any). */
export const ReplayFilterSchema = z.object({
  partner_id: z.string().nullable(),
  network_id: z.string().nullable(),
  states: z.array(z.enum(REPLAYABLE_STATES)).min(1),
  /** On the delivery's created_at: at or after `since`, before `until` (RFC 3339, UTC ISO). */
  since: z.string().nullable(),
  until: z.string().nullable(),
  /** The status the delivery notifies (the conversion's status after its event). */
  conversion_status: z.enum(CONVERSION_STATUSES).nullable(),
});

export type ReplayFilter = z.infer<typeof ReplayFilterSchema>;

/** When a failed step is tried again, after `failures` failures in a row. */
export function replayBackoffMs(failures: number): number {
  return Math.min(REPLAY_FIRST_BACKOFF_MS * 2 ** Math.max(0, failures - 1), REPLAY_MAX_BACKOFF_MS);
}

/** The deliveries a job may re-arm: never those created after it (its set does not grow while it runs). */
export function jobUntil(filter: ReplayFilter, createdAt: string): string {
  return filter.until !== null && filter.until < createdAt ? filter.until : createdAt;
}
