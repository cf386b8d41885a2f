/**
 * The archive's SQL and its reads from R2 (docs/archive.md). D1 keeps the manifest (one row per
 * object in the ARCHIVE bucket) and, per conversion, where its archived rows are (a gzip member's
 * byte range); the rows themselves leave D1 in the same transaction that records the object.
 */

import { type MemberRange, readMember } from "../lib/gzip-ndjson";
import { type ChainCut, type ConversionEventRow, type D1, getConversion } from "./d1";
import type { AttemptRow, DeliveryRow } from "./deliveries";
import { LOGGED_NETWORKS } from "./requests";

export const ARCHIVE_KINDS = ["events", "deliveries", "requests", "clicks"] as const;
export type ArchiveKind = (typeof ARCHIVE_KINDS)[number];

/** The archive bucket as the hub uses it. */
export type ArchiveBucket = Pick<R2Bucket, "get" | "put" | "delete">;

/** Finished deliveries, the only ones archived (and pruned): nothing will change them again. */
const FINISHED = "state IN ('delivered', 'failed', 'dead')";

/**
 * Per kind: the table, the time column that places a row in its day, and the rows one part of a day
 * takes, in the index's order (so the same D1 gives the same part: a rerun rewrites the same key).
 */
const SOURCES: Record<ArchiveKind, { table: string; at: string; where: string; order: string; with?: string }> = {
  events: { table: "conversion_events", at: "received_at", where: "true", order: "received_at, event_id" },
  deliveries: { table: "deliveries", at: "created_at", where: FINISHED, order: "created_at, id" },
  // The log has no index by time alone (migration 0022): walked network by network, by time.
  requests: {
    table: "inbound_requests",
    at: "received_at",
    where: "network_id IN (SELECT network_id FROM logged)",
    order: "received_at, request_id",
    with: LOGGED_NETWORKS,
  },
  clicks: { table: "clicks", at: "clicked_at", where: "true", order: "clicked_at, click_id" },
};

/** The two reads of a kind's rows by time, ?1 from and ?2 until (and ?3 the limit): also what test/storage.indexes.test.ts plans. */
export function archiveQueries(kind: ArchiveKind): { oldestDay: string; rows: string } {
  const { table, at, where, order, with: prefix = "" } = SOURCES[kind];
  const window = `FROM ${table} WHERE ${at} >= ?1 AND ${at} < ?2 AND ${where}`;
  return {
    oldestDay: `${prefix} SELECT substr(min(${at}), 1, 10) AS day ${window}`,
    rows: `${prefix} SELECT * ${window} ORDER BY ${order} LIMIT ?3`,
  };
}

/** The oldest UTC day (YYYY-MM-DD) holding rows of `kind` in [from, until), or null. */
export async function oldestArchivableDay(
  db: D1,
  kind: ArchiveKind,
  from: string,
  until: string,
): Promise<string | null> {
  const row = await db.prepare(archiveQueries(kind).oldestDay).bind(from, until).first<{ day: string | null }>();
  return row?.day ?? null;
}

/** A delivery as archived: its row with every attempt. */
export type ArchivedDelivery = DeliveryRow & { attempts_log: AttemptRow[] };

export type ArchivedRow = ConversionEventRow | ArchivedDelivery | Record<string, unknown>;

/** One part's rows of `kind` in [from, until) (a day, clipped to the window), at most `limit`. */
export async function archivableRows(
  db: D1,
  kind: ArchiveKind,
  from: string,
  until: string,
  limit: number,
): Promise<ArchivedRow[]> {
  const { results } = await db
    .prepare(archiveQueries(kind).rows)
    .bind(from, until, limit)
    .all<Record<string, unknown>>();
  if (kind !== "deliveries" || results.length === 0) return results;
  const deliveries = results as unknown as DeliveryRow[];
  const { results: attempts } = await db
    .prepare(
      `SELECT * FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))
       ORDER BY delivery_id, attempt`,
    )
    .bind(JSON.stringify(deliveries.map((d) => d.id)))
    .all<AttemptRow>();
  const byDelivery = Map.groupBy(attempts, (attempt) => attempt.delivery_id);
  return deliveries.map((d) => ({ ...d, attempts_log: byDelivery.get(d.id) ?? [] }));
}

/**
 * The longest attribution window of any offer, in days: a click stays in D1 at least this long, so a
 * conversion that comes back with it in time still finds its record (its sub ids for the partner's
 * delivery, its dimensions for the stats).
 */
export async function longestAttributionWindowDays(db: D1): Promise<number> {
  const row = await db
    .prepare("SELECT coalesce(max(attribution_window_days), 0) AS days FROM offers")
    .first<{ days: number }>();
  return row?.days ?? 0;
}

/** The parts of a day already in the manifest, so the next one is numbered after them. */
export async function committedParts(db: D1, kind: ArchiveKind, day: string): Promise<number> {
  const row = await db
    .prepare("SELECT coalesce(max(part), 0) AS parts FROM archive_objects WHERE kind = ? AND day = ?")
    .bind(kind, day)
    .first<{ parts: number }>();
  return row?.parts ?? 0;
}

export async function isCommitted(db: D1, key: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS found FROM archive_objects WHERE key = ?").bind(key).first()) !== null;
}

export interface ArchiveObjectRecord {
  key: string;
  kind: ArchiveKind;
  day: string;
  part: number;
  rows: number;
  bytes: number;
  sha256: string;
  created_at: string;
}

/** A conversion's member in an object (events and deliveries only). */
export interface MemberPointer extends MemberRange {
  network_id: string;
  transaction_id: string;
  test: number;
  rows: number;
  last_seq: number | null;
  last_hash: string | null;
}

/**
 * One transaction, run only after the object's put succeeded: the manifest row, the conversions'
 * pointers into it, and the deletion of exactly the rows it holds (by their keys, never by a time
 * range, so a row that arrived since is not lost). The manifest row's `rows` is computed from what
 * D1 still holds and is NULL (the NOT NULL constraint aborts the whole transaction) unless every
 * archived row is still there as it was read: a concurrent run that archived some of them, or a
 * delivery replayed since, leaves D1 untouched and this object unreferenced.
 */
export function commitStatements(
  db: D1,
  object: ArchiveObjectRecord,
  rows: readonly ArchivedRow[],
  pointers: readonly MemberPointer[],
): D1PreparedStatement[] {
  const { kind } = object;
  const ids = JSON.stringify(rows.map((row) => idOf(kind, row)));
  const attempts = kind === "deliveries" ? (rows as ArchivedDelivery[]).flatMap((d) => d.attempts_log).length : 0;
  const present =
    kind === "deliveries"
      ? `(SELECT count(*) FROM deliveries WHERE id IN (SELECT value FROM json_each(?1)) AND ${FINISHED})
         + (SELECT count(*) FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?1)))`
      : `(SELECT count(*) FROM ${SOURCES[kind].table} WHERE ${idColumn(kind)} IN (SELECT value FROM json_each(?1)))`;
  const statements = [
    db
      .prepare(
        `INSERT INTO archive_objects (key, kind, day, part, rows, bytes, sha256, created_at)
         VALUES (?2, ?3, ?4, ?5, CASE WHEN ${present} = ?6 + ?7 THEN ?6 END, ?8, ?9, ?10)`,
      )
      .bind(
        ids,
        object.key,
        kind,
        object.day,
        object.part,
        object.rows,
        attempts,
        object.bytes,
        object.sha256,
        object.created_at,
      ),
  ];
  if (pointers.length > 0) {
    statements.push(
      db
        .prepare(
          `INSERT INTO archived_conversions (network_id, transaction_id, test, kind, object_key, byte_offset, byte_length,
             rows, last_seq, last_hash, day)
           SELECT value ->> 0, value ->> 1, value ->> 2, ?2, ?3, value ->> 3, value ->> 4, value ->> 5, value ->> 6,
             value ->> 7, ?4
           FROM json_each(?1) WHERE true`,
        )
        .bind(
          JSON.stringify(
            pointers.map((p) => [
              p.network_id,
              p.transaction_id,
              p.test,
              p.offset,
              p.length,
              p.rows,
              p.last_seq,
              p.last_hash,
            ]),
          ),
          kind,
          object.key,
          object.day,
        ),
    );
  }
  if (kind === "deliveries") {
    statements.push(
      db.prepare("DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each(?))").bind(ids),
    );
  }
  statements.push(
    db
      .prepare(`DELETE FROM ${SOURCES[kind].table} WHERE ${idColumn(kind)} IN (SELECT value FROM json_each(?))`)
      .bind(ids),
  );
  return statements;
}

function idColumn(kind: ArchiveKind): string {
  switch (kind) {
    case "events":
      return "event_id";
    case "deliveries":
      return "id";
    case "requests":
      return "request_id";
    case "clicks":
      return "click_id";
    default:
      throw new Error(`unknown archive kind ${kind satisfies never}`);
  }
}

function idOf(kind: ArchiveKind, row: ArchivedRow): string {
  return String((row as Record<string, unknown>)[idColumn(kind)]);
}

// ---------------------------------------------------------------------------------------------
// Reading a conversion's history back
// ---------------------------------------------------------------------------------------------

export interface StoredPointer {
  kind: "events" | "deliveries";
  object_key: string;
  byte_offset: number;
  byte_length: number;
  day: string;
}

async function pointersOf(
  db: D1,
  networkId: string,
  transactionId: string,
  test: boolean,
  kinds: readonly StoredPointer["kind"][],
): Promise<StoredPointer[]> {
  const { results } = await db
    .prepare(
      `SELECT p.kind, p.object_key, p.byte_offset, p.byte_length, p.day FROM archived_conversions p
       JOIN archive_objects o ON o.key = p.object_key
       WHERE p.network_id = ?1 AND p.transaction_id = ?2 AND p.test = ?3 AND o.expiring_at IS NULL
         AND p.kind IN (SELECT value FROM json_each(?4))
       ORDER BY p.day, p.object_key`,
    )
    .bind(networkId, transactionId, test ? 1 : 0, JSON.stringify(kinds))
    .all<StoredPointer>();
  return results;
}

/** One member, by one range read. A manifest row whose object is missing is a fault, not an empty member. */
async function readPointer<T>(bucket: ArchiveBucket, pointer: StoredPointer): Promise<T[]> {
  const object = await bucket.get(pointer.object_key, {
    range: { offset: pointer.byte_offset, length: pointer.byte_length },
  });
  if (!object) throw new Error(`archive object ${pointer.object_key} is missing`);
  return readMember<T>(new Uint8Array(await object.arrayBuffer()));
}

/** A conversion's archived rows of `kinds`: its events and its finished deliveries with their attempts. */
export async function archivedHistory(
  db: D1,
  bucket: ArchiveBucket,
  networkId: string,
  transactionId: string,
  test: boolean,
  kinds: readonly StoredPointer["kind"][] = ["events", "deliveries"],
): Promise<{ events: ConversionEventRow[]; deliveries: ArchivedDelivery[] }> {
  const pointers = await pointersOf(db, networkId, transactionId, test, kinds);
  if (pointers.length === 0) return { events: [], deliveries: [] };
  const members = await Promise.all(pointers.map((pointer) => readPointer<ArchivedRow>(bucket, pointer)));
  const events: ConversionEventRow[] = [];
  const deliveries: ArchivedDelivery[] = [];
  pointers.forEach((pointer, index) => {
    const rows = members[index] ?? [];
    if (pointer.kind === "events") events.push(...(rows as ConversionEventRow[]));
    else deliveries.push(...(rows as ArchivedDelivery[]));
  });
  return { events, deliveries };
}

/**
 * `getConversion` with the archive: the events D1 still holds and those archived, one history in
 * seq order (an event is in one place only: the archive deletes what it wrote, in one transaction).
 * One R2 range read per archived member (a member per day and part it was archived in); with
 * `deliveries`, its archived deliveries too.
 */
export async function getConversionWithArchive(
  db: D1,
  bucket: ArchiveBucket,
  networkId: string,
  transactionId: string,
  test: boolean,
  { deliveries = false }: { deliveries?: boolean } = {},
): Promise<Awaited<ReturnType<typeof getConversion>> & { archivedDeliveries: ArchivedDelivery[] }> {
  const [hot, archived] = await Promise.all([
    getConversion(db, networkId, transactionId, test),
    archivedHistory(db, bucket, networkId, transactionId, test, deliveries ? ["events", "deliveries"] : ["events"]),
  ]);
  // Members of a day that retention has cut through in D1 wait for their day to expire: past the cut, not history.
  const cutAt = hot.pruned?.seq ?? 0;
  const events = [...archived.events.filter((event) => event.seq > cutAt), ...hot.events].sort(
    (a, b) => a.seq - b.seq || a.received_at.localeCompare(b.received_at),
  );
  return { ...hot, events, archivedDeliveries: archived.deliveries };
}

// ---------------------------------------------------------------------------------------------
// Retention over the archive
// ---------------------------------------------------------------------------------------------

/**
 * Conversions whose archived events all lie on days before `beforeDay`, each with the last chained
 * event among them (where retention cuts its chain), one page by key.
 */
export async function archivedChainCuts(db: D1, beforeDay: string, limit: number): Promise<ChainCut[]> {
  const { results } = await db
    .prepare(
      `SELECT network_id, transaction_id, test, last_seq AS seq, last_hash AS hash FROM (
         SELECT network_id, transaction_id, test, last_seq, last_hash,
           row_number() OVER (PARTITION BY network_id, transaction_id, test ORDER BY last_seq DESC) AS latest
         FROM archived_conversions WHERE kind = 'events' AND day < ?1 AND last_hash IS NOT NULL
       ) WHERE latest = 1
       ORDER BY network_id, transaction_id, test LIMIT ?2`,
    )
    .bind(beforeDay, limit)
    .all<ChainCut>();
  return results;
}

/** Once their chains are cut (or they had none): the pointers of these conversions' expired event members. */
export function dropEventPointersStatement(db: D1, cuts: readonly ChainCut[], beforeDay: string): D1PreparedStatement {
  return db
    .prepare(
      `DELETE FROM archived_conversions WHERE kind = 'events' AND day < ?2 AND (network_id, transaction_id, test) IN (
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1))`,
    )
    .bind(JSON.stringify(cuts.map((cut) => [cut.network_id, cut.transaction_id, cut.test])), beforeDay);
}

/** Pointers of expired event members that hold no chained event: nothing to agree with an object. */
export async function dropUnchainedEventPointers(db: D1, beforeDay: string): Promise<number> {
  const result = await db
    .prepare("DELETE FROM archived_conversions WHERE kind = 'events' AND day < ? AND last_hash IS NULL")
    .bind(beforeDay)
    .run();
  return result.meta.changes ?? 0;
}

/**
 * Marks objects of `kind` on days before `beforeDay` as expiring (readers skip them from then on)
 * and answers every object so marked, including those of a run that stopped before deleting them.
 * Event objects expire only once no pointer into them is left (their chains cut first).
 */
export async function expireObjects(
  db: D1,
  kind: ArchiveKind,
  beforeDay: string,
  now: string,
  limit: number,
): Promise<string[]> {
  await db
    .prepare(
      `UPDATE archive_objects SET expiring_at = ?3 WHERE key IN (
         SELECT key FROM archive_objects o WHERE o.kind = ?1 AND o.day < ?2 AND o.expiring_at IS NULL
           AND (?1 != 'events' OR NOT EXISTS (SELECT 1 FROM archived_conversions p WHERE p.object_key = o.key))
         LIMIT ?4)`,
    )
    .bind(kind, beforeDay, now, limit)
    .run();
  const { results } = await db
    .prepare("SELECT key FROM archive_objects WHERE kind = ? AND expiring_at IS NOT NULL ORDER BY key LIMIT ?")
    .bind(kind, limit)
    .all<{ key: string }>();
  return results.map((row) => row.key);
}

/** After their objects are deleted from R2: their manifest rows (and, by cascade, any pointer left). */
export async function forgetObjects(db: D1, keys: readonly string[]): Promise<void> {
  if (keys.length === 0) return;
  await db
    .prepare("DELETE FROM archive_objects WHERE key IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(keys))
    .run();
}

/**
 * Every delivery of one conversion (of one world) with its attempts, D1's and the archive's, newest
 * first. A conversion's deliveries are few (its events times the partners it routes to), so they
 * come whole, not in pages; `found` says whether the conversion exists at all.
 */
export async function conversionDeliveries(
  db: D1,
  bucket: ArchiveBucket,
  networkId: string,
  transactionId: string,
  test: boolean,
): Promise<{ found: boolean; deliveries: ArchivedDelivery[] }> {
  const world = test ? 1 : 0;
  const [[conversion, deliveries, attempts], archived] = await Promise.all([
    db.batch([
      db
        .prepare("SELECT 1 AS found FROM conversions WHERE network_id = ? AND transaction_id = ? AND test = ?")
        .bind(networkId, transactionId, world),
      db
        .prepare(
          `SELECT * FROM deliveries WHERE network_id = ?1 AND transaction_id = ?2
             AND iif(payload ->> '$.test' = 1, 1, 0) = ?3`,
        )
        .bind(networkId, transactionId, world),
      db
        .prepare(
          `SELECT a.* FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
           WHERE d.network_id = ?1 AND d.transaction_id = ?2 AND iif(d.payload ->> '$.test' = 1, 1, 0) = ?3
           ORDER BY a.delivery_id, a.attempt`,
        )
        .bind(networkId, transactionId, world),
    ]),
    archivedHistory(db, bucket, networkId, transactionId, test, ["deliveries"]),
  ]);
  const byDelivery = Map.groupBy((attempts?.results ?? []) as AttemptRow[], (attempt) => attempt.delivery_id);
  const hot = ((deliveries?.results ?? []) as DeliveryRow[]).map((d) => ({
    ...d,
    attempts_log: byDelivery.get(d.id) ?? [],
  }));
  const all = [...hot, ...archived.deliveries].sort(
    (a, b) => b.created_at.localeCompare(a.created_at) || b.id.localeCompare(a.id),
  );
  return { found: (conversion?.results.length ?? 0) > 0 || all.length > 0, deliveries: all };
}

// ---------------------------------------------------------------------------------------------
// Erasure in the archive: an object with some members rewritten, under a new key
// ---------------------------------------------------------------------------------------------

/** A pointer as stored, with its object's kind. */
export interface StoredMember {
  network_id: string;
  transaction_id: string;
  test: number;
  kind: "events" | "deliveries";
  object_key: string;
  byte_offset: number;
  byte_length: number;
}

/** Every member of every object that holds a member of these conversions, by object, in byte order. */
export async function objectsHolding(
  db: D1,
  keys: readonly { network_id: string; transaction_id: string; test: number }[],
): Promise<Map<string, StoredMember[]>> {
  if (keys.length === 0) return new Map();
  const { results } = await db
    .prepare(
      `SELECT network_id, transaction_id, test, kind, object_key, byte_offset, byte_length FROM archived_conversions
       WHERE object_key IN (
         SELECT object_key FROM archived_conversions
         WHERE (network_id, transaction_id, test) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?))
       )
       ORDER BY object_key, byte_offset`,
    )
    .bind(JSON.stringify(keys.map((key) => [key.network_id, key.transaction_id, key.test])))
    .all<StoredMember>();
  return Map.groupBy(results, (member) => member.object_key);
}

/**
 * One transaction after the rewritten object's put: the manifest row moves to the new key (its
 * pointers follow, ON UPDATE CASCADE), each member gets its new range, and the old key is recorded
 * for deletion from R2.
 */
export function replaceObjectStatements(
  db: D1,
  oldKey: string,
  replacement: { key: string; bytes: number; sha256: string },
  members: readonly (StoredMember & { offset: number; length: number })[],
  now: string,
): D1PreparedStatement[] {
  return [
    db
      .prepare("UPDATE archive_objects SET key = ?2, bytes = ?3, sha256 = ?4 WHERE key = ?1")
      .bind(oldKey, replacement.key, replacement.bytes, replacement.sha256),
    db
      .prepare(
        `UPDATE archived_conversions SET
           byte_offset = (SELECT value ->> 3 FROM json_each(?2) WHERE value ->> 0 = network_id
             AND value ->> 1 = transaction_id AND value ->> 2 = test),
           byte_length = (SELECT value ->> 4 FROM json_each(?2) WHERE value ->> 0 = network_id
             AND value ->> 1 = transaction_id AND value ->> 2 = test)
         WHERE object_key = ?1`,
      )
      .bind(
        replacement.key,
        JSON.stringify(members.map((m) => [m.network_id, m.transaction_id, m.test, m.offset, m.length])),
      ),
    db.prepare("INSERT INTO archive_garbage (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING").bind(oldKey, now),
  ];
}

/** Replaced objects still to delete from R2, then forgotten once deleted. */
export async function collectGarbage(db: D1, bucket: ArchiveBucket, limit = 1000): Promise<number> {
  const { results } = await db
    .prepare("SELECT key FROM archive_garbage ORDER BY at LIMIT ?")
    .bind(limit)
    .all<{ key: string }>();
  const keys = results.map((row) => row.key);
  if (keys.length === 0) return 0;
  await bucket.delete(keys);
  await db
    .prepare("DELETE FROM archive_garbage WHERE key IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify(keys))
    .run();
  return keys.length;
}
