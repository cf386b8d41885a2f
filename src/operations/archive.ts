/**
 * The archive (docs/archive.md): rows older than ARCHIVE_AFTER_DAYS leave D1 for the ARCHIVE R2
 * bucket as gzipped NDJSON, one object per kind, day and part, many rows to an object. Conversions
 * stay in D1, and so does the stats roll-up.
 *
 * One part at a time, three steps: read the part's rows from D1 (in index order, so the same D1
 * gives the same part), put the object (its key carries its SHA-256, which R2 checks), then one D1
 * transaction that records the object in the manifest, points each conversion at its member and
 * deletes exactly the rows written. A run that stops before the commit leaves D1 as it was, and at
 * most an object nothing points to, which the next run writes again under the same key; the
 * commit itself is all or nothing, and refuses (changing nothing) unless every row it deletes is
 * still as it was read. So a crash anywhere loses nothing and archives nothing twice.
 *
 * The window is [retention cutoff, archive cutoff): what history retention is about to delete is
 * left to it (archiving it would only write it to R2 to delete it there), and the archive cutoff is
 * a UTC midnight, so a day is archived whole once it is old enough.
 */
import { configOf } from "../config";
import { sha256Hex } from "../lib/bytes";
import { gzipMembers } from "../lib/gzip-ndjson";
import { logLine } from "../lib/log";
import {
  type ArchiveBucket,
  type ArchivedDelivery,
  type ArchivedRow,
  type ArchiveKind,
  type ArchiveObjectRecord,
  archivableRows,
  archivedChainCuts,
  collectGarbage,
  commitStatements,
  committedParts,
  dropEventPointersStatement,
  dropUnchainedEventPointers,
  expireObjects,
  forgetObjects,
  isCommitted,
  longestAttributionWindowDays,
  type MemberPointer,
  oldestArchivableDay,
} from "../storage/archive";
import { type ChainCut, type ConversionEventRow, chainCutStatements, type D1 } from "../storage/d1";
import { type ChainCutter, mapConcurrently } from "./chain-retention";

const DAY_MS = 86_400_000;
/** Rows in one object: large objects, few puts (an object of events is about 0.4 KB a row gzipped). */
export const PART_ROWS = 5000;
/** Objects written per run (each: two or three D1 queries, one put, one D1 transaction). */
export const MAX_PARTS_PER_RUN = 8;
/** Conversions whose expired archived chains one retention run cuts (one object call each). */
const MAX_ARCHIVE_CUTS_PER_RUN = 1000;
const CUT_PAGE = 200;
const CUT_CONCURRENCY = 6;
/** Objects deleted per kind and run (one R2 delete call takes up to 1000 keys). */
const EXPIRE_PER_RUN = 1000;

/** The kinds in the order a run takes them. */
const KINDS: readonly ArchiveKind[] = ["events", "deliveries", "requests", "clicks"];

/** Where a run can be stopped by a test (ArchiveDeps.beforeStep). */
export type ArchiveStep = "select" | "put" | "commit";

export interface ArchiveDeps {
  db: D1;
  bucket: ArchiveBucket;
  nowMs: number;
  /** The window: rows older than `archiveAfterDays`, younger than their retention. */
  archiveAfterDays: number;
  historyRetentionDays: number;
  inboundLogRetentionDays: number;
  partRows?: number;
  maxParts?: number;
  /** Called as each step of a part begins; a test throws from it to stop the run there. */
  beforeStep?: (step: ArchiveStep, kind: ArchiveKind) => void | Promise<void>;
}

export interface ArchiveRunSummary {
  /** Objects, rows and gzipped bytes written, per kind. */
  objects: Record<ArchiveKind, number>;
  rows: Record<ArchiveKind, number>;
  bytes: number;
  /** Whether the run stopped at its budget with rows left in the window. */
  more: boolean;
  until: string;
}

export function archiveDeps(env: Env, nowMs: number): ArchiveDeps {
  const config = configOf(env);
  return {
    db: env.DB,
    bucket: env.ARCHIVE,
    nowMs,
    archiveAfterDays: config.ARCHIVE_AFTER_DAYS,
    historyRetentionDays: config.HISTORY_RETENTION_DAYS,
    inboundLogRetentionDays: config.INBOUND_LOG_RETENTION_DAYS,
  };
}

/** The archive cutoff: the UTC midnight on or before `archiveAfterDays` ago. */
export function archiveCutoff(nowMs: number, archiveAfterDays: number): string {
  const at = nowMs - archiveAfterDays * DAY_MS;
  return new Date(at - (at % DAY_MS)).toISOString();
}

export function objectKey(kind: ArchiveKind, day: string, part: number, sha256: string): string {
  return `${kind}/${day.replaceAll("-", "/")}/part-${String(part).padStart(5, "0")}-${sha256.slice(0, 16)}.ndjson.gz`;
}

export async function runArchive(deps: ArchiveDeps): Promise<ArchiveRunSummary> {
  const until = archiveCutoff(deps.nowMs, deps.archiveAfterDays);
  const zero = { events: 0, deliveries: 0, requests: 0, clicks: 0 };
  const summary: ArchiveRunSummary = { objects: { ...zero }, rows: { ...zero }, bytes: 0, more: false, until };
  const budget = deps.maxParts ?? MAX_PARTS_PER_RUN;
  let parts = 0;
  for (const kind of KINDS) {
    const retentionDays = kind === "requests" ? deps.inboundLogRetentionDays : deps.historyRetentionDays;
    const from = new Date(deps.nowMs - retentionDays * DAY_MS).toISOString();
    // A click leaves D1 only once no offer's window could still bring a conversion back to it.
    const kindUntil =
      kind === "clicks"
        ? archiveCutoff(deps.nowMs, Math.max(deps.archiveAfterDays, await longestAttributionWindowDays(deps.db)))
        : until;
    for (;;) {
      if (from >= kindUntil) break;
      await deps.beforeStep?.("select", kind);
      const day = await oldestArchivableDay(deps.db, kind, from, kindUntil);
      if (day === null) break;
      if (parts >= budget) {
        summary.more = true;
        break;
      }
      const written = await archivePart(deps, kind, day, from, kindUntil);
      // Never met with the hub's own timestamps (ISO, UTC); a time written otherwise must not make a
      // run put empty objects until its budget.
      if (written.rows === 0) break;
      parts++;
      summary.objects[kind]++;
      summary.rows[kind] += written.rows;
      summary.bytes += written.bytes;
    }
  }
  return summary;
}

/** One object: the first rows of `day` in the window, written, then committed with their deletion. */
async function archivePart(
  deps: ArchiveDeps,
  kind: ArchiveKind,
  day: string,
  windowFrom: string,
  windowUntil: string,
): Promise<{ rows: number; bytes: number }> {
  const dayStart = `${day}T00:00:00.000Z`;
  const dayEnd = new Date(Date.parse(dayStart) + DAY_MS).toISOString();
  const from = dayStart > windowFrom ? dayStart : windowFrom;
  const until = dayEnd < windowUntil ? dayEnd : windowUntil;
  const rows = await archivableRows(deps.db, kind, from, until, deps.partRows ?? PART_ROWS);
  if (rows.length === 0) return { rows: 0, bytes: 0 };
  const groups = groupsOf(kind, rows);
  const { body, ranges } = await gzipMembers(groups.map((group) => group.rows));
  const sha256 = await sha256Hex(body);
  const part = (await committedParts(deps.db, kind, day)) + 1;
  const key = objectKey(kind, day, part, sha256);

  await deps.beforeStep?.("put", kind);
  await deps.bucket.put(key, body as Uint8Array<ArrayBuffer>, {
    sha256,
    httpMetadata: { contentType: "application/x-ndjson" },
    customMetadata: { kind, day, part: String(part), rows: String(rows.length) },
  });

  await deps.beforeStep?.("commit", kind);
  const object: ArchiveObjectRecord = {
    key,
    kind,
    day,
    part,
    rows: rows.length,
    bytes: body.length,
    sha256,
    created_at: new Date(deps.nowMs).toISOString(),
  };
  const pointers: MemberPointer[] = groups.flatMap((group, index) => {
    const range = ranges[index];
    return group.conversion && range ? [{ ...group.conversion, ...range, rows: group.rows.length }] : [];
  });
  try {
    await deps.db.batch(commitStatements(deps.db, object, rows, pointers));
  } catch (error) {
    // Refused (another run took these rows, or one changed since it was read): the object is no
    // one's, so it goes, unless the manifest has it (the same rows, committed by the other run).
    if (!(await isCommitted(deps.db, key))) await deps.bucket.delete(key);
    throw error;
  }
  return { rows: rows.length, bytes: body.length };
}

interface Group {
  rows: ArchivedRow[];
  /** For events and deliveries: whose member it is, and (events) its last chained event. */
  conversion: Omit<MemberPointer, "offset" | "length" | "rows"> | null;
}

/** Events and deliveries: a member per conversion (so the API gunzips only its own); the rest: one member. */
function groupsOf(kind: ArchiveKind, rows: readonly ArchivedRow[]): Group[] {
  if (kind === "requests" || kind === "clicks") return rows.length > 0 ? [{ rows: [...rows], conversion: null }] : [];
  const byConversion = new Map<string, Group>();
  for (const row of rows) {
    const { network_id, transaction_id, test } = conversionOf(kind, row);
    const id = JSON.stringify([network_id, transaction_id, test]);
    let group = byConversion.get(id);
    if (!group) {
      group = { rows: [], conversion: { network_id, transaction_id, test, last_seq: null, last_hash: null } };
      byConversion.set(id, group);
    }
    group.rows.push(row);
    const event = row as ConversionEventRow;
    if (kind === "events" && event.hash !== null && group.conversion) {
      if (group.conversion.last_seq === null || event.seq > group.conversion.last_seq) {
        group.conversion.last_seq = event.seq;
        group.conversion.last_hash = event.hash;
      }
    }
  }
  return [...byConversion.values()];
}

function conversionOf(
  kind: ArchiveKind,
  row: ArchivedRow,
): { network_id: string; transaction_id: string; test: number } {
  if (kind === "events") {
    const event = row as ConversionEventRow;
    return { network_id: event.network_id, transaction_id: event.transaction_id, test: event.test };
  }
  const delivery = row as ArchivedDelivery;
  const test = (JSON.parse(delivery.payload) as { test?: boolean }).test === true ? 1 : 0;
  return { network_id: delivery.network_id, transaction_id: delivery.transaction_id, test };
}

// ---------------------------------------------------------------------------------------------
// Retention over the archive: what HISTORY_RETENTION_DAYS and INBOUND_LOG_RETENTION_DAYS delete
// in D1, they delete in the archive too, a day's objects at a time.
// ---------------------------------------------------------------------------------------------

export interface ArchiveRetentionResult {
  /** Conversions whose archived chains were cut; objects deleted from R2, per kind. */
  cut: number;
  refused: number;
  deleted: Record<ArchiveKind, number>;
}

/**
 * Deletes archived rows past their retention: event members only once their conversion's object
 * agreed to cut the chain there (as retention does in D1: the proof then accepts that gap and no
 * other), then whole objects of days before the cutoff, marked expiring in D1 first so that a run
 * stopped in the middle finishes the next time and no reader meets a missing object.
 */
export async function pruneArchive(
  deps: { db: D1; bucket: ArchiveBucket; cutter: ChainCutter; nowMs: number },
  before: string,
  logBefore: string,
): Promise<ArchiveRetentionResult> {
  const beforeDay = before.slice(0, 10);
  const result: ArchiveRetentionResult = {
    cut: 0,
    refused: 0,
    deleted: { events: 0, deliveries: 0, requests: 0, clicks: 0 },
  };
  const refused = new Set<string>();
  let asked = 0;
  while (asked < MAX_ARCHIVE_CUTS_PER_RUN) {
    const page = (await archivedChainCuts(deps.db, beforeDay, CUT_PAGE + refused.size)).filter(
      (cut) => !refused.has(cutKey(cut)),
    );
    if (page.length === 0) break;
    asked += page.length;
    const answers = await mapConcurrently(page, CUT_CONCURRENCY, (cut) =>
      deps.cutter.cutChain(cut, before).catch((error: unknown) => ({ accepted: false, reason: String(error) })),
    );
    const agreed: ChainCut[] = [];
    page.forEach((cut, index) => {
      if (answers[index]?.accepted) agreed.push(cut);
      else refused.add(cutKey(cut));
    });
    if (agreed.length > 0) {
      await deps.db.batch([
        ...chainCutStatements(deps.db, agreed, before),
        dropEventPointersStatement(deps.db, agreed, beforeDay),
      ]);
      result.cut += agreed.length;
    } else break;
  }
  result.refused = refused.size;
  if (refused.size > 0) {
    logLine("warn", {
      message: "archive retention: conversions' objects refused to cut their archived chains; their members stay",
      count: refused.size,
    });
  }
  await dropUnchainedEventPointers(deps.db, beforeDay);
  // Objects an erasure replaced and did not get to delete.
  await collectGarbage(deps.db, deps.bucket);
  const now = new Date(deps.nowMs).toISOString();
  for (const kind of KINDS) {
    const keys = await expireObjects(
      deps.db,
      kind,
      kind === "requests" ? logBefore.slice(0, 10) : beforeDay,
      now,
      EXPIRE_PER_RUN,
    );
    if (keys.length === 0) continue;
    await deps.bucket.delete(keys);
    await forgetObjects(deps.db, keys);
    result.deleted[kind] = keys.length;
  }
  return result;
}

function cutKey(cut: ChainCut): string {
  return JSON.stringify([cut.network_id, cut.transaction_id, cut.test]);
}

/**
 * The cron's run: bounded, with one summary line. A failure (R2 or D1 unavailable) is logged, not
 * thrown, so that what the cron runs after it (retention above all) still runs; whatever the run had
 * not committed is read again by the next one.
 */
export async function archiveOldRows(env: Env, nowMs: number): Promise<void> {
  try {
    const summary = await runArchive(archiveDeps(env, nowMs));
    logLine("info", { message: "archive", ...summary });
  } catch (error) {
    logLine("error", { message: "archive failed; the next run takes it up again", error: String(error) });
  }
}
