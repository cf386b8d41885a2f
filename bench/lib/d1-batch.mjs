// bench:d1's pure parts (test/tooling/bench.report.test.ts): how many batches each size writes, and
// the table of its rounds, each size beside batch size 1 of the same round.
import { median } from "./stats.mjs";

export const BATCH_SIZES = [1, 10, 50, 100, 500];

/** Batches of `size` events so that each size writes about `events` events in a round (at least 2 batches). */
export const batchesFor = (size, events) => Math.max(2, Math.ceil(events / size));

/**
 * One row per batch size from `runs` (`[{ round, size, events, statements, elapsedMs, rowsWritten }]`):
 * medians over rounds of ms per event, per statement and per batch, events per second, D1 rows
 * written per event, and events per second over batch size 1's in the same round.
 */
export function batchRows(runs, baselineSize = 1) {
  const sizes = [...new Set(runs.map((run) => run.size))].sort((a, b) => a - b);
  const perSecond = (run) => (run.events * 1000) / run.elapsedMs;
  const baseline = new Map(runs.filter((run) => run.size === baselineSize).map((run) => [run.round, perSecond(run)]));
  return sizes.map((size) => {
    const of = runs.filter((run) => run.size === size);
    return {
      size,
      statementsPerBatch: of[0].statements / (of[0].events / size),
      rounds: of.length,
      msPerEvent: median(of.map((run) => run.elapsedMs / run.events)),
      msPerStatement: median(of.map((run) => run.elapsedMs / run.statements)),
      msPerBatch: median(of.map((run) => (run.elapsedMs * size) / run.events)),
      eventsPerSecond: median(of.map(perSecond)),
      rowsWrittenPerEvent: median(of.map((run) => run.rowsWritten / run.events)),
      ratio: median(of.filter((run) => baseline.has(run.round)).map((run) => perSecond(run) / baseline.get(run.round))),
    };
  });
}
