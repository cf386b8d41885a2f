-- Postback Hub: the durable record. Applied with `wrangler d1 migrations apply DB`.

CREATE TABLE networks (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

-- Standard Webhooks secrets, AES-GCM encrypted with the ENCRYPTION_KEY secret (the row id is the
-- additional authenticated data, so a ciphertext cannot be moved to another row).
CREATE TABLE network_secrets (
  id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL REFERENCES networks (id) ON DELETE CASCADE,
  ciphertext TEXT NOT NULL,
  created_at TEXT NOT NULL,
  -- NULL while current; set to the end of the grace period when a newer secret replaces it.
  expires_at TEXT
);
CREATE INDEX network_secrets_by_network ON network_secrets (network_id, created_at);

-- Current state of each conversion, written by the events consumer from the Durable Object's
-- snapshots; `version` only ever grows, so out-of-order deliveries never roll a row back.
CREATE TABLE conversions (
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
  PRIMARY KEY (network_id, transaction_id)
);
CREATE INDEX conversions_by_first_seen ON conversions (first_seen_at, network_id, transaction_id);
CREATE INDEX conversions_by_network ON conversions (network_id, first_seen_at);
CREATE INDEX conversions_by_campaign ON conversions (campaign_id, first_seen_at);

-- Append-only history: every recorded event with its verdict.
CREATE TABLE conversion_events (
  event_id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  verdict TEXT NOT NULL CHECK (verdict IN ('accepted', 'updated', 'stale')),
  status TEXT NOT NULL,
  event_time TEXT,
  payload TEXT NOT NULL,
  received_at TEXT NOT NULL
);
CREATE INDEX conversion_events_by_conversion ON conversion_events (network_id, transaction_id, seq);
CREATE INDEX conversion_events_by_received ON conversion_events (received_at);

-- Queue messages that could not be processed, kept for operators to inspect and replay.
CREATE TABLE dead_letters (
  id TEXT PRIMARY KEY,
  queue TEXT NOT NULL,
  body TEXT NOT NULL,
  reason TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  created_at TEXT NOT NULL
);
