/**
 * DELIVERIES consumer: hands each delivery to its partner's coordinator (queues/coordinator-
 * handover.ts), which makes the attempts in order, at the partner's pace, behind its breaker; then
 * acks. The events consumer hands new deliveries over itself: this queue carries what it could not
 * hand over, and what the stranded sweep, replays and enabling a partner send.
 */

import { DeliveryMessageSchema } from "../domain/messages";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import { deadLetterStatement } from "../storage/d1";
import { markDeadStatement } from "../storage/deliveries";
import { type Coordinators, handToCoordinators } from "./coordinator-handover";

export interface DeliveryConsumerDeps {
  db: D1;
  coordinators: Coordinators;
  now?: () => number;
}

const UNEXPECTED_ERROR_RETRY_SECONDS = 30;

export async function consumeDeliveries(batch: MessageBatch<unknown>, deps: DeliveryConsumerDeps): Promise<void> {
  const nowMs = (deps.now ?? Date.now)();
  const valid: { message: Message<unknown>; id: string }[] = [];
  const invalid: Message<unknown>[] = [];
  for (const message of batch.messages) {
    const parsed = DeliveryMessageSchema.safeParse(message.body);
    if (parsed.success) valid.push({ message, id: parsed.data.delivery_id });
    else invalid.push(message);
  }
  if (invalid.length > 0) {
    const now = new Date(nowMs).toISOString();
    await deps.db.batch(
      invalid.map((m) => deadLetterStatement(deps.db, batch.queue, m, "invalid delivery message", now)),
    );
    for (const message of invalid) message.ack();
  }
  if (valid.length === 0) return;

  let notTaken: Set<string>;
  try {
    notTaken = new Set(
      await handToCoordinators(
        deps.db,
        deps.coordinators,
        valid.map((v) => v.id),
        nowMs,
      ),
    );
  } catch (error) {
    retryAll(valid, error);
    return;
  }
  // One whose partner's coordinator could not take it comes back; a finished (or gone) one is done.
  for (const { message, id } of valid) {
    if (notTaken.has(id)) message.retry({ delaySeconds: UNEXPECTED_ERROR_RETRY_SECONDS });
    else message.ack();
  }
}

function retryAll(valid: { message: Message<unknown>; id: string }[], error: unknown): void {
  // D1 or a bug, not the partner: try the messages again later; never drop them.
  logLine("error", { message: "delivery batch failed unexpectedly; retrying", error: String(error) });
  for (const { message } of valid) message.retry({ delaySeconds: UNEXPECTED_ERROR_RETRY_SECONDS });
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
