-- Alert channels (docs/monitoring.md#channels): where alerts go besides ALERT_URL. A Standard
-- Webhooks channel signs with its own secret (encrypted, shown once); a Slack channel takes an
-- incoming-webhook URL. Each alert is sent to each active channel until received (alert_sends).
CREATE TABLE alert_channels (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  format TEXT NOT NULL CHECK (format IN ('standard_webhooks', 'slack')),
  -- The URL as reads show it (a Slack webhook's path, and any query, are its credential: cut).
  url TEXT NOT NULL,
  -- The whole URL, AES-GCM with ENCRYPTION_KEY: a webhook's URL may carry its own key.
  url_ciphertext TEXT NOT NULL,
  -- standard_webhooks: the signing secret, AES-GCM with ENCRYPTION_KEY (src/lib/credentials.ts).
  secret_ciphertext TEXT,
  status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at TEXT NOT NULL
);

CREATE TABLE alert_sends (
  alert_id TEXT NOT NULL,
  channel_id TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  -- NULL once received (or given up).
  next_attempt_at TEXT,
  delivered_at TEXT,
  last_error TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (alert_id, channel_id)
) WITHOUT ROWID;
CREATE INDEX alert_sends_due ON alert_sends (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
