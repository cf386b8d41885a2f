-- Conversion records: test and live apart, whose clock set each conversion's time, and the hash
-- chain of each conversion's events.

-- A test postback has its own conversion: the key gains `test`. SQLite cannot change a primary
-- key in place, so the table is rebuilt with its rows and indexes. Rows written before this
-- migration hold whichever world wrote them last (test and live shared one row then).
-- `event_time_supplied`: 1 when the network sent the conversion's event_time, 0 when the hub
-- inferred it (the receipt time). An inferred time is exactly the receipt time of the event that
-- set the row (`updated_at`), which is how the existing rows are told apart.
CREATE TABLE conversions_keyed_by_world (
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  status TEXT NOT NULL,
  amount TEXT,
  currency TEXT,
  event_type TEXT,
  event_time TEXT NOT NULL,
  campaign_id TEXT,
  click_id TEXT,
  user_id TEXT,
  device_id TEXT,
  platform TEXT,
  meta TEXT,
  first_seen_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  version INTEGER NOT NULL,
  test INTEGER NOT NULL DEFAULT 0 CHECK (test IN (0, 1)),
  event_time_supplied INTEGER NOT NULL DEFAULT 1 CHECK (event_time_supplied IN (0, 1)),
  PRIMARY KEY (network_id, transaction_id, test)
);
INSERT INTO conversions_keyed_by_world (network_id, transaction_id, status, amount, currency, event_type,
  event_time, campaign_id, click_id, user_id, device_id, platform, meta, first_seen_at, updated_at, version, test,
  event_time_supplied)
SELECT network_id, transaction_id, status, amount, currency, event_type, event_time, campaign_id, click_id,
  user_id, device_id, platform, meta, first_seen_at, updated_at, version, test,
  CASE WHEN event_time = updated_at THEN 0 ELSE 1 END
FROM conversions;
DROP TABLE conversions;
ALTER TABLE conversions_keyed_by_world RENAME TO conversions;
-- The list's sort key (and cursor) is (first_seen_at, network_id, transaction_id, test).
CREATE INDEX conversions_by_first_seen ON conversions (first_seen_at, network_id, transaction_id, test);
CREATE INDEX conversions_by_network ON conversions (network_id, first_seen_at);
CREATE INDEX conversions_by_campaign ON conversions (campaign_id, first_seen_at);

-- The hash chain, computed by the conversion's Durable Object as it records each event (see
-- docs/conversion-records.md); NULL for events recorded before the chain existed.
ALTER TABLE conversion_events ADD COLUMN hash TEXT;
ALTER TABLE conversion_events ADD COLUMN prev_hash TEXT;
DROP INDEX conversion_events_by_conversion;
CREATE INDEX conversion_events_by_conversion ON conversion_events (network_id, transaction_id, test, seq);

-- History retention deletes old events; for each conversion it keeps here the seq and hash of the
-- last chained event it deleted, so that the chain that remains still verifies from that hash.
CREATE TABLE conversion_chain_pruned (
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  test INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  -- The retention cutoff of the run that pruned it: every event received before it was deleted.
  pruned_before TEXT NOT NULL,
  PRIMARY KEY (network_id, transaction_id, test)
);
