/**
 * A background job run by a Durable Object's alarm, a step at a time: bulk replays
 * (operations/replay-object.ts) and reconciliations (reports/reconciliation-object.ts). The object is
 * named by the job's id and keeps only that id and its failures; the job's progress lives in D1.
 *
 * Why an object with an alarm: an alarm is durable (it fires after a restart or a deploy) and the
 * object runs one alarm at a time, so a job makes progress without anyone polling and its steps
 * never overlap. A failed step is tried again with a backoff; after `maxFailures` in a row the job
 * is failed, once D1 takes the record of it.
 */
import { DurableObject } from "cloudflare:workers";
import { logLine } from "./log";

/** `more`: run another step after the pause; `finished`: nothing left; `ended`: no such job, or it ended before. */
export type StepOutcome = "more" | "finished" | "ended";

export interface StepJobPolicy {
  /** What the job is, in log lines. */
  kind: string;
  /** The pause between two steps. */
  pauseMs: number;
  maxFailures: number;
  /** When a failed step is tried again, after `failures` failures in a row. */
  backoffMs(failures: number): number;
}

export abstract class StepJobObject<E = Env> extends DurableObject<E> {
  protected abstract readonly policy: StepJobPolicy;
  /** One step of the job; safe to run again after it died anywhere. */
  protected abstract runStep(jobId: string): Promise<StepOutcome>;
  /** Records why a step failed with the job; `givingUp` fails the job. */
  protected abstract recordFailure(jobId: string, reason: string, givingUp: boolean, now: string): Promise<void>;

  /** Starts the job's runner, or nudges it: the first step runs at once. Idempotent. */
  async start(jobId: string): Promise<void> {
    await this.ctx.storage.put("job_id", jobId);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    const jobId = await this.ctx.storage.get<string>("job_id");
    if (jobId === undefined) return;
    try {
      const outcome = await this.runStep(jobId);
      if (outcome === "more") {
        await this.ctx.storage.put("failures", 0);
        await this.ctx.storage.setAlarm(Date.now() + this.policy.pauseMs);
      } else {
        await this.ctx.storage.deleteAll();
      }
    } catch (error) {
      await this.stepFailed(jobId, error);
    }
  }

  /** Tries the step again later; after too many failures in a row, fails the job (once D1 takes it). */
  private async stepFailed(jobId: string, error: unknown): Promise<void> {
    const failures = ((await this.ctx.storage.get<number>("failures")) ?? 0) + 1;
    await this.ctx.storage.put("failures", failures);
    const givingUp = failures >= this.policy.maxFailures;
    logLine("error", {
      message: `${this.policy.kind} step failed`,
      job_id: jobId,
      failures,
      giving_up: givingUp,
      error: String(error),
    });
    const reason = `step failed ${failures} time${failures === 1 ? "" : "s"} in a row: ${String(error)}`;
    const recorded = await this.recordFailure(jobId, reason, givingUp, new Date().toISOString()).then(
      () => true,
      () => false,
    );
    if (givingUp && recorded) {
      await this.ctx.storage.deleteAll();
      return;
    }
    await this.ctx.storage.setAlarm(Date.now() + this.policy.backoffMs(failures));
  }
}

/** What starts a job's runner; `start` is idempotent. */
export interface StepJobRunners {
  getByName(name: string): { start(jobId: string): Promise<void> };
}

/** A job's runner is its Durable Object, named by the job's id. */
export function startStepJob(runners: StepJobRunners, jobId: string): Promise<void> {
  return runners.getByName(jobId).start(jobId);
}

/** Jobs untouched this long are nudged by the cron (a runner never started, or an alarm lost). */
const STALLED_AFTER_MS = 10 * 60_000;
const NUDGES_PER_RUN = 50;

/**
 * The cron's safety net: starts the runner of every unfinished job that has not moved for a while;
 * `stalled` answers their ids, unfinished and untouched since the time it is given.
 */
export async function resumeStalledJobs(
  stalled: (before: string, limit: number) => Promise<string[]>,
  runners: StepJobRunners,
  nowMs: number,
  kind: string,
): Promise<string[]> {
  const ids = await stalled(new Date(nowMs - STALLED_AFTER_MS).toISOString(), NUDGES_PER_RUN);
  for (const id of ids) await startStepJob(runners, id);
  if (ids.length > 0) logLine("warn", { message: `restarted stalled ${kind} jobs`, jobs: ids });
  return ids;
}
