-- Issue 16, what a million conversions cost: fewer rows written per conversion.

-- Each partner's delivery-attempt counters for GET /metrics (src/storage/metrics.ts) in one row: a
-- JSON object from `[name, ...labels]` (the metric row's name and label values, as metric_counters
-- keeps them) to its value, merged by adding. One row written per attempt instead of five. Counts
-- from before stay in metric_counters; /metrics adds the two.
CREATE TABLE metric_attempt_counters (
  partner_id TEXT PRIMARY KEY,
  counts TEXT NOT NULL
) WITHOUT ROWID;

-- Indexes no query reads (each written on every insert, and on every update of its columns). The
-- list routes filter these columns as `(? IS NULL OR column = ?)`, which no index can serve (they
-- walk conversions_by_first_seen and inbound_requests_by_network, in their order); a reconciliation
-- narrows by network and period first (conversions_by_network); click ids are looked up by their
-- normalised form (conversions_by_click_key). test/storage.indexes.test.ts asks the planner.
DROP INDEX IF EXISTS conversions_by_campaign;
DROP INDEX IF EXISTS conversions_by_click;
DROP INDEX IF EXISTS conversions_by_attributed_partner;
DROP INDEX IF EXISTS inbound_requests_by_transaction;

-- The inbound log by time alone: retention and the overview's chart now walk
-- inbound_requests_by_network once per network (src/storage/requests.ts, LOGGED_NETWORKS).
DROP INDEX IF EXISTS inbound_requests_by_received;

-- Conversions by network and time: only a reconciliation's period read it; it now walks
-- conversions_by_first_seen from its page's cursor (src/storage/reconciliations.ts), all networks'
-- conversions of the period once, where this index cost a row written for every conversion.
DROP INDEX IF EXISTS conversions_by_network;

-- Deliveries by state, only for those still moving (pending, retrying): every query that reads it
-- asks for exactly those (the sweep, the backlog gauge and alert, the overview), and a delivery that
-- ends leaves it instead of moving to a finished entry no query reads: one row less per finished
-- delivery. Retention and bulk replays of finished deliveries walk deliveries_by_created (or
-- deliveries_by_partner). Created over the unfinished deliveries only.
DROP INDEX IF EXISTS deliveries_by_state;
CREATE INDEX deliveries_by_state ON deliveries (state, created_at) WHERE state IN ('pending', 'retrying');

-- Clicks by partner: no query reads it (a partner's clicks are counted within an offer, through
-- clicks_by_offer, and reported from stats_clicks_hourly).
DROP INDEX IF EXISTS clicks_by_partner;
