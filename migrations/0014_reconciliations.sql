-- Reconciliation (docs/reconciliation.md): a network's or partner's report, uploaded as CSV, diffed
-- against the hub's conversions of one network and period in the background, and the corrections an
-- operator applied from it. A reconciliation, its rows, its differences and its corrections are kept.

CREATE TABLE reconciliations (
  id TEXT PRIMARY KEY,
  network_id TEXT NOT NULL,
  -- A partner's report: only the conversions credited to this partner, with its payout.
  partner_id TEXT,
  -- The period, on the conversions' first_seen_at: since included, until excluded (RFC 3339 UTC).
  since TEXT NOT NULL,
  until TEXT NOT NULL,
  -- JSON: the column and status mapping the report was read with (domain/reconciliation.ts).
  mapping TEXT NOT NULL,
  -- uploading: rows being staged (a failed upload deletes it all); queued, running: being diffed;
  -- finished; failed (error says why).
  state TEXT NOT NULL CHECK (state IN ('uploading', 'queued', 'running', 'finished', 'failed')),
  -- What the running job is walking: the report's rows, then the hub's conversions of the period.
  phase TEXT NOT NULL DEFAULT 'report' CHECK (phase IN ('report', 'hub', 'done')),
  report_rows INTEGER NOT NULL DEFAULT 0,
  report_rows_done INTEGER NOT NULL DEFAULT 0,
  -- The last report line diffed; the hub walk's last (first_seen_at, transaction_id).
  cursor_line INTEGER NOT NULL DEFAULT 0,
  cursor_first_seen_at TEXT,
  cursor_transaction_id TEXT,
  hub_conversions_done INTEGER NOT NULL DEFAULT 0,
  -- JSON: counts and exact money sums per currency on both sides (domain/reconciliation.ts Totals).
  totals TEXT NOT NULL DEFAULT '{}',
  -- JSON: differences by class, counted when the job finished.
  difference_counts TEXT,
  error TEXT,
  created_by TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX reconciliations_by_created ON reconciliations (created_at, id);
CREATE INDEX reconciliations_by_state ON reconciliations (state, updated_at);

-- The report's rows as read and checked at upload: one per transaction (a report that names one
-- twice is refused). Money as the report wrote it, validated as exact decimals.
CREATE TABLE reconciliation_rows (
  reconciliation_id TEXT NOT NULL,
  line INTEGER NOT NULL,
  transaction_id TEXT NOT NULL,
  status TEXT NOT NULL,
  amount TEXT,
  currency TEXT,
  payout TEXT,
  payout_currency TEXT,
  reported_at TEXT,
  PRIMARY KEY (reconciliation_id, line)
) WITHOUT ROWID;
CREATE UNIQUE INDEX reconciliation_rows_by_transaction ON reconciliation_rows (reconciliation_id, transaction_id);

-- One row per transaction and class of difference. `hub` and `report` are JSON snapshots of both
-- sides when the job compared them; `correction` is JSON of what applying it did (null: not applied).
CREATE TABLE reconciliation_differences (
  reconciliation_id TEXT NOT NULL,
  id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  class TEXT NOT NULL CHECK (class IN ('missing_in_hub', 'missing_in_report', 'status', 'amount', 'payout', 'credit')),
  line INTEGER,
  hub TEXT,
  report TEXT,
  correction TEXT,
  PRIMARY KEY (reconciliation_id, id)
) WITHOUT ROWID;
CREATE INDEX reconciliation_differences_by_class ON reconciliation_differences (reconciliation_id, class, id);
CREATE INDEX reconciliation_differences_by_transaction
  ON reconciliation_differences (reconciliation_id, transaction_id);
