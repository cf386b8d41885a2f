/**
 * REQUEST_LOG consumer: writes the inbound log's records and counts to D1, one `batch()` per queue
 * batch, then acks. Idempotent: records are keyed by request id, counts keep the largest running
 * total. A message that does not parse is kept as a dead letter in the same batch; a failed write
 * retries the whole batch. Its dead-letter queue's consumer does the same and also keeps a
 * dead-letter row, so a log entry that outlived a D1 outage is still written.
 */

import { type InboundRecord, RequestLogMessageSchema, type UnloggedCount } from "../domain/messages";
import { logLine } from "../lib/log";
import type { D1 } from "../storage/d1";
import { deadLetterStatement } from "../storage/d1";
import { countInboundRecordsStatement, countUnloggedStatement } from "../storage/metrics";
import { insertInboundRequestsStatement, upsertUnloggedCountsStatement } from "../storage/requests";
import { retryDelaySeconds } from "./events-consumer";

export function consumeRequestLog(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return processBatch(batch, db, null);
}

export function consumeRequestLogDeadLetters(batch: MessageBatch<unknown>, db: D1): Promise<void> {
  return processBatch(batch, db, "exhausted its retries on the requests queue");
}

async function processBatch(batch: MessageBatch<unknown>, db: D1, deadLetterReason: string | null): Promise<void> {
  const now = new Date().toISOString();
  const statements: D1PreparedStatement[] = [];
  const records: InboundRecord[] = [];
  const counts: UnloggedCount[] = [];
  for (const message of batch.messages) {
    const parsed = RequestLogMessageSchema.safeParse(message.body);
    if (parsed.success) {
      records.push(...parsed.data.records);
      counts.push(...parsed.data.counts);
      if (parsed.data.records.length > 0) statements.push(insertInboundRequestsStatement(db, parsed.data.records));
      if (parsed.data.counts.length > 0) statements.push(upsertUnloggedCountsStatement(db, parsed.data.counts));
    }
    const reason = parsed.success ? deadLetterReason : "invalid request log message";
    if (reason !== null) {
      statements.push(deadLetterStatement(db, batch.queue, message, reason, now));
    }
  }
  // First, before the inserts they count: the metrics count only what this batch records anew.
  if (counts.length > 0) statements.unshift(countUnloggedStatement(db, counts));
  if (records.length > 0) statements.unshift(countInboundRecordsStatement(db, records));
  try {
    if (statements.length > 0) await db.batch(statements);
  } catch (error) {
    logLine("error", {
      message: "request log batch failed; retrying",
      queue: batch.queue,
      size: batch.messages.length,
      error: String(error),
    });
    for (const message of batch.messages) message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    return;
  }
  batch.ackAll();
}
