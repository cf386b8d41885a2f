/**
 * EVENTS consumer: records each event in D1 (history row + conversion snapshot) with one
 * `batch()` per queue batch. Idempotent: history rows are keyed by event id and snapshots only
 * move forward by version. A message is acked only after its write committed; a message that can
 * never be written (it does not parse) is recorded as a dead letter in the same batch.
 *
 * Its dead-letter queue's consumer does the same write and also keeps a dead-letter row, so an
 * event that outlived D1's outage still reaches D1 when D1 is back, and an operator sees it passed
 * through the DLQ.
 */
import { type D1, deadLetterStatement, recordEventStatements } from "../storage/d1";
import { EventMessageSchema } from "./messages";

const MAX_RETRY_DELAY_SECONDS = 600;

/** 5 s, 10 s, 20 s … capped at 10 min: rides out a D1 outage without hammering it. */
export function retryDelaySeconds(attempts: number): number {
  return Math.min(5 * 2 ** Math.max(0, attempts - 1), MAX_RETRY_DELAY_SECONDS);
}

export function consumeEvents(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return writeBatch(batch, db, null);
}

export function consumeDeadLetters(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return writeBatch(batch, db, "exhausted its retries on the events queue");
}

async function writeBatch(batch: MessageBatch<unknown>, db: D1, deadLetterReason: string | null): Promise<void> {
  const statements: D1PreparedStatement[] = [];
  const now = new Date().toISOString();
  for (const message of batch.messages) {
    const parsed = EventMessageSchema.safeParse(message.body);
    if (parsed.success) statements.push(...recordEventStatements(db, parsed.data));
    const reason = parsed.success
      ? deadLetterReason
      : `invalid event message: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`;
    if (reason !== null) {
      statements.push(
        deadLetterStatement(db, {
          id: `${batch.queue}:${message.id}`,
          queue: batch.queue,
          body: JSON.stringify(message.body) ?? "null",
          reason,
          attempts: message.attempts,
          created_at: now,
        }),
      );
    }
  }
  try {
    if (statements.length > 0) await db.batch(statements);
  } catch (error) {
    // The batch is one transaction: nothing of it was written, so every message goes back.
    console.error(
      JSON.stringify({
        message: "events batch write failed; retrying",
        queue: batch.queue,
        size: batch.messages.length,
        error: String(error),
      }),
    );
    for (const message of batch.messages) message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    return;
  }
  batch.ackAll();
}
