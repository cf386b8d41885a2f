/**
 * The delivery state machine, without D1: what one attempt does to its delivery, and the table of
 * moves the SQL follows (test/delivery.consumer.test.ts runs the same through the real queue and D1).
 */
import { describe, expect, it } from "vitest";
import { afterAttempt } from "../src/delivery/delivery-state";
import type { AttemptOutcome } from "../src/delivery/retry-policy";
import {
  canMove,
  DELIVERY_MOVES,
  DELIVERY_STATES,
  type DeliveryState,
  REPLAYABLE_STATES,
  UNFINISHED_STATES,
} from "../src/domain/delivery";

const NOW = Date.UTC(2026, 11, 2, 12, 0, 0);
const SCHEDULE = [5, 300, 1800];
const response = (status: number, retryAfter: string | null = null): AttemptOutcome => ({
  kind: "response",
  status,
  retryAfter,
});

function outcomeOf(outcome: AttemptOutcome, retries = 0) {
  return afterAttempt({ outcome, retries, schedule: SCHEDULE, finishedMs: NOW, random: () => 0.5 });
}

describe("after an attempt", () => {
  it.each([200, 201, 204, 299])("delivers on %i", (status) => {
    expect(outcomeOf(response(status))).toEqual({
      state: "delivered",
      outcome: "delivered",
      retries: 0,
      retryInSeconds: null,
      disablesPartner: false,
    });
  });

  it.each([
    ["a 500", response(500)],
    ["a 503", response(503)],
    ["a 429", response(429)],
    ["a 408", response(408)],
    ["a 425", response(425)],
    ["a timeout", { kind: "timeout" } as const],
    ["a network error", { kind: "network", error: "connection refused" } as const],
  ])("retries on %s at the schedule's next delay, counting the retry", (_, outcome) => {
    expect(outcomeOf(outcome)).toEqual({
      state: "retrying",
      outcome: "retry",
      retries: 1,
      retryInSeconds: 5,
      disablesPartner: false,
    });
    expect(outcomeOf(outcome, 1).retryInSeconds).toBe(300);
  });

  it("honours a longer Retry-After, never a shorter one", () => {
    expect(outcomeOf(response(503, "120")).retryInSeconds).toBe(120);
    expect(outcomeOf(response(503, "1"), 1).retryInSeconds).toBe(300);
  });

  it("gives up once the schedule is used up: dead, and the attempt says so", () => {
    expect(outcomeOf(response(500), SCHEDULE.length)).toEqual({
      state: "dead",
      outcome: "dead",
      retries: SCHEDULE.length + 1,
      retryInSeconds: null,
      disablesPartner: false,
    });
  });

  it("parks the delivery and disables the partner on a 410", () => {
    expect(outcomeOf(response(410))).toEqual({
      state: "parked",
      outcome: "gone",
      retries: 0,
      retryInSeconds: null,
      disablesPartner: true,
    });
  });

  it.each([301, 302, 400, 401, 403, 404, 422])("fails at once on %i, without retrying", (status) => {
    expect(outcomeOf(response(status), 2)).toEqual({
      state: "failed",
      outcome: "failed",
      retries: 2,
      retryInSeconds: null,
      disablesPartner: false,
    });
  });

  it("only ever leads where the attempt move may go", () => {
    const outcomes: AttemptOutcome[] = [
      response(200),
      response(500),
      response(410),
      response(404),
      { kind: "timeout" },
    ];
    for (const outcome of outcomes) {
      for (const retries of [0, SCHEDULE.length]) {
        const { state } = outcomeOf(outcome, retries);
        expect(canMove("attempt", "pending", state), `${JSON.stringify(outcome)} → ${state}`).toBe(true);
      }
    }
  });
});

describe("the moves", () => {
  it("name only real states", () => {
    for (const [move, { from, to }] of Object.entries(DELIVERY_MOVES)) {
      for (const state of [...from, ...to]) expect(DELIVERY_STATES, `${move}: ${state}`).toContain(state);
    }
  });

  it("never move a delivered delivery", () => {
    for (const move of Object.keys(DELIVERY_MOVES) as (keyof typeof DELIVERY_MOVES)[]) {
      for (const to of DELIVERY_STATES) expect(canMove(move, "delivered", to), `${move} → ${to}`).toBe(false);
    }
  });

  it("replay only what failed, died or was parked, and back to pending", () => {
    for (const from of DELIVERY_STATES) {
      const replayable = (REPLAYABLE_STATES as readonly DeliveryState[]).includes(from);
      expect(canMove("replay", from, "pending"), from).toBe(replayable);
    }
    expect(canMove("replay", "dead", "retrying")).toBe(false);
  });

  it("attempt, park and give up only what is still moving", () => {
    for (const from of DELIVERY_STATES) {
      const unfinished = (UNFINISHED_STATES as readonly DeliveryState[]).includes(from);
      expect(canMove("park", from, "parked"), from).toBe(unfinished);
      expect(canMove("giveUp", from, "dead"), from).toBe(unfinished);
      expect(canMove("attempt", from, "delivered"), from).toBe(unfinished);
    }
    expect(canMove("resume", "parked", "pending")).toBe(true);
    expect(canMove("resume", "failed", "pending")).toBe(false);
  });
});
