-- Recovery in bulk (docs/partners-and-delivery.md, "Recovering in bulk"): dead letters an operator
-- can replay, and bulk replay jobs that re-arm deliveries by filter in the background.

-- When a dead letter was last sent back to its queue; NULL while it never was. A second replay
-- without `force` is refused, so a letter is not replayed twice by accident.
ALTER TABLE dead_letters ADD COLUMN replayed_at TEXT;
-- The dead-letter list: newest first, filtered by queue and time.
CREATE INDEX dead_letters_by_created ON dead_letters (created_at, id);

-- One bulk replay: its filter, how far it got, and the chunk it re-armed but has not yet confirmed
-- sent. A step re-arms a chunk and records it here in one transaction, then sends its DELIVERIES
-- messages, then confirms; a step that dies in between is finished by the next one, which sends the
-- recorded chunk again (the consumer's claim makes a repeated message harmless).
CREATE TABLE replay_jobs (
  id TEXT PRIMARY KEY,
  -- JSON: the filter as requested, with its defaults (domain/replay.ts).
  filter TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'finished', 'failed')),
  -- Deliveries that matched when the job was created; `done`: deliveries it has re-armed and sent.
  total INTEGER NOT NULL,
  done INTEGER NOT NULL DEFAULT 0,
  steps INTEGER NOT NULL DEFAULT 0,
  -- The last delivery a step considered, in (created_at, id) order: each is considered once.
  cursor_created_at TEXT,
  cursor_id TEXT,
  -- JSON array of the delivery ids the current step re-armed; NULL between steps.
  pending_ids TEXT,
  -- Why the last step failed (cleared by the next that succeeds), or why the job failed.
  error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  started_at TEXT,
  finished_at TEXT
);
CREATE INDEX replay_jobs_by_created ON replay_jobs (created_at, id);
CREATE INDEX replay_jobs_by_state ON replay_jobs (state, updated_at);
