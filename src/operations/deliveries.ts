/**
 * Replaying one delivery, for the API route and the console's Replay button alike: back to pending
 * with its id kept, and its DELIVERIES message sent; a clear refusal when it cannot be replayed.
 */
import { ProblemError } from "../errors";
import { type DeliveriesQueue, enqueueDeliveries } from "../queues/delivery-messages";
import type { D1 } from "../storage/d1";
import { type DeliveryRow, getDelivery, replayDelivery } from "../storage/deliveries";
import { getPartner } from "../storage/partners";

export function deliveryNotFound(id: string): ProblemError {
  return new ProblemError("not_found", `No delivery "${id}".`, [
    { location: "path.delivery_id", message: "not found" },
  ]);
}

/** Replays a failed, dead or parked delivery of an active partner; throws a problem otherwise. */
export async function replayOneDelivery(
  deps: { db: D1; deliveries: DeliveriesQueue },
  deliveryId: string,
  now = new Date().toISOString(),
): Promise<DeliveryRow> {
  const replayed = await replayDelivery(deps.db, deliveryId, now);
  if (!replayed) {
    const { delivery } = await getDelivery(deps.db, deliveryId);
    if (!delivery) throw deliveryNotFound(deliveryId);
    const partner = await getPartner(deps.db, delivery.partner_id);
    if (partner?.status !== "active") {
      throw new ProblemError(
        "partner_disabled",
        `The partner of delivery "${deliveryId}" is ${partner ? "disabled: enable it first" : "deleted"}.`,
        [{ location: "path.delivery_id", message: "its partner is not active" }],
      );
    }
    throw new ProblemError(
      "invalid_state",
      `Delivery "${deliveryId}" is ${delivery.state}; only failed, dead or parked deliveries can be replayed.`,
      [{ location: "path.delivery_id", message: `is ${delivery.state}` }],
    );
  }
  await enqueueDeliveries(deps.deliveries, [replayed.id]);
  return replayed;
}
