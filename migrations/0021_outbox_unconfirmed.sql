-- Outbox events D1 has not confirmed past their resend deadline (docs/monitoring.md, the gauge
-- postback_hub_outbox_unconfirmed): one row per conversion object that holds such events, written
-- by that object's alarm only (upserted when it finds some, deleted once D1 confirmed them all).
-- Healthy, it is empty. The total is kept beside it in metric_counters ('outbox_unconfirmed_events'),
-- moved in the same batch by the difference each row's write makes, so a scrape reads one row and
-- one index, however many objects are reporting.
CREATE TABLE outbox_unconfirmed (
  object_id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  events INTEGER NOT NULL,
  -- When the oldest of them was received (the hub acknowledged it).
  oldest_at TEXT NOT NULL,
  reported_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX outbox_unconfirmed_by_oldest ON outbox_unconfirmed (oldest_at);
