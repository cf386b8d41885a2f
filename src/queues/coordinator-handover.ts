/**
 * Handing deliveries to their partners' coordinators (coordinator/partner-coordinator.ts). The
 * events consumer does it for the deliveries it has just created, the delivery consumer for the
 * DELIVERIES queue's messages; what a coordinator could not take, each caller sends back its own
 * way (the queue, or a retry). One D1 read per hand-over finds each delivery's partner,
 * conversion and place, and also the other unfinished deliveries of the same conversion to the
 * same partner, so the coordinator knows the earlier ones even when they have not reached it yet.
 */

import type { WorkItem } from "../coordinator/partner-coordinator";
import { conversionKeyOf } from "../domain/conversion";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import { deliveriesToCoordinate } from "../storage/deliveries";

/**
 * How long a coordinator has to take its deliveries (it answers in milliseconds). One that does not
 * answer counts as not taking them: the events consumer must not wait on one partner's object with
 * every network's events behind it. Taking them late as well is harmless: a coordinator holds a
 * delivery once however often it is handed over, and attempts it one at a time.
 */
export const SUBMIT_TIMEOUT_MS = 10_000;

/** A partner's coordinator, as the consumers use it. */
export interface Coordinators {
  submit(partnerId: string, items: WorkItem[]): Promise<void>;
}

/**
 * Hands the unfinished deliveries among `ids` to their coordinators; answers the ids whose
 * coordinator could not take them. A finished (or missing) delivery has nothing to hand over and
 * is not among them. Throws when D1 cannot be read: then nothing was handed over.
 */
export async function handToCoordinators(
  db: D1,
  coordinators: Coordinators,
  ids: readonly string[],
  nowMs: number,
): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await deliveriesToCoordinate(db, [...new Set(ids)]);
  const byPartner = new Map<string, WorkItem[]>();
  for (const row of rows) {
    const items = byPartner.get(row.partner_id) ?? [];
    items.push({
      delivery_id: row.id,
      conversion: conversionKeyOf(row.network_id, row.transaction_id, row.test === 1),
      position: row.position,
      due_ms: row.next_attempt_at ? Date.parse(row.next_attempt_at) : nowMs,
      status: row.status,
      fresh: row.attempts === 0 ? 1 : 0,
    });
    byPartner.set(row.partner_id, items);
  }
  const failed = new Set<string>();
  await Promise.all(
    [...byPartner].map(async ([partnerId, items]) => {
      try {
        await withTimeout(coordinators.submit(partnerId, items), SUBMIT_TIMEOUT_MS);
      } catch (error) {
        failed.add(partnerId);
        logLine("error", {
          message: "could not hand deliveries to their coordinator",
          partner_id: partnerId,
          error: String(error),
        });
      }
    }),
  );
  const partnerOf = new Map(rows.map((row) => [row.id, row.partner_id]));
  return ids.filter((id) => {
    const partnerId = partnerOf.get(id);
    return partnerId !== undefined && failed.has(partnerId);
  });
}

async function withTimeout(work: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
