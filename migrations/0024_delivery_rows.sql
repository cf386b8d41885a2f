-- Issue 16, what a million conversions cost: a delivery writes three rows fewer, none of them read.
--
-- - UNIQUE (event_id, partner_id) goes: a delivery's id is derived from exactly that pair
--   (src/delivery/partner.ts, deliveryIdFor), so its primary key already makes it unique, and the
--   events consumer's insert says ON CONFLICT (id). One index row less per delivery.
-- - deliveries_by_partner no longer holds the state, so a delivery that ends writes its own row
--   only (it leaves the partial deliveries_by_state, which costs nothing written). A partner's
--   unfinished deliveries are read through deliveries_by_state, its parked ones through 0025's
--   index, the rest through the partner's own range.
--
-- The tables stay rowid tables, as every table written per conversion does. A WITHOUT ROWID table
-- would write one row less for each (no automatic index beside the table), but it keeps its rows in
-- an index b-tree, whose cells hold at most 1,001 bytes of D1's 4,096-byte page: a delivery (its
-- payload is the event and the conversion after it), an attempt (a kilobyte of the partner's
-- answer), an inbound-log record or an event of a rich postback is about a kilobyte, and each such
-- row then takes an overflow page of its own, three times its size on disk
-- (test/storage.row-size.test.ts): D1's 10 GB would fill at a third of the conversions.
--
-- SQLite cannot drop a table's UNIQUE in place, so deliveries is rebuilt, and with it
-- delivery_attempts, whose rows point at it: the attempts are copied to a table that points at the
-- new one before the old tables go, so that dropping the old deliveries cascades into nothing (as in
-- 0011). Each copy runs in key order (appending to the new b-tree rather than writing pages at
-- random); docs/deploying.md says what the previous code does meanwhile and how long it takes.

CREATE TABLE deliveries_next (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  state TEXT NOT NULL
    CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'dead', 'parked', 'superseded')),
  -- Attempts ever made (numbering), and retries since the last (re)start (position in the schedule).
  attempts INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_at TEXT,
  -- Held by the attempt in progress, so two attempts of one delivery never send at once.
  lease_until TEXT,
  -- What to render: the event and the conversion after it, as the events consumer saw them.
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  delivered_at TEXT
);
INSERT INTO deliveries_next (id, event_id, partner_id, network_id, transaction_id, state, attempts, retries,
  last_status, last_error, next_attempt_at, lease_until, payload, created_at, updated_at, delivered_at)
SELECT id, event_id, partner_id, network_id, transaction_id, state, attempts, retries, last_status, last_error,
  next_attempt_at, lease_until, payload, created_at, updated_at, delivered_at
FROM deliveries
ORDER BY id;

CREATE TABLE delivery_attempts_next (
  delivery_id TEXT NOT NULL REFERENCES deliveries_next (id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  partner_id TEXT NOT NULL,
  started_at TEXT NOT NULL,
  -- HTTP status, or NULL with error_class 'timeout' / 'network' / 'render' / 'blocked'.
  http_status INTEGER,
  error_class TEXT,
  error TEXT,
  latency_ms INTEGER NOT NULL,
  response_excerpt TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'gone', 'failed', 'dead')),
  PRIMARY KEY (delivery_id, attempt)
);
INSERT INTO delivery_attempts_next (delivery_id, attempt, partner_id, started_at, http_status, error_class, error,
  latency_ms, response_excerpt, outcome)
SELECT delivery_id, attempt, partner_id, started_at, http_status, error_class, error, latency_ms, response_excerpt,
  outcome
FROM delivery_attempts
ORDER BY delivery_id, attempt;

DROP TABLE delivery_attempts;
DROP TABLE deliveries;
-- Renaming rewrites delivery_attempts_next's reference to the new name.
ALTER TABLE deliveries_next RENAME TO deliveries;
ALTER TABLE delivery_attempts_next RENAME TO delivery_attempts;
CREATE INDEX deliveries_by_created ON deliveries (created_at, id);
CREATE INDEX deliveries_by_partner ON deliveries (partner_id, created_at);
CREATE INDEX deliveries_by_conversion ON deliveries (network_id, transaction_id);
CREATE INDEX deliveries_by_state ON deliveries (state, created_at) WHERE state IN ('pending', 'retrying');
CREATE INDEX delivery_attempts_by_partner ON delivery_attempts (partner_id, started_at);
