/**
 * CLICKS consumer: writes the clicks of a queue batch to D1 in one `batch()`, then acks. A click
 * is keyed by its click id (`ON CONFLICT DO NOTHING`), so a message delivered twice, or a batch
 * retried after a partial failure, still counts each click once. A message that does not parse
 * is kept as a dead letter; a failed write retries the batch. The dead-letter queue's consumer
 * writes the clicks too (they reach D1 once D1 is back) and keeps a dead-letter row.
 */
import { clickRecord } from "../attribution/clicks";
import { ClickMessageSchema } from "../domain/click";
import { type D1, deadLetterStatement } from "../storage/d1";
import { insertClickStatements } from "../storage/offers";
import { retryDelaySeconds } from "./events-consumer";

export function consumeClicks(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return processBatch(batch, db, null);
}

export function consumeClickDeadLetters(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return processBatch(batch, db, "exhausted its retries on the clicks queue");
}

async function processBatch(batch: MessageBatch<unknown>, db: D1, deadLetterReason: string | null): Promise<void> {
  const now = new Date().toISOString();
  const statements: D1PreparedStatement[] = [];
  for (const message of batch.messages) {
    const parsed = ClickMessageSchema.safeParse(message.body);
    if (parsed.success) statements.push(...insertClickStatements(db, parsed.data.clicks.map(clickRecord), now));
    const reason = parsed.success ? deadLetterReason : "invalid click message";
    if (reason !== null) statements.push(deadLetterStatement(db, batch.queue, message, reason, now));
  }
  try {
    if (statements.length > 0) await db.batch(statements);
  } catch (error) {
    console.error(
      JSON.stringify({
        message: "click batch failed; retrying",
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
