/** The delivery state table (domain/delivery.ts) as SQL conditions, for every statement over deliveries. */

import { DELIVERY_MOVES, type DeliveryMove } from "../domain/delivery";

/** The states a move applies to, as SQL (constants from the state table, never input). */
export function from(move: DeliveryMove): string {
  return `state IN (${DELIVERY_MOVES[move].from.map((state) => `'${state}'`).join(", ")})`;
}

/** The one state a move leaves, as SQL. */
export function to(move: DeliveryMove): string {
  const [state, ...others] = DELIVERY_MOVES[move].to;
  if (state === undefined || others.length > 0) throw new Error(`move ${move} does not lead to one state`);
  return `state = '${state}'`;
}

/**
 * The condition of deliveries_replayable_by_partner (migration 0025), word for word: SQLite uses a
 * partial index only for a query that says its condition. Parked deliveries are among them, and a
 * replay selects replayable states only, so saying it changes no result.
 */
export const REPLAYABLE = from("replay");
