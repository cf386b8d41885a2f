-- Clicks are pruned by the daily retention cron after HISTORY_RETENTION_DAYS, by click time.
CREATE INDEX clicks_by_time ON clicks (clicked_at);
