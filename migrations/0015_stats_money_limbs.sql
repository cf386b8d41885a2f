-- Money in the conversions roll-ups in three limbs (docs/reports.md, "Where the numbers come from"):
-- `<x>_high` = the integer part div 1e9, `<x>_integer` = the integer part mod 1e9, `<x>_fraction` =
-- the fraction in hundred-millionths. An amount may have 15 integer digits, so one integer sum
-- overflowed SQLite's 64-bit integers after ~9,300 such conversions: sum() raised `integer overflow`
-- and an upsert turned the column REAL (inexact). Each limb now adds at most 1e9 (or 1e6) per
-- conversion, so no sum overflows before billions of conversions; they are combined exactly in JS.

ALTER TABLE stats_conversions_by_sub1_hourly ADD COLUMN amount_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_by_sub1_hourly ADD COLUMN revenue_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_by_sub1_hourly ADD COLUMN payout_high INTEGER NOT NULL DEFAULT 0;

ALTER TABLE stats_conversions_hourly ADD COLUMN amount_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_hourly ADD COLUMN revenue_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_hourly ADD COLUMN payout_high INTEGER NOT NULL DEFAULT 0;

ALTER TABLE stats_conversions_counted ADD COLUMN amount_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_counted ADD COLUMN revenue_high INTEGER NOT NULL DEFAULT 0;
ALTER TABLE stats_conversions_counted ADD COLUMN payout_high INTEGER NOT NULL DEFAULT 0;

-- What each conversion is counted as: its integer part fits 64 bits, so it splits exactly.
UPDATE stats_conversions_counted SET
  amount_high = amount_integer / 1000000000, amount_integer = amount_integer % 1000000000,
  revenue_high = revenue_integer / 1000000000, revenue_integer = revenue_integer % 1000000000,
  payout_high = payout_integer / 1000000000, payout_integer = payout_integer % 1000000000;

-- Roll-up rows whose sums are still integers split the same way (SQLite reads every right-hand side
-- of one UPDATE from the row as it was).
UPDATE stats_conversions_by_sub1_hourly SET
  amount_high = amount_integer / 1000000000, amount_integer = amount_integer % 1000000000,
  revenue_high = revenue_integer / 1000000000, revenue_integer = revenue_integer % 1000000000,
  payout_high = payout_integer / 1000000000, payout_integer = payout_integer % 1000000000
WHERE typeof(amount_integer) = 'integer' AND typeof(revenue_integer) = 'integer' AND typeof(payout_integer) = 'integer';

UPDATE stats_conversions_hourly SET
  amount_high = amount_integer / 1000000000, amount_integer = amount_integer % 1000000000,
  revenue_high = revenue_integer / 1000000000, revenue_integer = revenue_integer % 1000000000,
  payout_high = payout_integer / 1000000000, payout_integer = payout_integer % 1000000000
WHERE typeof(amount_integer) = 'integer' AND typeof(revenue_integer) = 'integer' AND typeof(payout_integer) = 'integer';

-- A row whose sum already overflowed holds a REAL, inexact: it is counted again from what its
-- conversions are counted as (the roll-ups are exactly the sums of stats_conversions_counted).
INSERT INTO stats_conversions_by_sub1_hourly (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, sub1, amount_currency, revenue_currency, payout_currency,
  conversions, amount_high, amount_integer, amount_fraction, revenue_high, revenue_integer, revenue_fraction, payout_high, payout_integer, payout_fraction)
SELECT hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, sub1, amount_currency, revenue_currency, payout_currency,
  count(*), sum(amount_high), sum(amount_integer), sum(amount_fraction), sum(revenue_high), sum(revenue_integer), sum(revenue_fraction), sum(payout_high), sum(payout_integer), sum(payout_fraction)
FROM stats_conversions_counted c
WHERE EXISTS (
  SELECT 1 FROM stats_conversions_by_sub1_hourly s
  WHERE (s.hour, s.test, s.network_id, s.offer_id, s.campaign_id, s.partner_id, s.platform, s.country, s.device, s.event_type, s.status, s.sub1, s.amount_currency, s.revenue_currency, s.payout_currency)
    = (c.hour, c.test, c.network_id, c.offer_id, c.campaign_id, c.partner_id, c.platform, c.country, c.device, c.event_type, c.status, c.sub1, c.amount_currency, c.revenue_currency, c.payout_currency)
    AND (typeof(s.amount_integer) <> 'integer' OR typeof(s.revenue_integer) <> 'integer' OR typeof(s.payout_integer) <> 'integer')
)
GROUP BY hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, sub1, amount_currency, revenue_currency, payout_currency
ON CONFLICT (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, sub1, amount_currency, revenue_currency, payout_currency) DO UPDATE SET
  conversions = excluded.conversions,
  amount_high = excluded.amount_high,
  amount_integer = excluded.amount_integer,
  amount_fraction = excluded.amount_fraction,
  revenue_high = excluded.revenue_high,
  revenue_integer = excluded.revenue_integer,
  revenue_fraction = excluded.revenue_fraction,
  payout_high = excluded.payout_high,
  payout_integer = excluded.payout_integer,
  payout_fraction = excluded.payout_fraction;

INSERT INTO stats_conversions_hourly (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, amount_currency, revenue_currency, payout_currency,
  conversions, amount_high, amount_integer, amount_fraction, revenue_high, revenue_integer, revenue_fraction, payout_high, payout_integer, payout_fraction)
SELECT hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, amount_currency, revenue_currency, payout_currency,
  count(*), sum(amount_high), sum(amount_integer), sum(amount_fraction), sum(revenue_high), sum(revenue_integer), sum(revenue_fraction), sum(payout_high), sum(payout_integer), sum(payout_fraction)
FROM stats_conversions_counted c
WHERE EXISTS (
  SELECT 1 FROM stats_conversions_hourly s
  WHERE (s.hour, s.test, s.network_id, s.offer_id, s.campaign_id, s.partner_id, s.platform, s.country, s.device, s.event_type, s.status, s.amount_currency, s.revenue_currency, s.payout_currency)
    = (c.hour, c.test, c.network_id, c.offer_id, c.campaign_id, c.partner_id, c.platform, c.country, c.device, c.event_type, c.status, c.amount_currency, c.revenue_currency, c.payout_currency)
    AND (typeof(s.amount_integer) <> 'integer' OR typeof(s.revenue_integer) <> 'integer' OR typeof(s.payout_integer) <> 'integer')
)
GROUP BY hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, amount_currency, revenue_currency, payout_currency
ON CONFLICT (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type, status, amount_currency, revenue_currency, payout_currency) DO UPDATE SET
  conversions = excluded.conversions,
  amount_high = excluded.amount_high,
  amount_integer = excluded.amount_integer,
  amount_fraction = excluded.amount_fraction,
  revenue_high = excluded.revenue_high,
  revenue_integer = excluded.revenue_integer,
  revenue_fraction = excluded.revenue_fraction,
  payout_high = excluded.payout_high,
  payout_integer = excluded.payout_integer,
  payout_fraction = excluded.payout_fraction;
