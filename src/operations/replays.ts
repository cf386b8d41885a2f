/**
 * Bulk replay (docs/partners-and-delivery.md, "Recovering in bulk"): a dry run counts, a job
 * re-arms the selected deliveries in the background. One step re-arms at most a chunk, oldest
 * first, keeping each delivery's id, and sends their DELIVERIES messages; the job's Durable Object
 * (replay-object.ts) runs a step, pauses, runs the next.
 *
 * A step survives dying anywhere: the chunk it re-armed is recorded with the job in the same
 * transaction (storage/replays.ts), and the next step sends a recorded chunk again before it takes
 * another. So no re-armed delivery is left without its message, none is re-armed twice by one job
 * (the cursor only moves forward), and a message sent twice is what the deliveries already
 * tolerate: the consumer's claim lets one attempt through, and a finished delivery's is acked.
 */
import { jobUntil, REPLAY_CHUNK_SIZE, REPLAY_SAMPLE_SIZE, type ReplayFilter } from "../domain/replay";
import { type FieldError, ProblemError, validationFailed } from "../errors";
import { newId } from "../lib/bytes";
import { logLine } from "../lib/log";
import { resumeStalledJobs, type StepJobRunners, type StepOutcome, startStepJob } from "../lib/step-job";
import { type DeliveriesQueue, enqueueDeliveries } from "../queues/delivery-messages";
import type { D1 } from "../storage/d1";
import { countReplayable, type ReplaySelection, replayCandidates } from "../storage/deliveries";
import { getNetwork } from "../storage/networks";
import { getPartner } from "../storage/partners";
import {
  armChunk,
  confirmChunk,
  cursorOf,
  filterOf,
  finishJob,
  getReplayJob,
  insertReplayJob,
  type ReplayJobRow,
  stalledReplayJobs,
} from "../storage/replays";

/** The deliveries a job (or a dry run at `asOf`) takes: its filter, created before it, partners active. */
export function selectionOf(filter: ReplayFilter, asOf: string): ReplaySelection {
  return { ...filter, until: jobUntil(filter, asOf), active_partners_only: true };
}

/** What a replay with this filter would take now: how many, and the ids of the oldest few. Changes nothing. */
export async function dryRunReplay(
  db: D1,
  filter: ReplayFilter,
  now: string,
): Promise<{ total: number; sample: string[] }> {
  const selection = selectionOf(filter, now);
  const [total, sample] = await Promise.all([
    countReplayable(db, selection),
    replayCandidates(db, selection, null, REPLAY_SAMPLE_SIZE),
  ]);
  return { total, sample: sample.map((delivery) => delivery.id) };
}

/** Records a job, queued, with what it matches now; its runner is started by the caller. */
export async function createReplayJob(db: D1, filter: ReplayFilter, nowMs: number): Promise<ReplayJobRow> {
  const now = new Date(nowMs).toISOString();
  const total = await countReplayable(db, selectionOf(filter, now));
  return insertReplayJob(db, { id: newId("rpl", nowMs), filter, total, now });
}

export interface ReplayStepDeps {
  db: D1;
  deliveries: DeliveriesQueue;
  now?: () => number;
  /** Deliveries per step; REPLAY_CHUNK_SIZE unless a test wants smaller steps. */
  chunkSize?: number;
}

/** One step of a job. Safe to run again after it died anywhere, and a no-op on an ended job. */
export async function runReplayStep(deps: ReplayStepDeps, jobId: string): Promise<StepOutcome> {
  const iso = () => new Date((deps.now ?? Date.now)()).toISOString();
  const job = await getReplayJob(deps.db, jobId);
  if (!job || job.state === "finished" || job.state === "failed") return "ended";

  // The last step re-armed this chunk and may have died before its messages left: send them (again).
  if (job.pending_ids !== null) {
    await sendChunk(deps, job.id, job.pending_ids, iso());
    return "more";
  }

  const chunkSize = deps.chunkSize ?? REPLAY_CHUNK_SIZE;
  const selection = selectionOf(filterOf(job), job.created_at);
  const candidates = await replayCandidates(deps.db, selection, cursorOf(job), chunkSize);
  if (candidates.length === 0) {
    await finishJob(deps.db, job.id, iso());
    return "finished";
  }
  const pending = await armChunk(deps.db, job, selection, candidates, iso());
  // Another runner took this step first; look again.
  if (pending === null) return "more";
  await sendChunk(deps, job.id, pending, iso());
  if (candidates.length < chunkSize) {
    await finishJob(deps.db, job.id, iso());
    return "finished";
  }
  return "more";
}

async function sendChunk(deps: ReplayStepDeps, jobId: string, pendingIds: string, now: string): Promise<void> {
  await enqueueDeliveries(deps.deliveries, JSON.parse(pendingIds) as string[]);
  await confirmChunk(deps.db, jobId, pendingIds, now);
}

/** The cron's safety net for replay jobs (lib/step-job.ts). */
export function resumeStalledReplays(db: D1, runners: StepJobRunners, nowMs: number): Promise<string[]> {
  return resumeStalledJobs((before, limit) => stalledReplayJobs(db, before, limit), runners, nowMs, "replay");
}

/** The filter must name a partner and a network that exist; the partner must be active (409). */
export async function checkReplayFilter(db: D1, filter: ReplayFilter): Promise<void> {
  const [partner, network] = await Promise.all([
    filter.partner_id === null ? null : getPartner(db, filter.partner_id),
    filter.network_id === null ? null : getNetwork(db, filter.network_id),
  ]);
  const errors: FieldError[] = [];
  if (filter.partner_id !== null && !partner) errors.push({ location: "body.partner_id", message: "no such partner" });
  if (filter.network_id !== null && !network) errors.push({ location: "body.network_id", message: "no such network" });
  if (errors.length > 0) throw validationFailed(errors);
  if (partner && partner.status !== "active") {
    throw new ProblemError(
      "partner_disabled",
      `Partner "${partner.id}" is disabled: enable it (which resumes its parked deliveries) before replaying.`,
      [{ location: "body.partner_id", message: "is disabled" }],
    );
  }
}

/**
 * A bulk replay as POST /v1/replays and the console ask for it: the filter checked, then either the
 * dry run's count or a job, recorded and started (should it not start now, the 15-minute cron starts it).
 */
export async function requestBulkReplay(
  env: Env,
  filter: ReplayFilter,
  dryRun: boolean,
): Promise<{ dry_run: true; total: number; sample: string[] } | { dry_run: false; job: ReplayJobRow }> {
  await checkReplayFilter(env.DB, filter);
  const nowMs = Date.now();
  if (dryRun) return { dry_run: true, ...(await dryRunReplay(env.DB, filter, new Date(nowMs).toISOString())) };
  const job = await createReplayJob(env.DB, filter, nowMs);
  await startStepJob(env.REPLAY_JOBS, job.id).catch((error: unknown) =>
    logLine("error", { message: "replay job not started; the cron will", job_id: job.id, error: String(error) }),
  );
  return { dry_run: false, job };
}
