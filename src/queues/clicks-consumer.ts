/**
 * CLICKS consumer: writes the clicks of a queue batch to D1 in one `batch()`, then acks. A click
 * is keyed by its click id (`ON CONFLICT DO NOTHING`), so a message delivered twice, or a batch
 * retried after a partial failure, still counts each click once; a click erased since
 * (docs/privacy.md) is not written again, since its row no longer holds its id. A message that does
 * not parse is kept as a dead letter; a failed write retries the batch. The dead-letter queue's
 * consumer writes the clicks too (they reach D1 once D1 is back) and keeps a dead-letter row that
 * names the clicks, never what they told of the visitor (User-Agent, sub ids, address).
 */
import { clickRecord } from "../attribution/clicks";
import { ClickMessageSchema, type ClickSeen } from "../domain/click";
import { identifierDigest } from "../lib/identifier-hash";
import { logLine } from "../lib/log";
import { type D1, deadLetterStatement } from "../storage/d1";
import { erasuresOf } from "../storage/erasures";
import { countClicksStatement } from "../storage/metrics";
import { insertClickStatements } from "../storage/offers";
import { countNewClicksStatement, recountClickConversionsStatements } from "../storage/stats";
import { retryDelaySeconds } from "./events-consumer";

/** The identifier-hash key (lib/keys.ts): an erased click is known by its digest. */
export type IdentifierKey = () => Promise<CryptoKey>;

export function consumeClicks(batch: MessageBatch<unknown>, db: D1, key: IdentifierKey): Promise<void> {
  return processBatch(batch, db, key, null);
}

export function consumeClickDeadLetters(batch: MessageBatch<unknown>, db: D1, key: IdentifierKey): Promise<void> {
  return processBatch(batch, db, key, "exhausted its retries on the clicks queue");
}

async function processBatch(
  batch: MessageBatch<unknown>,
  db: D1,
  key: IdentifierKey,
  deadLetterReason: string | null,
): Promise<void> {
  const now = new Date().toISOString();
  const statements: D1PreparedStatement[] = [];
  try {
    const parsed = batch.messages.map((message) => ({ message, result: ClickMessageSchema.safeParse(message.body) }));
    const erased = await erasedClicks(
      db,
      key,
      parsed.flatMap(({ result }) => (result.success ? result.data.clicks : [])),
    );
    const recorded: ReturnType<typeof clickRecord>[] = [];
    for (const { message, result } of parsed) {
      if (result.success) {
        const kept = result.data.clicks.filter((seen) => !erased.has(seen.click_id)).map(clickRecord);
        recorded.push(...kept);
        statements.push(...insertClickStatements(db, kept, now));
      }
      const reason = result.success ? deadLetterReason : "invalid click message";
      if (reason === null) continue;
      // Which clicks, not what they told: the clicks themselves are in D1 now.
      const body = result.success
        ? { id: message.id, attempts: message.attempts, body: { v: 1, clicks: result.data.clicks.map(named) } }
        : message;
      statements.push(deadLetterStatement(db, batch.queue, body, reason, now));
    }
    if (recorded.length > 0) {
      // Counted before they are written (a click already in D1 is not counted again); then their
      // conversions, which take their country, device and sub1 from them, are recounted.
      statements.unshift(countClicksStatement(db, recorded), ...countNewClicksStatement(db, recorded));
      statements.push(...recountClickConversionsStatements(db, [...new Set(recorded.map((c) => c.click_id))]));
    }
    if (statements.length > 0) await db.batch(statements);
  } catch (error) {
    logLine("error", {
      message: "click batch failed; retrying",
      queue: batch.queue,
      size: batch.messages.length,
      error: String(error),
    });
    for (const message of batch.messages) message.retry({ delaySeconds: retryDelaySeconds(message.attempts) });
    return;
  }
  batch.ackAll();
}

function named(seen: ClickSeen) {
  return { click_id: seen.click_id, offer_id: seen.offer_id, partner_id: seen.partner_id, clicked_at: seen.clicked_at };
}

/** The click ids of `clicks` that an erasure named: one read for the batch. */
async function erasedClicks(db: D1, key: IdentifierKey, clicks: readonly ClickSeen[]): Promise<Set<string>> {
  if (clicks.length === 0) return new Set();
  const hmacKey = await key();
  const digests = new Map<string, string>();
  for (const { click_id } of clicks) digests.set(await identifierDigest(hmacKey, "click_id", click_id), click_id);
  const erasures = await erasuresOf(db, [...digests.keys()]);
  return new Set(erasures.flatMap((row) => (row.kind === "click_id" ? [digests.get(row.identifier_hash) ?? ""] : [])));
}
