/**
 * DELIVERIES consumer: one attempt per message (delivery/attempt.ts), then an ack, or a retry on
 * the partner's schedule. Messages of one batch run in parallel, so a slow partner holds up only
 * its own requests.
 */

import { type AttemptDeps, attemptDelivery } from "../delivery/attempt";
import { DeliveryMessageSchema } from "../domain/messages";
import type { D1 } from "../storage/d1";
import { deadLetterStatement } from "../storage/d1";
import { markDeadStatement } from "../storage/deliveries";

export type DeliveryConsumerDeps = AttemptDeps;

const UNEXPECTED_ERROR_RETRY_SECONDS = 30;

export async function consumeDeliveries(batch: MessageBatch<unknown>, deps: DeliveryConsumerDeps): Promise<void> {
  await Promise.all(batch.messages.map((message) => processMessage(batch.queue, message, deps)));
}

async function processMessage(queue: string, message: Message<unknown>, deps: DeliveryConsumerDeps): Promise<void> {
  const parsed = DeliveryMessageSchema.safeParse(message.body);
  try {
    if (!parsed.success) {
      const now = new Date((deps.now ?? Date.now)()).toISOString();
      await deps.db.batch([deadLetterStatement(deps.db, queue, message, "invalid delivery message", now)]);
      message.ack();
      return;
    }
    const { retryInSeconds: retryIn } = await attemptDelivery(parsed.data.delivery_id, deps);
    if (retryIn === null) message.ack();
    else message.retry({ delaySeconds: retryIn });
  } catch (error) {
    // D1 or a bug, not the partner: try the message again later; never drop it.
    console.error(
      JSON.stringify({
        message: "delivery attempt failed unexpectedly; retrying",
        delivery_id: parsed.success ? parsed.data.delivery_id : null,
        error: String(error),
      }),
    );
    message.retry({ delaySeconds: UNEXPECTED_ERROR_RETRY_SECONDS });
  }
}

/** DELIVERIES dead-letter queue: whatever exhausted the queue's own retries is dead and recorded. */
export async function consumeDeliveryDeadLetters(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  const now = new Date().toISOString();
  const statements: D1PreparedStatement[] = [];
  for (const message of batch.messages) {
    const parsed = DeliveryMessageSchema.safeParse(message.body);
    if (parsed.success) {
      statements.push(
        markDeadStatement(db, parsed.data.delivery_id, "its queue message exhausted the queue's retries", now),
      );
    }
    statements.push(
      deadLetterStatement(db, batch.queue, message, "exhausted its retries on the deliveries queue", now),
    );
  }
  await db.batch(statements);
  batch.ackAll();
}
