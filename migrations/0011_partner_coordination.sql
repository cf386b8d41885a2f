-- Delivery partners can trust (docs/partners-and-delivery.md, "Order, pace and health"): each
-- partner's deliveries are made by its coordinator (a Durable Object), in order per conversion,
-- paced, behind a breaker. D1 keeps what the operator sets and what the coordinator decided.

-- What the operator sets per partner. `breaker`: overrides of the breaker's defaults, as JSON
-- ('{}' for none). `paused_reason` / `paused_at`: set while the partner's breaker is open or
-- half-open (its API status reads `paused`); deliveries wait, none is lost.
ALTER TABLE partners ADD COLUMN delivery_order TEXT NOT NULL DEFAULT 'ordered'
  CHECK (delivery_order IN ('ordered', 'coalesce'));
ALTER TABLE partners ADD COLUMN max_in_flight INTEGER NOT NULL DEFAULT 10;
ALTER TABLE partners ADD COLUMN max_per_second INTEGER;
ALTER TABLE partners ADD COLUMN breaker TEXT NOT NULL DEFAULT '{}';
ALTER TABLE partners ADD COLUMN paused_reason TEXT;
ALTER TABLE partners ADD COLUMN paused_at TEXT;

-- A delivery gains one state: `superseded`, never sent because a newer state of its conversion
-- was sent instead (a coalescing partner), or had already been delivered when it came. SQLite
-- cannot change a CHECK in place, so the table is rebuilt, and with it delivery_attempts, whose
-- rows point at it: the attempts are copied to a table that points at the new one before the old
-- tables go, so that dropping the old deliveries cascades into nothing.
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
  delivered_at TEXT,
  UNIQUE (event_id, partner_id)
);
INSERT INTO deliveries_next (id, event_id, partner_id, network_id, transaction_id, state, attempts, retries,
  last_status, last_error, next_attempt_at, lease_until, payload, created_at, updated_at, delivered_at)
SELECT id, event_id, partner_id, network_id, transaction_id, state, attempts, retries, last_status, last_error,
  next_attempt_at, lease_until, payload, created_at, updated_at, delivered_at
FROM deliveries;

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
FROM delivery_attempts;

DROP TABLE delivery_attempts;
DROP TABLE deliveries;
-- Renaming rewrites delivery_attempts_next's reference to the new name.
ALTER TABLE deliveries_next RENAME TO deliveries;
ALTER TABLE delivery_attempts_next RENAME TO delivery_attempts;
CREATE INDEX deliveries_by_created ON deliveries (created_at, id);
CREATE INDEX deliveries_by_partner ON deliveries (partner_id, state, created_at);
CREATE INDEX deliveries_by_state ON deliveries (state, created_at);
CREATE INDEX deliveries_by_conversion ON deliveries (network_id, transaction_id);
CREATE INDEX delivery_attempts_by_partner ON delivery_attempts (partner_id, started_at);

-- Every move of a partner's breaker (closed, open, half_open, disabled), as its coordinator made
-- it; the id is derived from the move, so a move told twice is kept once.
CREATE TABLE partner_transitions (
  id TEXT PRIMARY KEY,
  partner_id TEXT NOT NULL,
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  reason TEXT NOT NULL,
  at TEXT NOT NULL
);
CREATE INDEX partner_transitions_by_partner ON partner_transitions (partner_id, at);

-- Operator alerts, kept until ALERT_URL has taken them (a 2xx): each is signed with Standard
-- Webhooks (its id is the webhook-id) and sent again by the cron while it is not received.
CREATE TABLE alerts (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  partner_id TEXT,
  payload TEXT NOT NULL,
  created_at TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  -- NULL once received (or when there is nowhere to send it).
  next_attempt_at TEXT,
  delivered_at TEXT,
  last_error TEXT
);
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX alerts_by_created ON alerts (created_at, id);
