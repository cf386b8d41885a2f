// The bench's arithmetic: medians, percentiles, means and per-round ratios. Every function takes
// plain arrays of numbers and answers NaN for none, so a scenario that measured nothing prints "n/a".

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The nearest-rank percentile: the smallest value with at least p % of the values at or below it. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export const sum = (values) => values.reduce((a, b) => a + b, 0);

export const mean = (values) => (values.length ? sum(values) / values.length : Number.NaN);

export const max = (values) => (values.length ? Math.max(...values) : Number.NaN);

/**
 * The median over rounds of `pick(round)`: each round alternates a scenario with its baseline, so a
 * ratio is taken within a round and only then summarised, which keeps it steady on a noisy machine.
 */
export const medianOf = (rounds, pick) => median(rounds.map(pick));

/** Sizes of the queue batches a consumer received: how many, how many messages, mean, median, max. */
export const batchSummary = (sizes) => ({
  batches: sizes.length,
  messages: sum(sizes),
  mean: mean(sizes),
  median: median(sizes),
  max: max(sizes),
});
