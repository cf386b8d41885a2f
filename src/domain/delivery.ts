/**
 * A delivery's states and every way one changes: the one table the delivery consumer, the SQL and
 * the admin API follow (the decision after an attempt is delivery/delivery-state.ts).
 */

export const DELIVERY_STATES = ["pending", "retrying", "delivered", "failed", "dead", "parked", "superseded"] as const;
export type DeliveryState = (typeof DELIVERY_STATES)[number];

/** States a delivery is still moving in: a consumer may take it for an attempt. */
export const UNFINISHED_STATES = ["pending", "retrying"] as const satisfies readonly DeliveryState[];

/** Whether a delivery in `state` is still moving (UNFINISHED_STATES), so may be attempted. */
export function isUnfinished(state: DeliveryState): boolean {
  return (UNFINISHED_STATES as readonly DeliveryState[]).includes(state);
}
/** States an operator can replay (back to pending, keeping the delivery's id). */
export const REPLAYABLE_STATES = ["failed", "dead", "parked", "superseded"] as const satisfies readonly DeliveryState[];

/** Every move, from the states it applies to, to the state it leaves. */
export const DELIVERY_MOVES = {
  /** An attempt was made: its outcome decides (delivery/delivery-state.ts). */
  attempt: { from: UNFINISHED_STATES, to: ["delivered", "retrying", "failed", "dead", "parked"] },
  /** Its partner was disabled (by an operator, a 410 or the cron): it waits. */
  park: { from: UNFINISHED_STATES, to: ["parked"] },
  /** Its partner was enabled again. */
  resume: { from: ["parked"], to: ["pending"] },
  /** An operator replays it. */
  replay: { from: REPLAYABLE_STATES, to: ["pending"] },
  /**
   * Its partner's coordinator sent a newer state of its conversion instead (a coalescing partner),
   * or a newer one had already been delivered when it came: sending it would tell the partner
   * something older than what it knows.
   */
  supersede: { from: UNFINISHED_STATES, to: ["superseded"] },
  /** Its queue message exhausted the queue's retries, or its partner no longer exists. */
  giveUp: { from: UNFINISHED_STATES, to: ["dead"] },
} as const satisfies Record<string, { from: readonly DeliveryState[]; to: readonly DeliveryState[] }>;

export type DeliveryMove = keyof typeof DELIVERY_MOVES;

/** Whether `move` may take a delivery from `from` to `to`. */
export function canMove(move: DeliveryMove, from: DeliveryState, to: DeliveryState): boolean {
  const { from: sources, to: targets } = DELIVERY_MOVES[move];
  return (sources as readonly DeliveryState[]).includes(from) && (targets as readonly DeliveryState[]).includes(to);
}
