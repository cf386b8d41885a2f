/**
 * ReplayJobObject: the runner of one bulk replay job, named by the job's id (lib/step-job.ts). Its
 * alarm runs one step (operations/replays.ts), then sets itself REPLAY_STEP_PAUSE_MS later, until
 * the job is finished. After REPLAY_MAX_STEP_FAILURES failed steps in a row the job is failed
 * (re-armed deliveries whose messages were not sent are then re-queued by the sweep of stranded
 * deliveries).
 */
import { REPLAY_MAX_STEP_FAILURES, REPLAY_STEP_PAUSE_MS, replayBackoffMs } from "../domain/replay";
import { StepJobObject, type StepOutcome } from "../lib/step-job";
import { recordStepError } from "../storage/replays";
import { runReplayStep } from "./replays";

export class ReplayJobObject extends StepJobObject {
  protected readonly policy = {
    kind: "replay",
    pauseMs: REPLAY_STEP_PAUSE_MS,
    maxFailures: REPLAY_MAX_STEP_FAILURES,
    backoffMs: replayBackoffMs,
  };

  protected runStep(jobId: string): Promise<StepOutcome> {
    return runReplayStep({ db: this.env.DB, deliveries: this.env.DELIVERIES }, jobId);
  }

  protected recordFailure(jobId: string, reason: string, givingUp: boolean, now: string): Promise<void> {
    return recordStepError(this.env.DB, jobId, reason, givingUp, now);
  }
}
