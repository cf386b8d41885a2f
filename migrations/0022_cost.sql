-- Issue 16, what a million conversions cost: fewer rows written per conversion.

-- Each partner's delivery-attempt counters for GET /metrics (src/storage/metrics.ts) in one row: a
-- JSON object from `[name, ...labels]` (the metric row's name and label values, as metric_counters
-- keeps them) to its value, merged by adding. One row written per attempt instead of five. Counts
-- from before stay in metric_counters; /metrics adds the two.
CREATE TABLE metric_attempt_counters (
  partner_id TEXT PRIMARY KEY,
  counts TEXT NOT NULL
) WITHOUT ROWID;

