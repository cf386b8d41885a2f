/**
 * ReplayJobObject: the runner of one bulk replay job, named by the job's id. Its alarm runs one
 * step (operations/replays.ts), then sets itself REPLAY_STEP_PAUSE_MS later, until the job is
 * finished; the job's progress lives in D1, the object keeps only the job's id and its failures.
 *
 * Why an object with an alarm: an alarm is durable (it fires after a restart or a deploy) and the
 * object runs one alarm at a time, so a job makes progress without anyone polling and its steps
 * never overlap. A failed step is tried again with a backoff; after REPLAY_MAX_STEP_FAILURES in a
 * row the job is failed (re-armed deliveries whose messages were not sent are then re-queued by the
 * sweep of stranded deliveries).
 */
import { DurableObject } from "cloudflare:workers";
import { REPLAY_MAX_STEP_FAILURES, REPLAY_STEP_PAUSE_MS, replayBackoffMs } from "../domain/replay";
import { recordStepError } from "../storage/replays";
import { runReplayStep } from "./replays";

export class ReplayJobObject extends DurableObject<Env> {
  /** Starts the job's runner, or nudges it: the first step runs at once. Idempotent. */
  async start(jobId: string): Promise<void> {
    await this.ctx.storage.put("job_id", jobId);
    if ((await this.ctx.storage.getAlarm()) === null) await this.ctx.storage.setAlarm(Date.now());
  }

  override async alarm(): Promise<void> {
    const jobId = await this.ctx.storage.get<string>("job_id");
    if (jobId === undefined) return;
    try {
      const outcome = await runReplayStep({ db: this.env.DB, deliveries: this.env.DELIVERIES }, jobId);
      if (outcome === "more") {
        await this.ctx.storage.put("failures", 0);
        await this.ctx.storage.setAlarm(Date.now() + REPLAY_STEP_PAUSE_MS);
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
    const givingUp = failures >= REPLAY_MAX_STEP_FAILURES;
    console.error(
      JSON.stringify({
        message: "replay step failed",
        job_id: jobId,
        failures,
        giving_up: givingUp,
        error: String(error),
      }),
    );
    const reason = `step failed ${failures} time${failures === 1 ? "" : "s"} in a row: ${String(error)}`;
    const recorded = await recordStepError(this.env.DB, jobId, reason, givingUp, new Date().toISOString()).then(
      () => true,
      () => false,
    );
    if (givingUp && recorded) {
      await this.ctx.storage.deleteAll();
      return;
    }
    await this.ctx.storage.setAlarm(Date.now() + replayBackoffMs(failures));
  }
}
