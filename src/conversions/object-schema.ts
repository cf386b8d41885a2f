/**
 * The conversion object's SQLite schema and the ordered upgrades that bring an object written by
 * earlier code up to it. `schema_version` (one row) says how many upgrades an object has had;
 * objects from before it existed count as 0. (`PRAGMA user_version` would be the usual place, but
 * Durable Object SQLite refuses it with SQLITE_AUTH.)
 *
 * Tables are created by the first write, not when the object starts, so that a read (explain's
 * `peek`, a stray receipt) never leaves an empty object behind.
 *
 * Every table, index and row a new object creates is paid for in rows written, once per conversion
 * (issue 16), so a new object gets only what it needs: `state` and `events` (no AUTOINCREMENT, whose
 * sqlite_sequence row moved on every insert though every seq is given; no index: an object holds a
 * handful of events, looked up by fingerprint or event id in a scan of them). The outbox is the
 * events whose `message` is not NULL, not a table of its own, so that recording an event writes one
 * row, not two. Its version is in the comment its `state` table is created with (`CREATED_AT`), so
 * it needs no `schema_version` row; `erased_events` is created by the first erasure that rewrites an
 * event. Objects created by earlier code keep their tables, indexes and `schema_version` as they are,
 * less the `outbox` table, which upgrade 7 folds into `events`.
 */

/**
 * Events an erasure rewrote, kept for the conversion's whole life (also in the tail: D1 keeps the
 * rewritten events): the hash each was recorded with, and the hash of its content as erased,
 * which the object computed after checking the chain (NULL when it did not verify).
 */
const ERASED_EVENTS = `
  CREATE TABLE IF NOT EXISTS erased_events (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    content_hash TEXT,
    erasure_ids TEXT NOT NULL,
    fields TEXT NOT NULL
  );
`;

/**
 * The outbox, in each event's row: the EVENTS message until D1 confirms it has the event (then
 * NULL), when the alarm should send it (again), in ms (0 = at once), and how often it was sent.
 */
const OUTBOX_COLUMNS = ["message TEXT", "due_at INTEGER NOT NULL DEFAULT 0", "sends INTEGER NOT NULL DEFAULT 0"];

/** What a new object's `state` table says of the version it was created at (sqlite_master keeps it). */
const CREATED_AT = "-- created at schema version ";

/**
 * The tables as the last upgrade leaves them, less what a new object does not need (see above):
 * what a new object is created with.
 */
const SCHEMA = (version: number) => `
  CREATE TABLE state (
    ${CREATED_AT}${version}
    id INTEGER PRIMARY KEY CHECK (id = 1),
    network_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL,
    status TEXT NOT NULL,
    event_time TEXT NOT NULL,
    -- 1: event_time came from the network; 0: it is the receipt time of the event that set the state.
    event_time_supplied INTEGER NOT NULL,
    fields TEXT NOT NULL,
    version INTEGER NOT NULL,
    first_seen_at TEXT NOT NULL,
    last_event_at TEXT NOT NULL,
    -- The answer of the event that set the state, replayed for a duplicate of it.
    answer TEXT,
    -- The chain head: the last recorded event's seq and hash (NULL: recorded before the chain).
    head_seq INTEGER NOT NULL DEFAULT 0,
    head_hash TEXT,
    -- The seq of the chain's first event in this object's life (NULL: the chain has not begun, or,
    -- with a head_hash, an object that was already a tail when this column came and never said).
    chain_from INTEGER,
    -- Where history retention cut the chain in D1: every event up to this seq may be gone from D1.
    -- Only retention sets it (by RPC, after the object checked the cut against what it knows).
    retention_seq INTEGER,
    retention_hash TEXT,
    retention_before TEXT,
    -- Where the event that set the state came from: s2s (a network's postback) or pixel.
    source TEXT NOT NULL DEFAULT 's2s',
    -- Fields erasures erased, with the marker each left ({"user_id": "erased:ers_…"}): whatever a
    -- later event brings for one of them is recorded as that marker. NULL: none.
    erased TEXT
  );
  -- The history of the dedupe window; after it only the state row (the tail) stays.
  CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    verdict TEXT NOT NULL,
    answer TEXT NOT NULL,
    received_at TEXT NOT NULL,
    hash TEXT,
    prev_hash TEXT,
    ${OUTBOX_COLUMNS.join(",\n    ")}
  );
`;

type Upgrade = (sql: SqlStorage, tables: ReadonlyMap<string, string>) => void;

/** In order; upgrade i takes an object from version i to i + 1. Append only. */
const UPGRADES: readonly Upgrade[] = [
  // 1. Outbox rows wait for D1's receipt: objects written before that have neither column.
  (sql, tables) => {
    if (tables.get("outbox")?.includes("due_at")) return;
    sql.exec("ALTER TABLE outbox ADD COLUMN due_at INTEGER NOT NULL DEFAULT 0");
    sql.exec("ALTER TABLE outbox ADD COLUMN sends INTEGER NOT NULL DEFAULT 0");
  },
  // 2. Whose clock set the state's time. An inferred time is exactly the receipt time of the event
  // that set the state; any other time was supplied by the network. When that event cannot be
  // found, the time counts as inferred, so arrival order (within the lifecycle) decides.
  (sql) => {
    sql.exec("ALTER TABLE state ADD COLUMN event_time_supplied INTEGER NOT NULL DEFAULT 0");
    sql.exec(`
      UPDATE state SET event_time_supplied = coalesce(
        (SELECT state.event_time != received_at FROM events WHERE verdict != 'stale' ORDER BY seq DESC LIMIT 1), 0)
    `);
  },
  // 3. The hash chain, and a tail that outlives the dedupe window. Events recorded before have no
  // hash; the next event starts the chain (prev_hash NULL) and its seq follows theirs.
  (sql) => {
    sql.exec("ALTER TABLE events ADD COLUMN hash TEXT");
    sql.exec("ALTER TABLE events ADD COLUMN prev_hash TEXT");
    sql.exec("ALTER TABLE state ADD COLUMN answer TEXT");
    sql.exec("ALTER TABLE state ADD COLUMN head_seq INTEGER NOT NULL DEFAULT 0");
    sql.exec("ALTER TABLE state ADD COLUMN head_hash TEXT");
    sql.exec(`
      UPDATE state SET
        head_seq = coalesce((SELECT max(seq) FROM events), 0),
        answer = (SELECT answer FROM events WHERE verdict != 'stale' ORDER BY seq DESC LIMIT 1)
    `);
  },
  // 4. What the object attests beyond its head, so that a D1 writer cannot pass edits off as history
  // from before the chain or as retention: where its chain begins, and where retention cut it. An
  // object that still holds its history knows where its chain begins; a tail does not say (NULL).
  (sql) => {
    sql.exec("ALTER TABLE state ADD COLUMN chain_from INTEGER");
    sql.exec("ALTER TABLE state ADD COLUMN retention_seq INTEGER");
    sql.exec("ALTER TABLE state ADD COLUMN retention_hash TEXT");
    sql.exec("ALTER TABLE state ADD COLUMN retention_before TEXT");
    sql.exec("UPDATE state SET chain_from = (SELECT min(seq) FROM events WHERE hash IS NOT NULL)");
  },
  // 5. Browser pixels: where the event that set the state came from (every earlier one was a postback).
  (sql) => {
    sql.exec("ALTER TABLE state ADD COLUMN source TEXT NOT NULL DEFAULT 's2s'");
  },
  // 6. Erasure: the fields erased, and the events rewritten with the hashes the proof checks them by.
  (sql) => {
    sql.exec("ALTER TABLE state ADD COLUMN erased TEXT");
    sql.exec(ERASED_EVENTS);
  },
  // 7. The outbox folded into `events` (issue 16: one row written per recorded event, not two). An
  // outbox row's seq is always its event's (both were written with the one seq, in every version).
  // No code ever left an outbox row without its event; were there one, its event row is rebuilt from
  // the message (which holds all of it but the fingerprint, '' here, which matches no event), rather
  // than drop an event D1 may not have.
  (sql) => {
    for (const column of OUTBOX_COLUMNS) sql.exec(`ALTER TABLE events ADD COLUMN ${column}`);
    sql.exec(`
      INSERT INTO events (seq, event_id, fingerprint, verdict, answer, received_at, hash, prev_hash)
      SELECT seq, message ->> '$.event_id', '', message ->> '$.verdict',
        json_object('status', message ->> '$.verdict', 'event_id', message ->> '$.event_id',
          'network_id', message ->> '$.network_id', 'transaction_id', message ->> '$.transaction_id',
          'conversion_status', message ->> '$.conversion.status'),
        message ->> '$.received_at', message ->> '$.hash', message ->> '$.prev_hash'
      FROM outbox WHERE seq NOT IN (SELECT seq FROM events)
    `);
    sql.exec(`
      UPDATE events SET message = outbox.message, due_at = outbox.due_at, sends = outbox.sends
      FROM outbox WHERE outbox.seq = events.seq
    `);
    sql.exec("DROP TABLE outbox");
  },
];

export const SCHEMA_VERSION = UPGRADES.length;

/**
 * Whether the object holds anything; upgrades an older object on the way, in one transaction.
 * One query for an object without tables, two for one that has them.
 */
export function openSchema(storage: DurableObjectStorage): boolean {
  const sql = storage.sql;
  const tables = new Map(
    sql
      .exec<{ name: string; sql: string }>(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name IN ('outbox', 'schema_version', 'state')",
      )
      .toArray()
      .map((row) => [row.name, row.sql]),
  );
  // Every object has `state` (all its tables are created together), so it says whether the object holds anything.
  if (!tables.has("state")) return false;
  const version = tables.has("schema_version")
    ? sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version
    : createdAt(tables.get("state"));
  // An object at a later version (written by newer code, before a rollback) is left as it is.
  if (version < SCHEMA_VERSION) {
    storage.transactionSync(() => {
      for (let step = version; step < SCHEMA_VERSION; step++) UPGRADES[step]?.(sql, tables);
      sql.exec(
        "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
      );
      sql.exec(
        "INSERT INTO schema_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        SCHEMA_VERSION,
      );
    });
  }
  return true;
}

/** The version a `state` table was created at: its comment's, or 0 (objects from before `schema_version`). */
function createdAt(stateSql: string | undefined): number {
  const found = stateSql?.match(/-- created at schema version (\d+)/);
  return found ? Number(found[1]) : 0;
}

/** Creates the tables of a new object at the current version. */
export function createSchema(sql: SqlStorage): void {
  sql.exec(SCHEMA(SCHEMA_VERSION));
}

/** `erased_events`, created by the first erasure that needs it (a new object starts without). */
export function ensureErasedEvents(sql: SqlStorage): void {
  sql.exec(ERASED_EVENTS);
}

/** Whether the object has `erased_events` (every object upgraded by upgrade 6 has; a new one, once erased). */
export function hasErasedEvents(sql: SqlStorage): boolean {
  return sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'erased_events'").toArray().length > 0;
}
