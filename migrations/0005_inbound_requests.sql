-- The inbound request log: every request to a postback route of a known network, rejections
-- included, with its verdict. Written after the answer, through the requests queue, capped per
-- isolate and network; what the cap drops, and requests to unknown networks, are only counted.

CREATE TABLE inbound_requests (
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
);
CREATE INDEX inbound_requests_by_network ON inbound_requests (network_id, received_at, request_id);
CREATE INDEX inbound_requests_by_transaction ON inbound_requests (network_id, transaction_id);
CREATE INDEX inbound_requests_by_received ON inbound_requests (received_at);

-- Requests not logged one by one, per minute: dropped by an isolate's cap for a network, or sent to
-- an unknown network (network_id ''). Each isolate reports its running total for the minute, so a
-- redelivered or reordered report keeps the largest, never a sum: exact under at-least-once delivery.
CREATE TABLE inbound_request_counts (
  network_id TEXT NOT NULL,
  minute TEXT NOT NULL,
  isolate_id TEXT NOT NULL,
  unlogged INTEGER NOT NULL,
  PRIMARY KEY (network_id, minute, isolate_id)
);
CREATE INDEX inbound_request_counts_by_minute ON inbound_request_counts (minute);
