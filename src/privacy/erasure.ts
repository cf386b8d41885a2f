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
  noCounts,
  type ObjectErasure,
} from "../domain/erasure";
import { looksLikeClickId } from "../lib/click-id";
import { canonicalClickId, identifierDigest } from "../lib/identifier-hash";
import { hmac } from "../lib/keys";
import type { D1 } from "../storage/d1";
import {
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
  const records = await readConversions(db, found.keys);
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
    const [again] = await readConversions(db, [record.key]);
    if (!again) return first;
    const second = await erase(again);
    return { ...first, chain: second.chain, attested: second.attested, rewrites: second.rewrites };
  });
  for (const outcome of outcomes) countObject(run, outcome);

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
