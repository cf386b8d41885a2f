-- Counters for GET /metrics (docs/monitoring.md, src/domain/metrics.ts): one row per metric and
-- label set, added to by the consumer that records what it counts, in the same batch and only for
-- what is recorded for the first time. `labels` is the JSON array of the label values in the
-- metric's order (a histogram's bucket row ends with its `le`).
CREATE TABLE metric_counters (
  name TEXT NOT NULL,
  labels TEXT NOT NULL,
  value INTEGER NOT NULL,
  PRIMARY KEY (name, labels)
) WITHOUT ROWID;

-- The dead letters an operator has not replayed, by queue: a gauge read from this index alone.
CREATE INDEX dead_letters_open ON dead_letters (queue) WHERE replayed_at IS NULL;
