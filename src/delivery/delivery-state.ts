/**
 * What one attempt does to its delivery, as a pure function: the partner's answer (or its
 * silence), how many retries the delivery has had and the partner's schedule in; the new state,
 * the attempt's recorded outcome and when to try again out. The consumer records what this says.
 */
import type { DeliveryState } from "../domain/delivery";
import { type AttemptOutcome, classify, nextRetryDelaySeconds } from "./retry-policy";

export interface AfterAttempt {
  state: Extract<DeliveryState, "delivered" | "retrying" | "failed" | "dead" | "parked">;
  /** What the attempt's row says happened. */
  outcome: "delivered" | "retry" | "gone" | "failed" | "dead";
  /** Retries since the last (re)start: the position in the schedule for the next one. */
  retries: number;
  /** When the queue should bring the message back; null once the delivery is finished. */
  retryInSeconds: number | null;
  /** A 410: the partner is gone, so it is disabled and its unfinished deliveries are parked. */
  disablesPartner: boolean;
}

export function afterAttempt(input: {
  outcome: AttemptOutcome;
  retries: number;
  schedule: readonly number[];
  finishedMs: number;
  random?: () => number;
}): AfterAttempt {
  const verdict = classify(input.outcome);
  switch (verdict) {
    case "delivered":
      return {
        state: "delivered",
        outcome: "delivered",
        retries: input.retries,
        retryInSeconds: null,
        disablesPartner: false,
      };
    case "gone":
      return { state: "parked", outcome: "gone", retries: input.retries, retryInSeconds: null, disablesPartner: true };
    case "failed":
      return {
        state: "failed",
        outcome: "failed",
        retries: input.retries,
        retryInSeconds: null,
        disablesPartner: false,
      };
    case "retry": {
      const delay = nextRetryDelaySeconds(input.schedule, input.retries, input.outcome, input.finishedMs, input.random);
      // The schedule is used up: the delivery is dead, and an operator can replay it.
      if (delay === null) {
        return {
          state: "dead",
          outcome: "dead",
          retries: input.retries + 1,
          retryInSeconds: null,
          disablesPartner: false,
        };
      }
      return {
        state: "retrying",
        outcome: "retry",
        retries: input.retries + 1,
        retryInSeconds: delay,
        disablesPartner: false,
      };
    }
    default:
      return verdict satisfies never;
  }
}
