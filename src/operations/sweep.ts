/**
 * Cron: the safety net behind "every accepted event reaches every partner". A delivery that should
 * be moving but has had no attempt for DELIVERY_SWEEP_AFTER_SECONDS (its message was lost with a crashed
 * Worker, or never sent) is queued again. An extra message is harmless: its partner's coordinator holds a delivery once however often it is handed over.
 */

import { logLine } from "../lib/log";
import { type DeliveriesQueue, enqueueDeliveries } from "../queues/delivery-messages";
import type { D1 } from "../storage/d1";
import { takeStrandedDeliveries } from "../storage/deliveries";

const SWEEP_LIMIT = 1000;

export async function requeueStrandedDeliveries(
  db: D1,
  queue: DeliveriesQueue,
  nowMs: number,
  strandedAfterMs: number,
): Promise<string[]> {
  const ids = await takeStrandedDeliveries(
    db,
    new Date(nowMs - strandedAfterMs).toISOString(),
    new Date(nowMs).toISOString(),
    SWEEP_LIMIT,
  );
  await enqueueDeliveries(queue, ids);
  if (ids.length > 0) logLine("warn", { message: "re-queued stranded deliveries", count: ids.length });
  return ids;
}
