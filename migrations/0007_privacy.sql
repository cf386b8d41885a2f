-- Privacy at the point of entry (docs/privacy.md): per network, identifiers kept only as keyed
-- hashes; erasure of one person's identifier everywhere the hub keeps it, and its record.

-- JSON array of the identifiers ("user_id", "device_id") the hub hashes at ingest for this network.
ALTER TABLE networks ADD COLUMN hash_identifiers TEXT NOT NULL DEFAULT '[]';

-- An erasure finds a person's conversions by identifier: in the current state, and in the history
-- (an event that a later one corrected, a stale event, still holds its value). Partial, so rows
-- without the identifier cost nothing.
CREATE INDEX conversions_by_user ON conversions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX conversions_by_device ON conversions (device_id) WHERE device_id IS NOT NULL;
-- Guarded by json_valid, so a row whose payload is not JSON (the proof reports such a row) can still
-- be written; src/storage/erasures.ts queries with the same expressions, so that the index serves.
CREATE INDEX conversion_events_by_user
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.user_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.user_id') END) IS NOT NULL;
CREATE INDEX conversion_events_by_device
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.device_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.device_id') END) IS NOT NULL;
CREATE INDEX conversion_events_by_click
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.click_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.click_id') END) IS NOT NULL;
-- ...and their deliveries, whose payloads carry the conversion (also after retention cut the events).
CREATE INDEX deliveries_by_conversion ON deliveries (network_id, transaction_id);

-- One row per erased identifier and scope; repeating an erasure runs it again on the same row.
-- Never the identifier itself: `identifier_hash` is its keyed hash (lib/identifier-hash.ts), which
-- is also how the events consumer recognises an erased value still on its way to D1.
CREATE TABLE erasures (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('user_id', 'device_id', 'click_id')),
  identifier_hash TEXT NOT NULL,
  -- NULL: every network.
  network_id TEXT,
  requested_at TEXT NOT NULL,
  -- The latest run: everything the hub received up to then is erased (the events consumer erases
  -- what was still on its way).
  last_run_at TEXT NOT NULL,
  runs INTEGER NOT NULL DEFAULT 0,
  -- partial: more conversions to erase (call again); complete: none found beyond this run.
  status TEXT NOT NULL CHECK (status IN ('partial', 'complete')),
  -- JSON: what all runs did, per table and for the conversions' objects.
  counts TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX erasures_by_identifier ON erasures (identifier_hash);
CREATE INDEX erasures_by_requested ON erasures (requested_at, id);
