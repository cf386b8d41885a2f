-- Alert sends an operator reads and replays (docs/monitoring.md#the-send-log): a send given up (or
-- still pending) can be put back to due now; its give-up window then runs from `replayed_at`
-- instead of from when the alert was raised, so the cron tries it again for ALERT_GIVE_UP_MS.
-- The same for the default channel's sends (ALERT_URL), which are rows of `alerts`.
ALTER TABLE alert_sends ADD COLUMN replayed_at TEXT;
ALTER TABLE alerts ADD COLUMN replayed_at TEXT;

-- A channel's send log, newest first, a page at a time (GET /v1/alert-channels/{id}/sends).
CREATE INDEX alert_sends_by_channel ON alert_sends (channel_id, created_at, alert_id);
