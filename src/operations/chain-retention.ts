/**
 * History retention for chained events. D1 alone cannot be trusted to say which events retention
 * deleted (a D1 writer can delete an event and insert the record of a run), so before it deletes a
 * conversion's chained events, retention asks the conversion's Durable Object (`cutChain`), which
 * agrees only to a cut it can vouch for by its own clock and keeps it; the proof then accepts that
 * gap and no other. Then one D1 transaction per page records the agreed cuts and deletes up to them.
 *
 * Resumable and idempotent: D1 deletes only after the objects agreed, an agreed cut is kept by the
 * object (asking again changes nothing), and whatever a run did not reach (or an object refused)
 * is still older than the next run's cutoff. A run asks at most MAX_CUTS_PER_RUN objects (Durable
 * Object calls count as subrequests) and logs when more remain.
 */
import type { ConversionObject, CutAnswer } from "../conversions/conversion-object";
import { conversionObjectName } from "../domain/conversion";
import { logLine } from "../lib/log";
import { type ChainCut, type ChainCutKey, chainCutCandidates, chainCutStatements, type D1 } from "../storage/d1";

const PAGE = 200;
const MAX_CUTS_PER_RUN = 5000;
/** Calls to objects in flight at once (a Worker has 6 simultaneous connections; more only queue). */
const CONCURRENCY = 6;

export interface ChainCutter {
  cutChain(cut: ChainCut, before: string): Promise<CutAnswer>;
}

export function objectCutter(conversions: DurableObjectNamespace<ConversionObject>): ChainCutter {
  return {
    cutChain: (cut, before) =>
      conversions
        .getByName(conversionObjectName(cut.network_id, cut.transaction_id, cut.test === 1))
        .cutChain({ seq: cut.seq, hash: cut.hash, before }),
  };
}

export interface ChainRetentionResult {
  /** Conversions whose chains were cut, and the chained events deleted. */
  cut: number;
  events: number;
  /** Conversions whose objects refused (or could not be asked): their events stay for a later run. */
  refused: number;
  /** Whether the run stopped at its budget (candidates may be left for the next run). */
  more: boolean;
}

export async function cutChains(
  db: D1,
  cutter: ChainCutter,
  before: string,
  budget = MAX_CUTS_PER_RUN,
): Promise<ChainRetentionResult> {
  const result: ChainRetentionResult = { cut: 0, events: 0, refused: 0, more: false };
  let after: ChainCutKey | null = null;
  let asked = 0;
  for (;;) {
    if (asked >= budget) {
      result.more = true;
      break;
    }
    const limit = Math.min(PAGE, budget - asked);
    const page = await chainCutCandidates(db, before, after, limit);
    asked += page.length;
    const last = page[page.length - 1];
    if (last) after = [last.network_id, last.transaction_id, last.test];
    const answers = await mapConcurrently(page, CONCURRENCY, (cut) =>
      cutter.cutChain(cut, before).catch((error: unknown) => ({ accepted: false, reason: String(error) })),
    );
    const agreed = page.filter((_, index) => answers[index]?.accepted === true);
    const refusals = page.flatMap((cut, index) => {
      const answer = answers[index];
      return answer && !answer.accepted ? [{ cut, reason: answer.reason }] : [];
    });
    if (refusals.length > 0) {
      result.refused += refusals.length;
      logLine("warn", {
        message: "retention: conversions' objects refused to cut their chains; their events stay in D1",
        count: refusals.length,
        sample: refusals.slice(0, 3).map(({ cut, reason }) => ({ ...cut, reason })),
      });
    }
    if (agreed.length > 0) {
      const [, deleted] = await db.batch(chainCutStatements(db, agreed, before));
      result.cut += agreed.length;
      result.events += deleted?.meta.changes ?? 0;
    }
    if (page.length < limit) break;
  }
  return result;
}

/** `run` over `items`, at most `limit` at once, answers in the items' order. */
export async function mapConcurrently<T, R>(
  items: readonly T[],
  limit: number,
  run: (item: T) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await run(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
