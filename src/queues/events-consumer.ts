/**
 * EVENTS consumer: records each event in D1 (history row + conversion snapshot) and creates its
 * deliveries (one per matching partner) with one `batch()` per queue batch, then sends one
 * DELIVERIES message per new delivery. Idempotent: history rows are keyed by event id, snapshots
 * only move forward by version, deliveries are unique per (event, partner), and a redelivered
 * batch re-sends the messages of deliveries that were never attempted. A message is acked only
 * after all of that succeeded, and each event's conversion object then gets its receipt. A message
 * that can never be written (it does not parse) is recorded as a dead letter in the same batch.
 *
 * Its dead-letter queue's consumer does the same work and also keeps a dead-letter row, so an
 * event that outlived a D1 outage still reaches D1 and its partners when D1 is back.
 *
 * Before anything is written, the batch goes through the erasures (privacy/in-flight.ts): an
 * identifier erased while its event was on its way is written erased, never as it was.
 */
import { deliveryIdFor, deliveryPayload, notifies, partnerReceives } from "../delivery/partner";
import { type EventMessage, EventMessageSchema } from "../domain/messages";
import type { Partner } from "../domain/partner";
import type { InFlightErasures } from "../privacy/in-flight";
import { type D1, deadLetterStatement, recordEventStatements } from "../storage/d1";
import { insertDeliveryStatement, unsentDeliveryIds } from "../storage/deliveries";
import { allPartners } from "../storage/partners";
import { type DeliveriesQueue, enqueueDeliveries } from "./delivery-messages";
import type { OutboxReceipts } from "./outbox-receipts";

const MAX_RETRY_DELAY_SECONDS = 600;

export interface EventsConsumerDeps {
  db: D1;
  deliveries: DeliveriesQueue;
  /** Tells the conversions' outboxes which events D1 now holds. */
  receipts: OutboxReceipts;
  /** Erases, from the batch, values erased after their events were received. */
  erasures: InFlightErasures;
}

/** 5 s, 10 s, 20 s … capped at 10 min: rides out a D1 outage without hammering it. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(5 * 2 ** Math.max(0, attempts - 1), MAX_RETRY_DELAY_SECONDS);
}

export function consumeEvents(batch: MessageBatch<unknown>, deps: EventsConsumerDeps): Promise<void> {
  return processBatch(batch, deps, null);
}

export function consumeDeadLetters(batch: MessageBatch<unknown>, deps: EventsConsumerDeps): Promise<void> {
  return processBatch(batch, deps, "exhausted its retries on the events queue");
}

async function processBatch(
  batch: MessageBatch<unknown>,
  deps: EventsConsumerDeps,
  deadLetterReason: string | null,
): Promise<void> {
  let events: EventMessage[];
  try {
    events = await writeBatch(batch, deps, deadLetterReason);
    await enqueueNewDeliveries(deps, events);
  } catch (error) {
    // D1 batches are transactions and every step is idempotent: the whole batch goes back.
    console.error(
      JSON.stringify({
        message: "events batch failed; retrying",
        queue: batch.queue,
        size: batch.messages.length,
        error: String(error),
      }),
    );
    for (const message of batch.messages) message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    return;
  }
  await deps.receipts.confirm(events);
  batch.ackAll();
}

/** Writes the batch in one transaction; returns the events it recorded. */
async function writeBatch(batch: MessageBatch<unknown>, deps: EventsConsumerDeps, deadLetterReason: string | null) {
  const { db } = deps;
  const statements: D1PreparedStatement[] = [];
  const now = new Date().toISOString();
  const parsedMessages = batch.messages.map((message) => ({
    message,
    parsed: EventMessageSchema.safeParse(message.body),
  }));
  const events = await deps.erasures.apply(
    parsedMessages.flatMap(({ parsed }) => (parsed.success ? [parsed.data] : [])),
  );
  let next = 0;
  let partners: Partner[] | null = null;
  for (const { message, parsed } of parsedMessages) {
    const event = parsed.success ? events[next++] : undefined;
    if (event) {
      statements.push(...recordEventStatements(db, event));
      if (notifies(event)) {
        partners ??= await allPartners(db);
        statements.push(...(await deliveryStatements(db, event, partners, now)));
      }
    }
    const reason = parsed.success
      ? deadLetterReason
      : `invalid event message: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`;
    if (reason !== null) {
      // A dead-letter row keeps the message as it may be stored: erased, when it was.
      const body = event ? { id: message.id, attempts: message.attempts, body: event } : message;
      statements.push(deadLetterStatement(db, batch.queue, body, reason, now));
    }
  }
  if (statements.length > 0) await db.batch(statements);
  return events;
}

async function deliveryStatements(
  db: D1,
  message: EventMessage & { verdict: "accepted" | "updated" },
  partners: readonly Partner[],
  now: string,
): Promise<D1PreparedStatement[]> {
  const payload = deliveryPayload(message);
  const statements: D1PreparedStatement[] = [];
  for (const partner of partners) {
    if (!partnerReceives(partner, message)) continue;
    statements.push(
      insertDeliveryStatement(db, {
        id: await deliveryIdFor(message.event_id, partner.id),
        partner_id: partner.id,
        // A disabled partner's deliveries wait, parked, until it is enabled again.
        state: partner.status === "active" ? "pending" : "parked",
        payload,
        now,
      }),
    );
  }
  return statements;
}

async function enqueueNewDeliveries(deps: EventsConsumerDeps, events: readonly EventMessage[]): Promise<void> {
  const ids = await unsentDeliveryIds(
    deps.db,
    events.filter(notifies).map((e) => e.event_id),
  );
  await enqueueDeliveries(deps.deliveries, ids);
}
