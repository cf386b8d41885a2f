/**
 * ReconciliationJobObject: the runner of one reconciliation's diff, named by its id (lib/step-job.ts).
 * Each alarm runs a few steps of reconciliation-job.ts back to back and sets the next at once, until
 * both sides are walked; failed steps back off like a replay's, and too many in a row fail the job.
 */
import { REPLAY_MAX_STEP_FAILURES, replayBackoffMs } from "../domain/replay";
import { StepJobObject, type StepOutcome } from "../lib/step-job";
import { recordReconciliationError } from "../storage/reconciliations";
import { runReconciliationSteps } from "./reconciliation-job";

export class ReconciliationJobObject extends StepJobObject {
  protected readonly policy = {
    kind: "reconciliation",
    pauseMs: 0,
    maxFailures: REPLAY_MAX_STEP_FAILURES,
    backoffMs: replayBackoffMs,
  };

  protected runStep(id: string): Promise<StepOutcome> {
    return runReconciliationSteps({ db: this.env.DB }, id);
  }

  protected recordFailure(id: string, reason: string, givingUp: boolean, now: string): Promise<void> {
    return recordReconciliationError(this.env.DB, id, reason, givingUp, now);
  }
}
