/**
 * EVENTS consumer: records each event in D1 (history row + conversion snapshot) and creates its
 * deliveries (one per matching partner) with one `batch()` per queue batch, then hands the new
 * deliveries to their partners' coordinators (queues/coordinator-handover.ts). Only what a
 * coordinator could not take, or all of them when D1 cannot say whose they are, goes on the
 * DELIVERIES queue instead. Idempotent: history rows are keyed by event id, snapshots only move
 * forward by version, deliveries are unique per (event, partner), and a redelivered batch hands
 * over again the deliveries that are unfinished. A message is acked only after all of that
 * succeeded, and each event's conversion object then gets its receipt. A message that can never
 * be written (it does not parse) is recorded as a dead letter in the same batch.
 *
 * Its dead-letter queue's consumer does the same work and also keeps a dead-letter row, so an
 * event that outlived a D1 outage still reaches D1 and its partners when D1 is back.
 *
 * Before anything is written, the batch goes through the erasures (privacy/in-flight.ts): an
 * identifier erased while its event was on its way is written erased, never as it was.
 */
import {
  attributeBatch,
  attributionRecord,
  deliveryAttribution,
  type EventAttribution,
} from "../attribution/event-attribution";
import { deliveryIdFor, deliveryPayload, notifies, partnerReceives } from "../delivery/partner";
import { type EventMessage, EventMessageSchema } from "../domain/messages";
import type { Partner } from "../domain/partner";
import { logLine } from "../lib/log";
import type { InFlightErasures } from "../privacy/in-flight";
import { type D1, deadLetterStatement, recordEventStatements } from "../storage/d1";
import { insertDeliveryStatement } from "../storage/deliveries";
import { attributionStatements } from "../storage/offers";
import { allPartners } from "../storage/partners";
import { recountConversionsStatements } from "../storage/stats";
import { type Coordinators, handToCoordinators } from "./coordinator-handover";
import { type DeliveriesQueue, enqueueDeliveries } from "./delivery-messages";
import type { OutboxReceipts } from "./outbox-receipts";

const MAX_RETRY_DELAY_SECONDS = 600;

export interface EventsConsumerDeps {
  db: D1;
  coordinators: Coordinators;
  /** What the coordinators could not take goes here (the delivery consumer hands it over later). */
  deliveries: DeliveriesQueue;
  /** Tells the conversions' outboxes which events D1 now holds. */
  receipts: OutboxReceipts;
  /** The key click ids are verified with (lib/keys.ts). */
  clickKey: () => Promise<CryptoKey>;
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
    const written = await writeBatch(batch, deps, deadLetterReason);
    events = written.events;
    await handOverNewDeliveries(deps, written.deliveryIds);
  } catch (error) {
    // D1 batches are transactions and every step is idempotent: the whole batch goes back.
    logLine("error", {
      message: "events batch failed; retrying",
      queue: batch.queue,
      size: batch.messages.length,
      error: String(error),
    });
    for (const message of batch.messages) message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    return;
  }
  await deps.receipts.confirm(events);
  batch.ackAll();
}

/** Writes the batch in one transaction; returns the events it recorded and the ids of their deliveries. */
async function writeBatch(batch: MessageBatch<unknown>, deps: EventsConsumerDeps, deadLetterReason: string | null) {
  const { db } = deps;
  const statements: D1PreparedStatement[] = [];
  const now = new Date().toISOString();
  const parsed = batch.messages.map((message) => ({ message, result: EventMessageSchema.safeParse(message.body) }));
  const received = parsed.flatMap(({ result }) => (result.success ? [result.data] : []));
  const needsPartners = received.some((e) => e.verdict !== "stale");
  const partners = needsPartners ? await allPartners(db) : [];
  // Attributed as received: a click id erased while its event was on its way keeps the verdict it
  // earned (the verdict names the offer and partner, never the id), as one erased later does.
  const attributions = needsPartners
    ? await attributeBatch(db, await deps.clickKey(), received, partners)
    : new Map<string, EventAttribution>();
  const events = await deps.erasures.apply(received);
  const deliveryIds: string[] = [];
  let next = 0;
  for (const { message, result } of parsed) {
    const event = result.success ? events[next++] : undefined;
    if (event) {
      const outcome = attributions.get(event.event_id);
      const record = outcome ? attributionRecord(outcome) : null;
      statements.push(
        ...recordEventStatements(
          db,
          event,
          record ? { payout: record.payout, partner_id: record.attributed_partner_id } : undefined,
          record ?? undefined,
        ),
      );
      if (record) {
        statements.push(
          ...attributionStatements(
            db,
            { ...event, test: event.test === true, version: event.conversion.version },
            record,
          ),
        );
      }
      const told = notifies(event) ? whatPartnersHear(event, outcome) : null;
      if (told) {
        const deliveries = await deliveryStatements(db, told.message, told.outcome, partners, now);
        statements.push(...deliveries.statements);
        deliveryIds.push(...deliveries.ids);
      }
    }
    const reason = result.success
      ? deadLetterReason
      : `invalid event message: ${result.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`;
    if (reason !== null) {
      // A dead-letter row keeps the message as it may be stored: erased, when it was.
      const body = event ? { id: message.id, attempts: message.attempts, body: event } : message;
      statements.push(deadLetterStatement(db, batch.queue, body, reason, now));
    }
  }
  // Last, once the batch's conversions and attributions are written: the roll-ups follow them.
  statements.push(
    ...recountConversionsStatements(
      db,
      events.map((e) => [e.network_id, e.transaction_id, e.test ? 1 : 0] as const),
    ),
  );
  if (statements.length > 0) await db.batch(statements);
  return { events, deliveryIds };
}

type Notifying = EventMessage & { verdict: "accepted" | "updated" };

/**
 * What partners are told of an event, or null for nothing. A pixel carries no secret: partners
 * hear of a pixel-only conversion only when its offer says so (notify_before_confirmation). When
 * the network's own postback then confirms it, partners that heard of the pixel are not told
 * again unless something changed (status or payout); partners that did not hear of it are told
 * now, as of a new conversion.
 */
function whatPartnersHear(
  event: Notifying,
  outcome: EventAttribution | undefined,
): { message: Notifying; outcome: EventAttribution | undefined } | null {
  const early = outcome?.offer?.pixel.notify_before_confirmation === true;
  const as = (message: Notifying) => ({ message, outcome });
  if (event.source === "pixel") return early ? as(event) : null;
  if (event.previous_source !== "pixel") return as(event);
  if (!early) {
    // News to them: nothing was paid before, whatever the pixel's event recorded.
    const payout = outcome?.payout && { ...outcome.payout, previous: null };
    return {
      message: { ...event, verdict: "accepted", previous_status: null },
      outcome: outcome && { ...outcome, payout: payout ?? null },
    };
  }
  const payout = outcome?.payout;
  const credit = outcome?.attribution.partner_id ?? null;
  const creditMoved = outcome?.previous_partner_id != null && outcome.previous_partner_id !== credit;
  const changed =
    creditMoved || event.previous_status !== event.conversion.status || (payout && payout.previous !== payout.amount);
  return changed ? as(event) : null;
}

async function deliveryStatements(
  db: D1,
  message: Notifying,
  outcome: EventAttribution | undefined,
  partners: readonly Partner[],
  now: string,
): Promise<{ statements: D1PreparedStatement[]; ids: string[] }> {
  const payload = deliveryPayload(message, outcome && deliveryAttribution(outcome));
  const routed = { ...message, attributed_partner_id: outcome?.attribution.partner_id ?? null };
  const statements: D1PreparedStatement[] = [];
  const ids: string[] = [];
  for (const partner of partners) {
    if (!partnerReceives(partner, routed)) continue;
    const id = await deliveryIdFor(message.event_id, partner.id);
    ids.push(id);
    statements.push(
      insertDeliveryStatement(db, {
        id,
        partner_id: partner.id,
        // A disabled partner's deliveries wait, parked, until it is enabled again.
        state: partner.status === "active" ? "pending" : "parked",
        payload,
        now,
      }),
    );
  }
  return { statements, ids };
}

/**
 * Hands the batch's deliveries to their coordinators (the unfinished ones: all of them, but on a
 * redelivered batch), and queues what they could not take. Throws when the queue refused what is
 * left: the batch is then retried and hands over what is still unfinished again.
 */
async function handOverNewDeliveries(deps: EventsConsumerDeps, deliveryIds: readonly string[]): Promise<void> {
  let notTaken: readonly string[];
  try {
    notTaken = await handToCoordinators(deps.db, deps.coordinators, deliveryIds, Date.now());
  } catch (error) {
    // A queued id whose delivery was never written (its conversion moved on) is acked as finished.
    logLine("error", {
      message: "could not read the new deliveries to hand over; queueing them",
      error: String(error),
    });
    notTaken = deliveryIds;
  }
  await enqueueDeliveries(deps.deliveries, notTaken);
}
