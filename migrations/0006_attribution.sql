-- Attribution: offers (what an advertiser network pays for, and each partner's payout), clicks on
-- tracking links, and on each conversion whose it is and what it pays.

CREATE TABLE offers (
  id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL REFERENCES networks (id),
  name TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
  landing_url TEXT NOT NULL,
  attribution_window_days INTEGER NOT NULL,
  -- The network's own id for this offer: a postback that names its partner (direct attribution)
  -- is priced by the offer whose campaign_id it carries.
  campaign_id TEXT,
  -- JSON: price rules (domain/offer.ts).
  revenue TEXT NOT NULL DEFAULT '[]',
  payouts TEXT NOT NULL DEFAULT '{"default":[],"partners":{}}',
  -- JSON array of partner ids; NULL: every attributed partner may promote the offer.
  partners TEXT,
  pixel TEXT NOT NULL DEFAULT '{"allowed_origins":[],"notify_before_confirmation":false}',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX offers_by_network ON offers (network_id, created_at);
CREATE UNIQUE INDEX offers_by_campaign ON offers (network_id, campaign_id) WHERE campaign_id IS NOT NULL;

-- One row per counted click, keyed by its click id (a click recorded twice is one click).
CREATE TABLE clicks (
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
);
CREATE INDEX clicks_by_offer ON clicks (offer_id, clicked_at);
CREATE INDEX clicks_by_partner ON clicks (partner_id, clicked_at);

-- Whose conversion it is, with what payout, and where it came from. partner_id is the postback's
-- own field (a network that attributes itself names the partner); offer_id and the attributed_*
-- columns are the verdict, from a verified click id or that field. Sub ids, country and device
-- are the click's (joined by click_id), so they appear as soon as the click's record reaches D1.
ALTER TABLE conversions ADD COLUMN partner_id TEXT;
ALTER TABLE conversions ADD COLUMN offer_id TEXT;
-- click, direct, click_invalid, click_expired, partner_invalid, offer_invalid, unattributed;
-- NULL for conversions recorded before attribution existed.
ALTER TABLE conversions ADD COLUMN attribution TEXT;
ALTER TABLE conversions ADD COLUMN attribution_detail TEXT;
ALTER TABLE conversions ADD COLUMN attributed_partner_id TEXT;
ALTER TABLE conversions ADD COLUMN clicked_at TEXT;
ALTER TABLE conversions ADD COLUMN payout TEXT;
ALTER TABLE conversions ADD COLUMN payout_currency TEXT;
ALTER TABLE conversions ADD COLUMN revenue TEXT;
ALTER TABLE conversions ADD COLUMN revenue_currency TEXT;
-- s2s (a network's postback) or pixel (a browser pixel, until a postback confirms it).
ALTER TABLE conversions ADD COLUMN source TEXT NOT NULL DEFAULT 's2s';
CREATE INDEX conversions_by_click ON conversions (click_id) WHERE click_id IS NOT NULL;
CREATE INDEX conversions_by_attributed_partner ON conversions (attributed_partner_id, first_seen_at)
  WHERE attributed_partner_id IS NOT NULL;

ALTER TABLE conversion_events ADD COLUMN source TEXT NOT NULL DEFAULT 's2s';
-- The attributed partner's payout as of this event (what its postback said).
ALTER TABLE conversion_events ADD COLUMN payout TEXT;
ALTER TABLE conversion_events ADD COLUMN payout_currency TEXT;

-- Routing: 'filters' (every matching conversion, as before) or 'attributed' (only its own).
ALTER TABLE partners ADD COLUMN routing TEXT NOT NULL DEFAULT 'filters' CHECK (routing IN ('filters', 'attributed'));
-- Whether an attributed partner's postbacks carry the network's amount and currency.
ALTER TABLE partners ADD COLUMN share_amount INTEGER NOT NULL DEFAULT 0;
