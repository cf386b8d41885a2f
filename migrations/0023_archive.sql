-- The archive (docs/archive.md): rows older than ARCHIVE_AFTER_DAYS move from D1 to the ARCHIVE R2
-- bucket as gzipped NDJSON, one object per day and part. D1 keeps what it takes to find them again.

-- The manifest: one row per archive object, written in the same D1 transaction that deletes the
-- rows it holds, and only after the object's put succeeded (R2 checked its SHA-256). An object with
-- no row here is a leftover of a run that stopped between its put and its commit: nothing points
-- into it, and the next run writes the same key again.
CREATE TABLE archive_objects (
  key TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('events', 'deliveries', 'requests', 'clicks')),
  -- The UTC day its rows were received or created (YYYY-MM-DD), as in the key.
  day TEXT NOT NULL,
  part INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  created_at TEXT NOT NULL,
  -- Set when retention starts deleting the object (readers skip it from then on); the row goes once
  -- the object is gone from R2, so a run that stops in between finishes the deletion next time.
  expiring_at TEXT,
  UNIQUE (kind, day, part)
);

-- Where a conversion's archived rows are: one gzip member per conversion, object and kind (its
-- events of a day, or its finished deliveries of a day with their attempts), so the API reads one
-- byte range and gunzips only it. last_seq and last_hash: the last chained event in the member,
-- where retention cuts the chain once the member is older than HISTORY_RETENTION_DAYS.
CREATE TABLE archived_conversions (
  network_id TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  test INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('events', 'deliveries')),
  -- ON UPDATE: an erasure rewrites an object under a new key (its SHA-256 changes) and moves its pointers with it.
  object_key TEXT NOT NULL REFERENCES archive_objects (key) ON DELETE CASCADE ON UPDATE CASCADE,
  byte_offset INTEGER NOT NULL,
  byte_length INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  last_seq INTEGER,
  last_hash TEXT,
  day TEXT NOT NULL,
  PRIMARY KEY (network_id, transaction_id, test, kind, object_key)
) WITHOUT ROWID;
CREATE INDEX archived_conversions_by_object ON archived_conversions (object_key);

-- Objects replaced by an erasure's rewrite, to delete from R2: recorded in the transaction that
-- moved the manifest to the new object, removed once R2 no longer holds them (the next archive or
-- retention run deletes what a stopped erasure left).
CREATE TABLE archive_garbage (
  key TEXT PRIMARY KEY,
  at TEXT NOT NULL
);
