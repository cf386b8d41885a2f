-- Partner delivery: partners, their signing secrets, one delivery per (event, partner), every attempt.

CREATE TABLE partners (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  -- Why it was disabled: 'operator', 'gone' (the partner answered 410) or 'failing' (cron).
  disabled_reason TEXT,
  url_template TEXT NOT NULL,
  method TEXT NOT NULL CHECK (method IN ('GET', 'POST')),
  headers TEXT NOT NULL DEFAULT '{}',
  -- NULL: POST the conversion as JSON.
  body_template TEXT,
  sign INTEGER NOT NULL DEFAULT 0,
  timeout_ms INTEGER NOT NULL,
  retry_schedule TEXT NOT NULL,
  filters TEXT NOT NULL DEFAULT '{}',
  receives_test_traffic INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE partner_secrets (
  id TEXT PRIMARY KEY,
  partner_id TEXT NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
  ciphertext TEXT NOT NULL,
  created_at TEXT NOT NULL,
  expires_at TEXT
);
CREATE INDEX partner_secrets_by_partner ON partner_secrets (partner_id, created_at);

-- One row per (event, partner); its id is the webhook-id the partner sees on every attempt.
CREATE TABLE deliveries (
  id TEXT PRIMARY KEY,
  event_id TEXT NOT NULL,
  partner_id TEXT NOT NULL,
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('pending', 'retrying', 'delivered', 'failed', 'dead', 'parked')),
  -- Attempts ever made (numbering), and retries since the last (re)start (position in the schedule).
  attempts INTEGER NOT NULL DEFAULT 0,
  retries INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER,
  last_error TEXT,
  next_attempt_at TEXT,
  -- Held by the consumer making an attempt, so a duplicate queue message never sends twice at once.
  lease_until TEXT,
  -- What to render: the event and the conversion after it, as the events consumer saw them.
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  delivered_at TEXT,
  UNIQUE (event_id, partner_id)
);
CREATE INDEX deliveries_by_created ON deliveries (created_at, id);
CREATE INDEX deliveries_by_partner ON deliveries (partner_id, state, created_at);
CREATE INDEX deliveries_by_state ON deliveries (state, created_at);

CREATE TABLE delivery_attempts (
  delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
  attempt INTEGER NOT NULL,
  partner_id TEXT NOT NULL,
  started_at TEXT NOT NULL,
  -- HTTP status, or NULL with error_class 'timeout' / 'network' / 'render'.
  http_status INTEGER,
  error_class TEXT,
  error TEXT,
  latency_ms INTEGER NOT NULL,
  response_excerpt TEXT,
  outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'gone', 'failed', 'dead')),
  PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX delivery_attempts_by_partner ON delivery_attempts (partner_id, started_at);
