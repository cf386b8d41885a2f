-- Stats from roll-ups (docs/reports.md): hourly counts kept by the consumers in the same batch as
-- the rows they count, so a stats query over a year reads the roll-ups, never the raw rows, and
-- keeps answering after retention pruned them. Every dimension is '' when absent (never NULL: a
-- NULL never equals itself, so an upsert keyed by it would add a row each time). Hours are UTC,
-- 'YYYY-MM-DDTHH'. Money is exact: the integer part and the fraction in hundred-millionths (amounts
-- carry at most 8 fraction digits) as two integer sums, per currency, never summed across them.

-- Conversions by the hour they were first seen, and everything a report groups or filters by.
-- `status` is the conversion's current one: a status change moves the conversion between rows.
CREATE TABLE stats_conversions_by_sub1_hourly (
  hour TEXT NOT NULL,
  test INTEGER NOT NULL,
  network_id TEXT NOT NULL,
  offer_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  platform TEXT NOT NULL,
  country TEXT NOT NULL,
  device TEXT NOT NULL,
  event_type TEXT NOT NULL,
  status TEXT NOT NULL,
  sub1 TEXT NOT NULL,
  amount_currency TEXT NOT NULL,
  revenue_currency TEXT NOT NULL,
  payout_currency TEXT NOT NULL,
  conversions INTEGER NOT NULL,
  amount_integer INTEGER NOT NULL,
  amount_fraction INTEGER NOT NULL,
  revenue_integer INTEGER NOT NULL,
  revenue_fraction INTEGER NOT NULL,
  payout_integer INTEGER NOT NULL,
  payout_fraction INTEGER NOT NULL,
  PRIMARY KEY (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type,
    status, sub1, amount_currency, revenue_currency, payout_currency)
) WITHOUT ROWID;

-- The same without sub1 (a partner's sub id, the one dimension that can make a row per conversion):
-- what a query that neither groups nor filters by sub1 reads, small whatever the sub ids.
CREATE TABLE stats_conversions_hourly (
  hour TEXT NOT NULL,
  test INTEGER NOT NULL,
  network_id TEXT NOT NULL,
  offer_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  platform TEXT NOT NULL,
  country TEXT NOT NULL,
  device TEXT NOT NULL,
  event_type TEXT NOT NULL,
  status TEXT NOT NULL,
  amount_currency TEXT NOT NULL,
  revenue_currency TEXT NOT NULL,
  payout_currency TEXT NOT NULL,
  conversions INTEGER NOT NULL,
  amount_integer INTEGER NOT NULL,
  amount_fraction INTEGER NOT NULL,
  revenue_integer INTEGER NOT NULL,
  revenue_fraction INTEGER NOT NULL,
  payout_integer INTEGER NOT NULL,
  payout_fraction INTEGER NOT NULL,
  PRIMARY KEY (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type,
    status, amount_currency, revenue_currency, payout_currency)
) WITHOUT ROWID;

-- What each conversion is counted as in the conversions roll-ups right now. A recount compares it
-- with what the conversion's rows say today and moves the difference, so counting a conversion
-- again (a message delivered twice, a batch retried) changes nothing, and a conversion whose status,
-- payout or click changed moves from its old row to its new one exactly once.
CREATE TABLE stats_conversions_counted (
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  test INTEGER NOT NULL,
  hour TEXT NOT NULL,
  offer_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  platform TEXT NOT NULL,
  country TEXT NOT NULL,
  device TEXT NOT NULL,
  event_type TEXT NOT NULL,
  status TEXT NOT NULL,
  sub1 TEXT NOT NULL,
  amount_currency TEXT NOT NULL,
  revenue_currency TEXT NOT NULL,
  payout_currency TEXT NOT NULL,
  amount_integer INTEGER NOT NULL,
  amount_fraction INTEGER NOT NULL,
  revenue_integer INTEGER NOT NULL,
  revenue_fraction INTEGER NOT NULL,
  payout_integer INTEGER NOT NULL,
  payout_fraction INTEGER NOT NULL,
  PRIMARY KEY (network_id, transaction_id, test)
) WITHOUT ROWID;

-- A click's conversions are recounted when the click's record arrives (its country, device and sub1
-- become theirs): found by the click id as the attribution joins it.
CREATE INDEX conversions_by_click_key ON conversions (lower(trim(click_id))) WHERE click_id IS NOT NULL;

-- Clicks by the hour they were made. Counted once, when the click's row is first written.
CREATE TABLE stats_clicks_hourly (
  hour TEXT NOT NULL,
  network_id TEXT NOT NULL,
  offer_id TEXT NOT NULL,
  campaign_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  country TEXT NOT NULL,
  device TEXT NOT NULL,
  sub1 TEXT NOT NULL,
  clicks INTEGER NOT NULL,
  PRIMARY KEY (hour, network_id, offer_id, campaign_id, partner_id, country, device, sub1)
) WITHOUT ROWID;

INSERT INTO stats_clicks_hourly
SELECT substr(k.clicked_at, 1, 13), coalesce(o.network_id, ''), k.offer_id, coalesce(o.campaign_id, ''), k.partner_id,
  coalesce(k.country, ''), coalesce(k.device, ''), coalesce(k.sub1, ''), count(*)
FROM clicks k LEFT JOIN offers o ON o.id = k.offer_id
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;

-- Delivery attempts by the hour they started and the partner they went to: counted once, in the
-- batch that records the attempt. `delivered` and `failed` count attempts that ended a delivery
-- (failed: refused for good, gone or dead), so success = delivered / (delivered + failed).
CREATE TABLE stats_deliveries_hourly (
  hour TEXT NOT NULL,
  test INTEGER NOT NULL,
  network_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  delivered INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  PRIMARY KEY (hour, test, network_id, partner_id)
) WITHOUT ROWID;

INSERT INTO stats_deliveries_hourly
SELECT substr(a.started_at, 1, 13), coalesce(json_extract(d.payload, '$.test'), 0) = 1, d.network_id, a.partner_id,
  count(*), sum(a.outcome = 'delivered'), sum(a.outcome IN ('failed', 'gone', 'dead'))
FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
GROUP BY 1, 2, 3, 4;

-- Conversions already in D1 are counted by the cron, a page at a time, through the same recount as
-- new ones (src/storage/stats.ts); `after` is the key the next page starts after. No row: done.
CREATE TABLE stats_backfill (
  name TEXT PRIMARY KEY,
  after_network_id TEXT NOT NULL,
  after_transaction_id TEXT NOT NULL,
  after_test INTEGER NOT NULL
);
INSERT INTO stats_backfill SELECT 'conversions', '', '', -1 WHERE EXISTS (SELECT 1 FROM conversions);
