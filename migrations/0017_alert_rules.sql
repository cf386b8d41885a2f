-- Alert rules (docs/monitoring.md#alert-rules): each rule's settings as an operator set them
-- (defaults in src/domain/alert-rules.ts), and the incidents the cron's evaluation opens, notifies
-- again while they last, and resolves. One open incident per rule and subject.
CREATE TABLE alert_rule_settings (
  rule TEXT PRIMARY KEY,
  settings TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE alert_incidents (
  id TEXT PRIMARY KEY,
  rule TEXT NOT NULL,
  subject TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('open', 'resolved')),
  summary TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}',
  started_at TEXT NOT NULL,
  last_notified_at TEXT NOT NULL,
  notifications INTEGER NOT NULL DEFAULT 1,
  resolved_at TEXT
);
CREATE UNIQUE INDEX alert_incidents_one_open ON alert_incidents (rule, subject) WHERE state = 'open';
CREATE INDEX alert_incidents_by_started ON alert_incidents (started_at, id);
