-- Inbound for the real world: per-network authentication modes, parameter mapping for affiliate
-- GET postbacks, a fixed answer for senders that expect one, test mode, tokens and usage telemetry.

-- {"methods": ["standard_webhooks" | "token" | "signed_query", ...], "ip_allowlist": ["cidr", ...]}
ALTER TABLE networks ADD COLUMN auth TEXT NOT NULL DEFAULT '{"methods":["standard_webhooks"],"ip_allowlist":[]}';
-- The parameter mapping for GET and form postbacks (NULL: the generic preset).
ALTER TABLE networks ADD COLUMN mapping TEXT;
-- {"content_type": "text/plain", "body": "OK"} for senders that expect a fixed answer; NULL: JSON.
ALTER TABLE networks ADD COLUMN answer TEXT;
ALTER TABLE networks ADD COLUMN test_mode INTEGER NOT NULL DEFAULT 0;

-- Signing secrets and static tokens share the table; both are encrypted, both report their last use.
ALTER TABLE network_secrets ADD COLUMN kind TEXT NOT NULL DEFAULT 'signing' CHECK (kind IN ('signing', 'token'));
ALTER TABLE network_secrets ADD COLUMN last_used_at TEXT;

ALTER TABLE conversions ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversion_events ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
