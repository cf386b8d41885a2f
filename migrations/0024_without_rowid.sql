-- Issue 16, what a million conversions cost: the tables written for every conversion, every
-- delivery and every postback are rebuilt WITHOUT ROWID. A rowid table with a TEXT (or composite)
-- primary key keeps two b-trees for it, the table by rowid and an automatic index on the key, and
-- writes a row in each; a WITHOUT ROWID table is stored by its key, one row written. Every query
-- reads them by their key, or by an index that now points at the key instead of a rowid; none reads
-- a rowid (src/storage/d1.ts's chain cut and src/storage/erasures.ts's inbound-log rewrite use the
-- key now). Measured by `npm run bench:cost` (BENCHMARKS.md).
--
-- Deliveries also lose two writes that served no query:
-- - UNIQUE (event_id, partner_id): a delivery's id is derived from exactly that pair
--   (src/delivery/partner.ts, deliveryIdFor), so the primary key already makes it unique; the
--   events consumer's insert says ON CONFLICT (id).
-- - deliveries_by_partner no longer holds the state, so a delivery that ends writes its row only
--   (it leaves the partial deliveries_by_state, which costs nothing written). A partner's
--   unfinished deliveries are still read through deliveries_by_state or the partner's own range.
--
-- Every rebuild copies its table once, in this migration's transaction, in key order (each copy
-- appends to the new b-tree instead of writing pages at random). On a large database,
-- run the archive first (docs/archive.md) so that D1 holds only the hot window, and see
-- docs/deploying.md for what the previous code does meanwhile and the time it takes.

-- Conversions: one row each, by (network, transaction, test).
CREATE TABLE conversions_next (
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
  partner_id TEXT,
  offer_id TEXT,
  attribution TEXT,
  attribution_detail TEXT,
  attributed_partner_id TEXT,
  clicked_at TEXT,
  payout TEXT,
  payout_currency TEXT,
  revenue TEXT,
  revenue_currency TEXT,
  source TEXT NOT NULL DEFAULT 's2s',
  PRIMARY KEY (network_id, transaction_id, test)
) WITHOUT ROWID;
INSERT INTO conversions_next SELECT network_id, transaction_id, status, amount, currency, event_type, event_time,
  campaign_id, click_id, user_id, device_id, platform, meta, first_seen_at, updated_at, version, test,
  event_time_supplied, partner_id, offer_id, attribution, attribution_detail, attributed_partner_id, clicked_at,
  payout, payout_currency, revenue, revenue_currency, source
FROM conversions
ORDER BY network_id, transaction_id, test;
DROP TABLE conversions;
ALTER TABLE conversions_next RENAME TO conversions;
CREATE INDEX conversions_by_first_seen ON conversions (first_seen_at, network_id, transaction_id, test);
CREATE INDEX conversions_by_user ON conversions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX conversions_by_device ON conversions (device_id) WHERE device_id IS NOT NULL;
CREATE INDEX conversions_by_click_key ON conversions (lower(trim(click_id))) WHERE click_id IS NOT NULL;

-- A conversion's events, by event id.
CREATE TABLE conversion_events_next (
  event_id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'updated', 'stale')),
  status TEXT NOT NULL,
  event_time TEXT,
  payload TEXT NOT NULL,
  received_at TEXT NOT NULL,
  test INTEGER NOT NULL DEFAULT 0,
  hash TEXT,
  prev_hash TEXT,
  source TEXT NOT NULL DEFAULT 's2s',
  payout TEXT,
  payout_currency TEXT,
  payout_partner_id TEXT
) WITHOUT ROWID;
INSERT INTO conversion_events_next SELECT event_id, network_id, transaction_id, seq, verdict, status, event_time,
  payload, received_at, test, hash, prev_hash, source, payout, payout_currency, payout_partner_id
FROM conversion_events
ORDER BY event_id;
DROP TABLE conversion_events;
ALTER TABLE conversion_events_next RENAME TO conversion_events;
CREATE INDEX conversion_events_by_received ON conversion_events (received_at);
CREATE INDEX conversion_events_by_conversion ON conversion_events (network_id, transaction_id, test, seq);
CREATE INDEX conversion_events_by_user
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.user_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.user_id') END) IS NOT NULL;
CREATE INDEX conversion_events_by_device
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.device_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.device_id') END) IS NOT NULL;
CREATE INDEX conversion_events_by_click
  ON conversion_events ((CASE WHEN json_valid(payload) THEN json_extract(payload, '$.click_id') END))
  WHERE (CASE WHEN json_valid(payload) THEN json_extract(payload, '$.click_id') END) IS NOT NULL;

-- The inbound log, by request id.
CREATE TABLE inbound_requests_next (
  request_id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL,
  received_at TEXT NOT NULL,
  -- postback | batch | explain | requests (the network reading this log)
  route TEXT NOT NULL,
  method TEXT NOT NULL,
  auth_method TEXT,
  credential_id TEXT,
  client_ip TEXT,
  transaction_id TEXT,
  test INTEGER,
  status INTEGER NOT NULL,
  -- accepted | duplicate | updated | stale | batch | explained | listed | head, or the problem code
  verdict TEXT NOT NULL,
  -- The first few field errors, as the answer named them: [{"location", "message"}]
  errors TEXT NOT NULL DEFAULT '[]',
  -- Events in a batch
  items INTEGER,
  body_bytes INTEGER NOT NULL,
  body_sha256 TEXT,
  -- {"query", "headers", "body"}, credentials redacted, each part cut short
  excerpt TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO inbound_requests_next SELECT request_id, network_id, received_at, route, method, auth_method,
  credential_id, client_ip, transaction_id, test, status, verdict, errors, items, body_bytes, body_sha256, excerpt
FROM inbound_requests
ORDER BY request_id;
DROP TABLE inbound_requests;
ALTER TABLE inbound_requests_next RENAME TO inbound_requests;
CREATE INDEX inbound_requests_by_network ON inbound_requests (network_id, received_at, request_id);

-- Clicks, by click id.
CREATE TABLE clicks_next (
  click_id TEXT PRIMARY KEY,
  offer_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  clicked_at TEXT NOT NULL,
  sub1 TEXT,
  sub2 TEXT,
  sub3 TEXT,
  sub4 TEXT,
  sub5 TEXT,
  -- From the platform (request.cf.country) and the User-Agent: never the User-Agent itself.
  country TEXT,
  device TEXT,
  os TEXT,
  browser TEXT,
  -- The referring page's origin only (no path, no query).
  referrer TEXT,
  -- The client address truncated (IPv4 /24, IPv6 /48): never the whole address.
  ip_prefix TEXT,
  recorded_at TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO clicks_next SELECT click_id, offer_id, partner_id, clicked_at, sub1, sub2, sub3, sub4, sub5, country,
  device, os, browser, referrer, ip_prefix, recorded_at
FROM clicks
ORDER BY click_id;
DROP TABLE clicks;
ALTER TABLE clicks_next RENAME TO clicks;
CREATE INDEX clicks_by_offer ON clicks (offer_id, clicked_at);
CREATE INDEX clicks_by_time ON clicks (clicked_at);

-- Deliveries and their attempts, which point at them: the attempts are copied to a table that
-- points at the new deliveries before the old tables go, so that dropping the old deliveries
-- cascades into nothing (as in 0011).
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
) WITHOUT ROWID;
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
) WITHOUT ROWID;
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
