/**
 * EVENTS consumer: records each event in D1 (history row + conversion snapshot) with one
 * `batch()` per queue batch. Idempotent: history rows are keyed by event id and snapshots only
 * move forward by version. A message is acked only after its write committed; a message that can
 * never be written (it does not parse) is recorded as a dead letter in the same batch.
 */
import { type D1, deadLetterStatement, recordEventStatements } from "../storage/d1";
import { EventMessageSchema } from "./messages";

export async function consumeEvents(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  const statements: D1PreparedStatement[] = [];
  const now = new Date().toISOString();
  for (const message of batch.messages) {
    const parsed = EventMessageSchema.safeParse(message.body);
    if (parsed.success) {
      statements.push(...recordEventStatements(db, parsed.data));
    } else {
      statements.push(
        deadLetterStatement(db, {
          id: `${batch.queue}:${message.id}`,
          queue: batch.queue,
          body: JSON.stringify(message.body) ?? "null",
          reason: `invalid event message: ${parsed.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ")}`,
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
    batch.retryAll({ delaySeconds: 5 });
    return;
  }
  batch.ackAll();
}

/** Dead-letter queue consumer: whatever exhausted its retries is kept in D1 for operators. */
export async function consumeDeadLetters(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  const now = new Date().toISOString();
  await db.batch(
    batch.messages.map((message) =>
      deadLetterStatement(db, {
        id: `${batch.queue}:${message.id}`,
        queue: batch.queue,
        body: JSON.stringify(message.body) ?? "null",
        reason: "exhausted its retries",
        attempts: message.attempts,
        created_at: now,
      }),
    ),
  );
  batch.ackAll();
}
