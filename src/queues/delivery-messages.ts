/** Sending delivery messages: one per delivery id, in batches of the queue's limit. */
import type { DeliveryMessage } from "../domain/messages";

const SEND_BATCH_LIMIT = 100;

export type DeliveriesQueue = Pick<Queue<DeliveryMessage>, "sendBatch">;

export async function enqueueDeliveries(queue: DeliveriesQueue, deliveryIds: readonly string[]): Promise<void> {
  for (let i = 0; i < deliveryIds.length; i += SEND_BATCH_LIMIT) {
    await queue.sendBatch(
      deliveryIds
        .slice(i, i + SEND_BATCH_LIMIT)
        .map((delivery_id) => ({ body: { v: 1 as const, delivery_id }, contentType: "json" as const })),
    );
  }
}
