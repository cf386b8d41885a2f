/**
 * Erasing one person's identifier everywhere the hub keeps it (docs/privacy.md), one bounded run
 * at a time: find up to `limit` conversions that hold it (in D1, as sent or as its keyed hash),
 * have each conversion's object erase it (it checks D1's chain first, and answers D1's events
 * rewritten), rewrite their D1 rows in one batch, then the inbound log, the dead letters and the
 * click. The record is written first, so that the events consumer erases what was still on its
 * way; a later run (the same request again) continues where this one stopped, and finds nothing
 * once all is erased.
 */
import type { ConversionObject, ErasureD1View } from "../conversions/conversion-object";
import { conversionObjectName, fieldsFromColumns } from "../domain/conversion";
import {
  addCounts,
  type ErasableIdentifier,
  type ErasureCounts,
  type ErasureTarget,
  erasureMarker,
  freeTextReplacements,
  noCounts,
  type ObjectErasure,
} from "../domain/erasure";
import { sha256Hex } from "../lib/bytes";
import { looksLikeClickId } from "../lib/click-id";
import { gzipMembers, joinMembers, readMember } from "../lib/gzip-ndjson";
import { canonicalClickId, identifierDigest } from "../lib/identifier-hash";
import { hmac } from "../lib/keys";
import {
  type ArchiveBucket,
  archivedHistory,
  collectGarbage,
  objectsHolding,
  replaceObjectStatements,
} from "../storage/archive";
import type { D1 } from "../storage/d1";
import {
  type ConversionKey,
  type ConversionRecord,
  conversionErasureStatements,
  conversionsHolding,
  type ErasureRow,
  eraseClick,
  eraseDeadLetters,
  eraseInboundLog,
  finishErasureRun,
  partnersOf,
  readConversions,
  startErasure,
} from "../storage/erasures";

/** Conversions per run by default, and at most: each costs one Durable Object call (a subrequest). */
export const ERASURE_DEFAULT_LIMIT = 100;
export const ERASURE_MAX_LIMIT = 500;
/** Inbound log records rewritten per run. */
const INBOUND_LIMIT = 1000;
/** Objects called at once. */
const OBJECT_CONCURRENCY = 8;

export interface ErasureRequest {
  kind: ErasableIdentifier;
  /** The identifier as the network sent it, or as the hub stored it (`h1:…`). */
  value: string;
  network_id: string | null;
  limit: number;
}

export interface ErasureDeps {
  db: D1;
  /** The identifier-hash key (lib/keys.ts). */
  key: CryptoKey;
  conversion(name: string): Pick<ConversionObject, "erase">;
  nowMs: number;
  /** The archive (docs/archive.md): the conversions' archived rows are erased there too. */
  archive?: ArchiveBucket;
}

export interface ErasureRun {
  erasure: ErasureRow;
  /** This call created the record (a first run). */
  created: boolean;
  /** What this run did. */
  run: ErasureCounts;
  /** Conversions still holding the value: call again to continue. */
  remaining: number;
  /** Inbound log records still showing it beyond this run's bound. */
  inbound_remaining: boolean;
  /** Partners that were sent one of the conversions erased in this run: the hub cannot erase their copies. */
  partners: string[];
}

/**
 * The erasure's id: the same identifier (as sent or hashed) and scope always make the same id, so
 * a repeated request is another run of the same erasure, and its marker is the same everywhere.
 * Derived with the identifier-hash key, so the id says nothing about the identifier.
 */
async function erasureId(key: CryptoKey, kind: ErasableIdentifier, digest: string, scope: string | null) {
  const mac = await hmac(key, `erasure:${kind}:${digest}:${scope ?? "*"}`);
  const alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  let id = "";
  for (const byte of mac.subarray(0, 26)) id += alphabet[byte % 32];
  return `ers_${id}`;
}

/** The target of an erasure: the value in every form it may be stored in, and its marker. */
export async function erasureTarget(
  key: CryptoKey,
  kind: ErasableIdentifier,
  value: string,
  networkId: string | null,
): Promise<{ target: ErasureTarget; digest: string }> {
  const digest = await identifierDigest(key, kind, value);
  // A click id is never stored hashed, but a hub click id counts in any case (advertisers' systems
  // change it); a user or device id may be stored hashed, by a network that hashes it.
  const click = canonicalClickId(value);
  const spellings = looksLikeClickId(value) ? [click, click.toUpperCase()] : [];
  const values = kind === "click_id" ? [...new Set([value, ...spellings])] : [...new Set([value, digest])];
  const id = await erasureId(key, kind, digest, networkId);
  return { target: { erasure_id: id, field: kind, values, marker: erasureMarker(id) }, digest };
}

export async function runErasure(request: ErasureRequest, deps: ErasureDeps): Promise<ErasureRun> {
  const { db } = deps;
  const { target, digest } = await erasureTarget(deps.key, request.kind, request.value, request.network_id);
  const started = await startErasure(
    db,
    { id: target.erasure_id, kind: request.kind, identifier_hash: digest, network_id: request.network_id },
    new Date(deps.nowMs).toISOString(),
  );
  const run = noCounts();
  const found = await conversionsHolding(db, target, request.network_id, request.limit);
  const read = async (keys: readonly ConversionKey[]) =>
    withArchived(db, deps.archive, await readConversions(db, keys));
  const records = await read(found.keys);
  const partners = await partnersOf(db, found.keys);

  const erase = (record: ConversionRecord) =>
    deps
      .conversion(conversionObjectName(record.key.network_id, record.key.transaction_id, record.key.test === 1))
      .erase(target, d1View(record));
  const outcomes = await inBatches(records, OBJECT_CONCURRENCY, async (record) => {
    const first = await erase(record);
    if (first.chain !== "broken" || !first.held) return first;
    // D1 may have moved between the read and the object's check (an event confirmed meanwhile):
    // read again and let the object check again; its own records are erased already.
    const [again] = await read([record.key]);
    if (!again) return first;
    const second = await erase(again);
    return { ...first, chain: second.chain, attested: second.attested, rewrites: second.rewrites };
  });
  for (const outcome of outcomes) countObject(run, outcome);

  if (found.keys.length > 0 && deps.archive) {
    // Before D1: should this stop, D1 still holds the value, and the next run finds the conversions again.
    const rewrites = outcomes.flatMap((outcome) => outcome.rewrites);
    await eraseInArchive(db, deps.archive, target, found.keys, rewrites, new Date(deps.nowMs).toISOString());
  }
  if (found.keys.length > 0) {
    const statements = conversionErasureStatements(
      db,
      target,
      found.keys,
      outcomes.flatMap((outcome) => outcome.rewrites),
    );
    const results = await db.batch(statements.map((entry) => entry.statement));
    statements.forEach((entry, index) => {
      if (entry.label) run.d1[entry.label] += results[index]?.meta.changes ?? 0;
    });
  }
  const inbound = await eraseInboundLog(db, target, request.network_id, INBOUND_LIMIT);
  run.d1.inbound_requests = inbound.rewritten;
  run.d1.dead_letters = await eraseDeadLetters(db, target, request.network_id);
  if (request.kind === "click_id") run.d1.clicks = await eraseClick(db, target, request.network_id);

  const remaining = (await conversionsHolding(db, target, request.network_id, 0)).total;
  const totals = addCounts(parseCounts(started.row.counts), run);
  const status = remaining > 0 || inbound.more ? "partial" : "complete";
  const erasure = (await finishErasureRun(db, target.erasure_id, totals, status)) ?? started.row;
  return { erasure, created: started.created, run, remaining, inbound_remaining: inbound.more, partners };
}

export function parseCounts(text: string): ErasureCounts {
  try {
    return addCounts(noCounts(), JSON.parse(text) as ErasureCounts);
  } catch {
    return noCounts();
  }
}

function d1View(record: ConversionRecord): ErasureD1View {
  const row = record.conversion;
  let meta: unknown = row?.meta ?? null;
  try {
    meta = row?.meta ? JSON.parse(row.meta) : null;
  } catch {
    // kept as text: the chain check shows it as a difference
  }
  return {
    rows: record.events.map((event) => ({ ...event, test: event.test === 1 })),
    conversion: row
      ? {
          status: row.status,
          fields: fieldsFromColumns({ ...row, meta }),
          event_time: row.event_time,
          event_time_supplied: row.event_time_supplied === 1,
          first_seen_at: row.first_seen_at,
          version: row.version,
        }
      : null,
    pruned: record.pruned
      ? { seq: record.pruned.seq, hash: record.pruned.hash, pruned_before: record.pruned.pruned_before }
      : null,
  };
}

function countObject(run: ErasureCounts, outcome: ObjectErasure): void {
  const objects = run.objects;
  objects.touched++;
  if (outcome.held) objects.held++;
  if (outcome.state) objects.states++;
  objects.fingerprints += outcome.fingerprints;
  objects.outbox += outcome.outbox;
  objects.in_flight += outcome.in_flight;
  objects.attested += outcome.attested;
  if (outcome.chain === "broken" && outcome.rewrites.length > 0) objects.unverified_chains++;
}

async function inBatches<T, R>(items: readonly T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(work))));
  return results;
}

/** The records with their archived events merged in, so the object checks and rewrites the whole chain. */
async function withArchived(
  db: D1,
  archive: ArchiveBucket | undefined,
  records: ConversionRecord[],
): Promise<ConversionRecord[]> {
  if (!archive) return records;
  return Promise.all(
    records.map(async (record) => {
      const { network_id, transaction_id, test } = record.key;
      const { events } = await archivedHistory(db, archive, network_id, transaction_id, test === 1, ["events"]);
      if (events.length === 0) return record;
      const cutAt = record.pruned?.seq ?? 0;
      const merged = [...events.filter((event) => event.seq > cutAt), ...record.events].sort(
        (a, b) => a.seq - b.seq || a.received_at.localeCompare(b.received_at),
      );
      return { ...record, events: merged };
    }),
  );
}

/** Where a delivery's payload holds each identifier, as the D1 rewrite sets it (storage/erasures.ts). */
const DELIVERY_FIELD = "conversion";

/**
 * Erases the value from the archived members of these conversions: each object holding one is
 * written again with those members replaced (the others copied byte for byte) under its new key,
 * then one D1 transaction moves the manifest row and the pointers to it and records the old key,
 * which is deleted from R2 after (or by the next archive run, should this one stop).
 */
async function eraseInArchive(
  db: D1,
  bucket: ArchiveBucket,
  target: ErasureTarget,
  keys: readonly ConversionKey[],
  rewrites: readonly { event_id: string; payload: string }[],
  now: string,
): Promise<void> {
  const payloads = new Map(rewrites.map((rewrite) => [rewrite.event_id, rewrite.payload]));
  const erased = new Set(keys.map((key) => JSON.stringify([key.network_id, key.transaction_id, key.test])));
  const free = freeTextReplacements(target);
  const scrub = (text: unknown) =>
    typeof text === "string" ? free.reduce((value, [from, to]) => value.replaceAll(from, to), text) : text;
  const eraseRow = (kind: "events" | "deliveries", row: Record<string, unknown>): Record<string, unknown> => {
    if (kind === "events") {
      const payload = payloads.get(String(row.event_id));
      return payload === undefined || payload === row.payload ? row : { ...row, payload };
    }
    const delivery = { ...row };
    try {
      const payload = JSON.parse(String(row.payload)) as Record<string, Record<string, unknown> | undefined>;
      const conversion = payload[DELIVERY_FIELD];
      if (conversion && target.values.includes(String(conversion[target.field]))) {
        delivery.payload = JSON.stringify({
          ...payload,
          [DELIVERY_FIELD]: { ...conversion, [target.field]: target.marker },
        });
      }
    } catch {
      // a payload that does not parse holds nothing the D1 rewrite would touch either
    }
    delivery.last_error = scrub(row.last_error);
    const attempts = Array.isArray(row.attempts_log) ? (row.attempts_log as Record<string, unknown>[]) : [];
    delivery.attempts_log = attempts.map((attempt) => ({
      ...attempt,
      error: scrub(attempt.error),
      response_excerpt: scrub(attempt.response_excerpt),
    }));
    return JSON.stringify(delivery) === JSON.stringify(row) ? row : delivery;
  };

  for (const [oldKey, members] of await objectsHolding(db, keys)) {
    const stored = await bucket.get(oldKey);
    if (!stored) throw new Error(`archive object ${oldKey} is missing`);
    const bytes = new Uint8Array(await stored.arrayBuffer());
    let changed = false;
    const parts: Uint8Array[] = [];
    for (const member of members) {
      const original = bytes.subarray(member.byte_offset, member.byte_offset + member.byte_length);
      if (!erased.has(JSON.stringify([member.network_id, member.transaction_id, member.test]))) {
        parts.push(original);
        continue;
      }
      const rows = await readMember<Record<string, unknown>>(original);
      const rewritten = rows.map((row) => eraseRow(member.kind, row));
      if (rewritten.every((row, index) => row === rows[index])) {
        parts.push(original);
        continue;
      }
      changed = true;
      parts.push((await gzipMembers([rewritten])).body);
    }
    if (!changed) continue;
    const { body, ranges } = joinMembers(parts);
    const ranged = members.flatMap((member, index) => {
      const range = ranges[index];
      return range ? [{ ...member, ...range }] : [];
    });
    const sha256 = await sha256Hex(body);
    const key = oldKey.replace(/-[0-9a-f]{16}\.ndjson\.gz$/, `-${sha256.slice(0, 16)}.ndjson.gz`);
    await bucket.put(key, body as Uint8Array<ArrayBuffer>, {
      sha256,
      httpMetadata: { contentType: "application/x-ndjson" },
    });
    await db.batch(replaceObjectStatements(db, oldKey, { key, bytes: body.length, sha256 }, ranged, now));
  }
  await collectGarbage(db, bucket);
}
