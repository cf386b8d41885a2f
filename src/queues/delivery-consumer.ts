/**
 * DELIVERIES consumer: hands each delivery to its partner's coordinator (coordinator/
 * partner-coordinator.ts), which makes the attempts in order, at the partner's pace, behind its
 * breaker; then acks. One D1 read per batch finds each delivery's partner, conversion and place,
 * and also the other unfinished deliveries of the same conversion to the same partner, so the
 * coordinator knows the earlier ones even when their own messages come later.
 */

import type { WorkItem } from "../coordinator/partner-coordinator";
import { conversionKeyOf } from "../domain/conversion";
import { DeliveryMessageSchema } from "../domain/messages";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import { deadLetterStatement } from "../storage/d1";
import { deliveriesToCoordinate, markDeadStatement } from "../storage/deliveries";

/** A partner's coordinator, as the consumer uses it. */
export interface Coordinators {
  submit(partnerId: string, items: WorkItem[]): Promise<void>;
}

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

  let rows: Awaited<ReturnType<typeof deliveriesToCoordinate>>;
  try {
    rows = await deliveriesToCoordinate(deps.db, [...new Set(valid.map((v) => v.id))]);
  } catch (error) {
    retryAll(valid, error);
    return;
  }
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
  const partnerOf = new Map(rows.map((row) => [row.id, row.partner_id]));
  const failed = new Set<string>();
  await Promise.all(
    [...byPartner].map(async ([partnerId, items]) => {
      try {
        await deps.coordinators.submit(partnerId, items);
      } catch (error) {
        failed.add(partnerId);
        logLine("error", {
          message: "could not hand deliveries to their coordinator; retrying",
          partner_id: partnerId,
          error: String(error),
        });
      }
    }),
  );
  // A delivery that is finished (or gone) has nothing to hand over; one whose partner's
  // coordinator could not take it comes back.
  for (const { message, id } of valid) {
    const partnerId = partnerOf.get(id);
    if (partnerId !== undefined && failed.has(partnerId))
      message.retry({ delaySeconds: UNEXPECTED_ERROR_RETRY_SECONDS });
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
