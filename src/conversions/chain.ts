/**
 * The hash chain of a conversion's events (docs/conversion-records.md). The conversion's Durable
 * Object computes each recorded event's hash as it decides it, over the event's own content and
 * the previous event's hash; D1 stores the chain; `verifyChain` checks what D1 holds against
 * itself and against the object's head, and says where and why it breaks. Pure: plain data in,
 * verdicts out; SHA-256 is synchronous so that hashing fits inside the object's SQLite transaction.
 */
import { z } from "@hono/zod-openapi";
import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";
import { type ConversionFields, chainSourceOf, MATERIAL_FIELDS, type RecordedVerdict } from "../domain/conversion";
import type { ConversionStatus } from "../domain/postback";
import { utf8 } from "../lib/bytes";
import { canonicalJson } from "../lib/canonical-json";
import { merge } from "./lifecycle";

/** The version of the canonical content; a change of what is hashed gets a new one. */
export const CHAIN_VERSION = 1;

/** What one event's hash covers: the event as recorded and the hash of the event before it. */
export interface ChainContent {
  network_id: string;
  transaction_id: string;
  test: boolean;
  seq: number;
  event_id: string;
  verdict: RecordedVerdict;
  received_at: string;
  /** The validated event fields as recorded (D1's `payload`); `event_time` only when the network sent one. */
  event: Record<string, unknown>;
  /** The previous event's hash; null for the first event of the chain. */
  prev_hash: string | null;
  /** "pixel" for an event a browser pixel reported, "correction" for an operator's; absent for a network's postback (so every hash from before other sources stays what it was). */
  source?: "pixel" | "correction" | undefined;
}

/** The exact text that is hashed: RFC 8785 JSON of the content with `v`. */
export function canonicalContent(content: ChainContent): string {
  return canonicalJson({ v: CHAIN_VERSION, ...content });
}

/** Lowercase hex SHA-256 of the canonical content's UTF-8 bytes. */
export function chainHash(content: ChainContent): string {
  return bytesToHex(sha256(utf8(canonicalContent(content))));
}

// --- verification ------------------------------------------------------------------------------

/** One event as D1 holds it; `payload` is the raw text of its `payload` column. */
export interface StoredEvent {
  event_id: string;
  network_id: string;
  transaction_id: string;
  test: boolean;
  seq: number;
  verdict: string;
  status: string;
  event_time: string | null;
  payload: string;
  received_at: string;
  hash: string | null;
  prev_hash: string | null;
  /** D1's `source` column: "s2s", "pixel" or "correction" (rows built by hand may leave it out: a postback). */
  source?: string | undefined;
}

/** The conversion's row in D1: what the chain's events must add up to. */
export interface StoredConversion {
  status: string;
  fields: ConversionFields;
  event_time: string;
  event_time_supplied: boolean;
  first_seen_at: string;
  /** D1's `version` column (rows built by hand may leave it out: then it is not compared). */
  version?: number;
}

/** A conversion's state as its object holds it, or as an applied event in its outbox leaves it. */
export interface AttestedState {
  status: string;
  fields: ConversionFields;
  event_time: string;
  event_time_supplied: boolean;
  first_seen_at: string;
  version: number;
}

/** Where history retention cut a conversion's chain: D1 may lack every event up to `seq`. */
export interface RetentionCut {
  seq: number;
  /** The hash of seq `seq`, which the first event D1 keeps links to. */
  hash: string;
  /** The retention cutoff: the events deleted were received before it. */
  before: string;
}

/** An event in the object's outbox: D1 may not hold it yet. */
export interface InFlightEvent {
  seq: number;
  hash: string | null;
  prev_hash: string | null;
  verdict?: string | null;
  /** The conversion's state after it, for an applied (not stale) event. */
  state?: AttestedState | null;
}

/**
 * An event an erasure rewrote (docs/privacy.md): its hash still covers the content as it was
 * recorded, which D1 no longer holds. Before rewriting, the object checked D1's chain against
 * itself; when it verified, the object recorded `content_hash`, the hash of the content as erased,
 * so the proof checks what D1 holds now against that, and the link against the original hash.
 * `content_hash` is null when the chain did not verify at the erasure: then nothing vouches for
 * the rewritten content.
 */
export interface ErasedEvent {
  seq: number;
  hash: string;
  content_hash: string | null;
  erasure_ids: string[];
  fields: string[];
}

/**
 * The conversion object's own record of the chain: its last seq and hash, the events it holds in
 * its outbox until D1 confirms them (those may not be in D1 yet), and, from the object (heads
 * built by hand may leave them out), its current state, where its chain begins, and where
 * retention cut it with its agreement.
 */
export interface ChainHead {
  seq: number;
  hash: string | null;
  in_flight: InFlightEvent[];
  state?: AttestedState | null;
  /** The seq of the chain's first event; null when the chain has not begun or the object does not know. */
  chain_from?: number | null;
  retention?: RetentionCut | null;
  /** Events erasures rewrote (absent in heads built by hand: none). */
  erased?: ErasedEvent[];
}

const HashSchema = z.string().openapi({ description: "Lowercase hex SHA-256.", example: "9f2c…" });

const ProofEventSchema = z.object({
  seq: z.number().int(),
  event_id: z.string(),
  verdict: z.string(),
  received_at: z.string(),
  chained: z.boolean().openapi({ description: "False for an event recorded before the chain existed (no hash)." }),
  hash: HashSchema.nullable(),
  prev_hash: HashSchema.nullable(),
  content: z
    .object({
      v: z.number().int(),
      network_id: z.string(),
      transaction_id: z.string(),
      test: z.boolean(),
      seq: z.number().int(),
      event_id: z.string(),
      verdict: z.string(),
      received_at: z.string(),
      event: z.record(z.string(), z.unknown()),
      prev_hash: HashSchema.nullable(),
    })
    .nullable()
    .openapi({
      description:
        "What the hash covers, rebuilt from D1: hash = SHA-256(RFC 8785 JSON of this object). Null when the stored payload is not JSON.",
    }),
  computed_hash: HashSchema.nullable().openapi({ description: "The hash of `content`, computed now." }),
  erased: z
    .object({
      erasure_ids: z.array(z.string()),
      fields: z.array(z.string()),
      content_hash: HashSchema.nullable().openapi({
        description:
          "The hash of the content as erased, which the conversion's object recorded after checking the chain: `computed_hash` must be it. Null when the chain did not verify at the erasure.",
      }),
    })
    .optional()
    .openapi({
      description:
        "Present when an erasure (POST /v1/erasure) rewrote this event's identifiers: `hash` covers the content as recorded, which is gone, so `content` is checked against `content_hash` and the link uses `hash`.",
    }),
  ok: z.boolean(),
});

const ChainBreakSchema = z.object({
  seq: z.number().int().nullable(),
  event_id: z.string().nullable(),
  reason: z.string(),
});

export const ProofSchema = z
  .object({
    status: z.enum(["verified", "broken", "unchained"]).openapi({
      description:
        "verified: every event hashes to its hash and links to the one before, D1 agrees with the conversion's object (its chain head, where its chain begins, where retention cut it, its state) and the conversion row is what the events add up to; broken: see `breaks`; unchained: no event in D1 has a hash and the object holds no chain (all were recorded before the chain existed), or the chain's first events are still on their way to D1.",
    }),
    verified: z.boolean(),
    algorithm: z.string(),
    head: z
      .object({ seq: z.number().int(), hash: HashSchema })
      .nullable()
      .openapi({ description: "D1's last chained event." }),
    events: z.array(ProofEventSchema).openapi({ description: "Every event D1 holds, by seq." }),
    breaks: z.array(ChainBreakSchema).openapi({ description: "Where the chain breaks, and why; empty when verified." }),
    anchor: z
      .object({
        seq: z.number().int(),
        hash: HashSchema.nullable(),
        in_flight: z.number().int(),
        agrees: z.boolean(),
        note: z.string(),
        chain_from: z
          .number()
          .int()
          .nullable()
          .openapi({ description: "Where the object's chain begins; null when the object does not know." }),
        retention: z.object({ seq: z.number().int(), hash: HashSchema, before: z.string() }).nullable().openapi({
          description:
            "Where history retention cut the chain, as the object agreed to: D1 may lack the events up to this seq.",
        }),
      })
      .nullable()
      .openapi({
        description:
          "The chain head the conversion's Durable Object keeps (it outlives the dedupe window): catches deleted latest events and a rewritten chain.",
      }),
    state: z.object({ checked: z.boolean(), agrees: z.boolean().nullable(), note: z.string() }).openapi({
      description:
        "Whether D1's conversion row is what the chain's events add up to (folded as the object merges them); checked when the chain covers the conversion from seq 1.",
    }),
    object_state: z.object({ checked: z.boolean(), agrees: z.boolean().nullable(), note: z.string() }).openapi({
      description:
        "Whether D1's conversion row is the state the conversion's Durable Object holds (it keeps it for the conversion's whole life), or one the events still on their way leave; checked whenever the conversion has a chain.",
    }),
    notes: z.array(z.string()),
  })
  .openapi("ConversionProof");

export type Proof = z.infer<typeof ProofSchema>;
type ProofEvent = z.infer<typeof ProofEventSchema>;
type ChainBreak = z.infer<typeof ChainBreakSchema>;

export const ALGORITHM =
  "hash = lowercase hex SHA-256 of the UTF-8 bytes of the RFC 8785 (JCS) JSON of {v, network_id, transaction_id, test, seq, event_id, verdict, received_at, event, prev_hash}";

const RECORDED_VERDICTS: readonly string[] = ["accepted", "updated", "stale"];

function parsePayload(payload: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(payload);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** What a D1 row's hash covers, with `event` as its fields. */
export function contentOf(row: StoredEvent, event: Record<string, unknown>): ChainContent {
  return {
    network_id: row.network_id,
    transaction_id: row.transaction_id,
    test: row.test,
    seq: row.seq,
    event_id: row.event_id,
    verdict: row.verdict as RecordedVerdict,
    received_at: row.received_at,
    event,
    prev_hash: row.prev_hash,
    source: chainSourceOf(row.source),
  };
}

function safeHash(content: ChainContent): string | null {
  try {
    return chainHash(content);
  } catch {
    return null;
  }
}

/**
 * Verifies a conversion's history as D1 holds it (`rows`, one world, any order) against itself,
 * against D1's conversion row, and against what the conversion's object attests: its head, where
 * its chain begins, where retention cut it (with its agreement), and its state. Events without a
 * hash were recorded before the chain existed: listed, never counted as a break, unless they sit
 * where the chain had already begun.
 */
export function verifyChain(input: {
  rows: readonly StoredEvent[];
  conversion: StoredConversion | null;
  anchor: ChainHead | null;
  /** D1's record of the last chained event history retention deleted, if it deleted any. */
  pruned?: { seq: number; hash: string; pruned_before: string } | null;
}): Proof {
  const rows = [...input.rows].sort((a, b) => a.seq - b.seq || compare(a.received_at, b.received_at));
  const { conversion, anchor } = input;
  const pruned = input.pruned ?? null;
  const breaks: ChainBreak[] = [];
  const notes: string[] = [];
  const fail = (row: StoredEvent | null, reason: string) =>
    breaks.push({ seq: row?.seq ?? null, event_id: row?.event_id ?? null, reason });

  const events: ProofEvent[] = [];
  const chained: { row: StoredEvent; event: Record<string, unknown> | null }[] = [];
  const erasedBySeq = new Map((anchor?.erased ?? []).map((erased) => [erased.seq, erased]));
  const verifiedErased: number[] = [];
  for (const row of rows) {
    const event = parsePayload(row.payload);
    const content = event ? contentOf(row, event) : null;
    const computed = content && row.hash !== null ? safeHash(content) : null;
    const erased = row.hash !== null ? erasedBySeq.get(row.seq) : undefined;
    events.push({
      seq: row.seq,
      event_id: row.event_id,
      verdict: row.verdict,
      received_at: row.received_at,
      chained: row.hash !== null,
      hash: row.hash,
      prev_hash: row.prev_hash,
      content: content ? { v: CHAIN_VERSION, ...content } : null,
      computed_hash: computed,
      ...(erased
        ? { erased: { erasure_ids: erased.erasure_ids, fields: erased.fields, content_hash: erased.content_hash } }
        : {}),
      ok: true,
    });
    if (row.hash === null) continue;
    chained.push({ row, event });
    const erasedBy = erased ? `erasure ${erased.erasure_ids.join(", ")} (${erased.fields.join(", ")})` : "";
    if (!event) fail(row, "its payload is not a JSON object, so its content cannot be hashed");
    else if (!RECORDED_VERDICTS.includes(row.verdict))
      fail(row, `its verdict "${row.verdict}" is not one the hub records`);
    else if (computed === null) fail(row, "its content is not representable as RFC 8785 JSON");
    else if (computed !== row.hash && erased && erased.hash === row.hash && erased.content_hash === computed) {
      verifiedErased.push(row.seq);
    } else if (computed !== row.hash && erased && erased.hash === row.hash && erased.content_hash === null) {
      fail(
        row,
        `${erasedBy} rewrote it when D1's chain did not verify against the conversion's object, so its content can no longer be checked`,
      );
    } else if (computed !== row.hash) {
      fail(
        row,
        erased && erased.hash === row.hash
          ? `its content hashes to ${computed}, neither its recorded hash ${row.hash} nor the hash ${erased.content_hash} its object recorded when ${erasedBy} rewrote it: it changed after the erasure`
          : `its content hashes to ${computed}, not to its recorded hash ${row.hash}: it changed after it was recorded`,
      );
    }
    if (event && event.status !== row.status) {
      fail(
        row,
        `its status column says ${JSON.stringify(row.status)} but the hashed event says ${JSON.stringify(event.status)}`,
      );
    }
    if (event && (event.event_time ?? null) !== row.event_time) {
      fail(
        row,
        `its event_time column says ${JSON.stringify(row.event_time)} but the hashed event says ${JSON.stringify(event.event_time ?? null)}`,
      );
    }
  }

  // The object holds a chain: from then on, D1 must hold it too (or retention cut it, or it is on its way).
  const objectChain = anchor !== null && anchor.hash !== null;
  const first = chained[0]?.row;
  const last = chained[chained.length - 1]?.row;
  if (chained.length === 0 && !objectChain) {
    const proof = emptyProof(events, breaks, notes);
    if (rows.length > 0) {
      notes.push(`All ${rows.length} events were recorded before the hash chain existed: they have no hash to verify.`);
    }
    return proof;
  }

  // Where the chain begins: the object says, when it knows; otherwise D1's first link without a predecessor.
  const chainFrom = anchor?.chain_from ?? (first && first.prev_hash === null ? first.seq : null);
  const misplaced = checkUnchained(rows, conversion, anchor, chainFrom, first, last, fail, notes);

  // Links: from the chain's first event D1 holds to its head, one seq after the other.
  if (first && first.prev_hash === null) {
    if (anchor?.chain_from != null && anchor.chain_from !== first.seq) {
      fail(
        first,
        `it begins a chain (no prev_hash) at seq ${first.seq}, but the conversion's object's chain begins at seq ${anchor.chain_from}`,
      );
    } else if (first.seq > 1) {
      notes.push(
        `The chain begins at seq ${first.seq}: the ${first.seq - 1} events before it were recorded before the hash chain existed.`,
      );
    }
  } else if (first) {
    checkRetentionGap(first, anchor?.retention ?? null, pruned, fail, notes);
  }
  for (let i = 1; i < chained.length; i++) {
    const previous = chained[i - 1]?.row;
    const row = chained[i]?.row;
    if (!previous || !row) continue;
    if (row.seq === previous.seq) fail(row, `two events claim seq ${row.seq}`);
    else if (row.seq !== previous.seq + 1) {
      const stripped = misplaced.filter((seq) => seq > previous.seq && seq < row.seq);
      fail(
        row,
        stripped.length > 0
          ? `seq ${stripped.join(", ")} lost ${stripped.length === 1 ? "its hash" : "their hashes"} after the chain had begun`
          : `${seqs(previous.seq + 1, row.seq - 1)} missing: the chain skips from ${previous.seq} to ${row.seq}`,
      );
    } else if (row.prev_hash !== previous.hash) {
      fail(row, `its prev_hash ${row.prev_hash} is not the hash ${previous.hash} of seq ${previous.seq}`);
    }
  }

  // The object's head against D1's: D1's last chained event; with none, what legitimately stands in for it.
  const head = last?.hash ? { seq: last.seq, hash: last.hash } : null;
  let reference: { seq: number; hash: string | null } | null = head;
  let cutWhole = false;
  if (head === null && anchor !== null && objectChain) {
    const cut = anchor.retention ?? null;
    const start = anchor.in_flight.find((event) => event.hash !== null && event.prev_hash === null);
    if (cut && pruned && pruned.seq <= cut.seq && (pruned.seq < cut.seq || pruned.hash === cut.hash)) {
      // Retention deleted every chained event D1 had, with the object's agreement.
      reference = { seq: pruned.seq, hash: pruned.hash };
      cutWhole = true;
      notes.push(
        `History retention deleted every chained event, up to seq ${pruned.seq} (received before ${pruned.pruned_before}); the conversion's object agreed to the cut.`,
      );
    } else if (start && (anchor.chain_from == null || anchor.chain_from === start.seq)) {
      // The chain's first events are still in the object's outbox.
      reference = { seq: start.seq - 1, hash: null };
    }
  }
  if (verifiedErased.length > 0) {
    notes.push(
      `Erasures rewrote ${seqsOf(verifiedErased)}: ${verifiedErased.length === 1 ? "its content is" : "their contents are"} checked against the hash the conversion's object recorded when it erased them (after checking the chain), and the links against the hashes they were recorded with.`,
    );
  }
  const anchorProof = checkAnchor(anchor, reference, fail);
  const state = checkState(conversion, chained, first, fail);
  const objectState = checkObjectState(conversion, anchor, rows, fail, notes);

  for (const event of events) {
    if (breaks.some((b) => b.event_id === event.event_id)) event.ok = false;
  }
  const status = breaks.length > 0 ? "broken" : chained.length === 0 && !cutWhole ? "unchained" : "verified";
  return {
    status,
    verified: status === "verified",
    algorithm: ALGORITHM,
    head,
    events,
    breaks,
    anchor: anchorProof,
    state,
    object_state: objectState,
    notes,
  };
}

function emptyProof(events: ProofEvent[], breaks: ChainBreak[], notes: string[]): Proof {
  return {
    status: "unchained",
    verified: false,
    algorithm: ALGORITHM,
    head: null,
    events,
    breaks,
    anchor: null,
    state: { checked: false, agrees: null, note: "No chained event to check the conversion against." },
    object_state: {
      checked: false,
      agrees: null,
      note: "Neither D1 nor the conversion's object holds a chain: nothing the conversion row could be checked against.",
    },
    notes,
  };
}

/**
 * Events without a hash are honest only from before the chain: in this life of the object, at a
 * seq before its chain begins; or in an earlier life (an object cleared by code older than the
 * tail), received before this life began and no earlier than D1's row was first seen. Breaks for
 * the rest, except those between two chained events, which the link check names; returns the seqs
 * of all of them.
 */
function checkUnchained(
  rows: readonly StoredEvent[],
  conversion: StoredConversion | null,
  anchor: ChainHead | null,
  chainFrom: number | null,
  first: StoredEvent | undefined,
  last: StoredEvent | undefined,
  fail: (row: StoredEvent | null, reason: string) => void,
  notes: string[],
): number[] {
  const lifeBegan = anchor?.state?.first_seen_at ?? null;
  const earlierLifeSince =
    conversion !== null && lifeBegan !== null && conversion.first_seen_at < lifeBegan ? conversion.first_seen_at : null;
  const headSeq = anchor !== null && anchor.hash !== null ? anchor.seq : null;
  const chainedSeqs = new Set(rows.filter((row) => row.hash !== null).map((row) => row.seq));
  const misplaced: number[] = [];
  let earlier = 0;
  for (const row of rows) {
    if (row.hash !== null) continue;
    if (
      earlierLifeSince !== null &&
      lifeBegan !== null &&
      row.received_at >= earlierLifeSince &&
      row.received_at < lifeBegan
    ) {
      earlier++;
      continue;
    }
    const after =
      chainedSeqs.has(row.seq) ||
      (chainFrom !== null && row.seq >= chainFrom) ||
      (first !== undefined && row.seq > first.seq) ||
      (headSeq !== null && row.seq > headSeq);
    if (!after) continue;
    misplaced.push(row.seq);
    if (first && last && row.seq > first.seq && row.seq < last.seq && !chainedSeqs.has(row.seq)) continue;
    const began =
      chainFrom !== null
        ? `the chain began at seq ${chainFrom}`
        : first
          ? `the chain had begun by seq ${first.seq}`
          : `the conversion's object holds a chain up to seq ${headSeq}`;
    const beyond =
      headSeq !== null && row.seq > headSeq ? `, and the conversion's object recorded only up to seq ${headSeq}` : "";
    fail(
      row,
      chainedSeqs.has(row.seq)
        ? `it claims seq ${row.seq}, which a chained event holds, without a hash, though ${began}: it was inserted`
        : `it has no hash, though ${began}${beyond}: it was inserted, or its hash removed, after the chain had begun`,
    );
  }
  if (earlier > 0 && earlierLifeSince !== null) {
    notes.push(
      `${earlier} event(s) are from an earlier life of the conversion (first seen ${earlierLifeSince}), whose object was cleared before the hash chain existed: they have no hash to verify.`,
    );
  }
  return misplaced;
}

/**
 * D1 lacks the events before its first chained one: legitimate only when history retention
 * deleted them, which takes D1's record of the run and the object's agreement to the cut (retention
 * asks the object first; a D1 writer can insert the record, not the agreement).
 */
function checkRetentionGap(
  first: StoredEvent,
  cut: RetentionCut | null,
  pruned: { seq: number; hash: string; pruned_before: string } | null,
  fail: (row: StoredEvent | null, reason: string) => void,
  notes: string[],
): void {
  const gapEnd = first.seq - 1;
  const recorded = pruned !== null && pruned.seq === gapEnd && pruned.hash === first.prev_hash;
  const agreed = cut !== null && gapEnd <= cut.seq && (gapEnd < cut.seq || cut.hash === first.prev_hash);
  if (recorded && agreed) {
    notes.push(
      `History retention deleted the events up to seq ${gapEnd} (received before ${pruned.pruned_before}); the conversion's object agreed to the cut, and the chain is verified from seq ${gapEnd}'s hash, which it kept.`,
    );
  } else if (!recorded) {
    fail(
      first,
      `it follows an event with hash ${first.prev_hash} that D1 does not hold, and no history retention run recorded deleting it: seq ${gapEnd} was deleted${agreed ? ` (the conversion's object agreed to retention cutting up to seq ${cut?.seq}, but D1 keeps no record of the run)` : ""}`,
    );
  } else {
    const agreedTo =
      cut === null
        ? "agreed to no cut"
        : cut.seq === gapEnd
          ? `agreed to a cut at seq ${gapEnd} with hash ${cut.hash}, not ${first.prev_hash}`
          : `agreed to cutting only up to seq ${cut.seq}`;
    fail(
      first,
      `D1 records history retention deleting the events up to seq ${gapEnd}, but the conversion's object, which retention asks before every cut, ${agreedTo}: they were deleted some other way`,
    );
  }
}

/** D1's head against the object's: equal, or D1 behind by exactly the events still in the outbox. */
function checkAnchor(
  anchor: ChainHead | null,
  head: { seq: number; hash: string | null } | null,
  fail: (row: StoredEvent | null, reason: string) => void,
): Proof["anchor"] {
  if (anchor === null) {
    if (head !== null) fail(null, "the conversion's object holds no chain head for events D1 holds as chained");
    return null;
  }
  const result = (agrees: boolean, note: string) => {
    if (!agrees) fail(null, note);
    return {
      seq: anchor.seq,
      hash: anchor.hash,
      in_flight: anchor.in_flight.length,
      agrees,
      note,
      chain_from: anchor.chain_from ?? null,
      retention: anchor.retention ?? null,
    };
  };
  if (head === null) {
    if (anchor.hash === null) return null;
    return result(
      false,
      `the conversion's object holds a chain up to seq ${anchor.seq} (hash ${anchor.hash}), but D1 holds no event with a hash and no record of retention deleting them with the object's agreement: their hashes were removed, or the events deleted`,
    );
  }
  if (anchor.seq === head.seq) {
    return anchor.hash === head.hash
      ? result(true, "D1's last event is the object's last event.")
      : result(false, `the object's last event (seq ${anchor.seq}) has hash ${anchor.hash}; D1's has ${head.hash}`);
  }
  if (anchor.seq < head.seq) {
    return result(false, `D1 holds events up to seq ${head.seq}, but the object recorded only up to seq ${anchor.seq}`);
  }
  // The outbox keeps an event until D1 confirms it: one D1 lacks that is not there was deleted from D1.
  const pending = new Map(anchor.in_flight.map((event) => [event.seq, event]));
  const inFlightAfterHead = anchor.in_flight.filter((event) => event.seq > head.seq && event.seq <= anchor.seq);
  if (inFlightAfterHead.length !== anchor.seq - head.seq) {
    return result(
      false,
      `the object recorded up to seq ${anchor.seq} and D1 confirmed what is not in its outbox, but D1's chain ends at seq ${head.seq}: events after it were deleted from D1`,
    );
  }
  const next = pending.get(head.seq + 1);
  if (next && next.prev_hash !== head.hash) {
    return result(false, `the object's seq ${next.seq} follows hash ${next.prev_hash}, not D1's head ${head.hash}`);
  }
  return result(
    true,
    `D1 is ${anchor.seq - head.seq} event(s) behind the object: seq ${head.seq + 1} to ${anchor.seq} are still on their way.`,
  );
}

/** Folds the chain's applied events as the object does (lifecycle `merge`) and compares D1's row. */
function checkState(
  conversion: StoredConversion | null,
  chained: readonly { row: StoredEvent; event: Record<string, unknown> | null }[],
  first: StoredEvent | undefined,
  fail: (row: StoredEvent | null, reason: string) => void,
): Proof["state"] {
  if (conversion === null) {
    fail(null, "D1 has no conversion row for these events");
    return { checked: true, agrees: false, note: "D1 has no conversion row for these events." };
  }
  if (first?.seq !== 1) {
    return {
      checked: false,
      agrees: null,
      note: "The chain does not begin at seq 1, so the conversion's fields cannot be rebuilt from it alone.",
    };
  }
  if (conversion.first_seen_at !== first.received_at) {
    return {
      checked: false,
      agrees: null,
      note: "The conversion row predates the chain's first event (an earlier life of the conversion's object, before it kept its history's tail).",
    };
  }
  let expected: Omit<StoredConversion, "first_seen_at"> | null = null;
  for (const { row, event } of chained) {
    if (!event || (row.verdict !== "accepted" && row.verdict !== "updated")) continue;
    const fields = pickFields(event);
    const suppliedTime = typeof event.event_time === "string" ? event.event_time : undefined;
    expected = {
      status: String(event.status),
      fields: expected ? merge(expected.fields, fields) : fields,
      event_time: suppliedTime ?? row.received_at,
      event_time_supplied: suppliedTime !== undefined,
    };
  }
  if (expected === null) return { checked: false, agrees: null, note: "No applied event in the chain." };
  const differences = differencesOf(conversion, expected);
  if (differences.length > 0) {
    const note = `the conversion row is not what its chained events add up to: ${differences.join("; ")}`;
    fail(null, note);
    return { checked: true, agrees: false, note };
  }
  return { checked: true, agrees: true, note: "The conversion row is what its chained events add up to." };
}

/**
 * D1's row against the state the conversion's object holds, whatever part of the chain D1 still
 * has: the same state (and version), or the state an event still in the outbox leaves (D1 has it,
 * its receipt has not reached the object yet); while D1 is behind the outbox's applied events, it
 * cannot be compared yet. `first_seen_at` is the object's life's; D1's row may be older only when
 * D1 shows an earlier life (an event without a hash received exactly then).
 */
function checkObjectState(
  conversion: StoredConversion | null,
  anchor: ChainHead | null,
  rows: readonly StoredEvent[],
  fail: (row: StoredEvent | null, reason: string) => void,
  notes: string[],
): Proof["object_state"] {
  const attested = anchor?.state ?? null;
  if (anchor === null || attested === null) {
    return { checked: false, agrees: null, note: "The conversion's object holds no state to compare with." };
  }
  // checkState has counted this break.
  if (conversion === null) return { checked: true, agrees: false, note: "D1 has no conversion row for these events." };
  const differences: string[] = [];
  let earlierLife: string | null = null;
  if (conversion.first_seen_at !== attested.first_seen_at) {
    const evident =
      conversion.first_seen_at < attested.first_seen_at &&
      rows.some((row) => row.hash === null && row.received_at === conversion.first_seen_at);
    if (evident) {
      earlierLife = `D1's conversion was first seen at ${conversion.first_seen_at}, in an earlier life of its object (cleared by code older than the tail, before the hash chain existed); the object's life began at ${attested.first_seen_at}.`;
    } else {
      differences.push(`first_seen_at is ${shown(conversion.first_seen_at)}, not ${shown(attested.first_seen_at)}`);
    }
  }
  const applied = anchor.in_flight.flatMap((event) => (event.state ? [{ seq: event.seq, state: event.state }] : []));
  const current = differencesOf(conversion, attested);
  let verdict: Proof["object_state"] = {
    checked: true,
    agrees: true,
    note: "D1's conversion row is the state the conversion's object holds.",
  };
  if (current.length > 0) {
    const match = [...applied].reverse().find((event) => differencesOf(conversion, event.state).length === 0);
    const oldest = Math.min(...applied.map((event) => event.state.version));
    if (match) {
      verdict = {
        checked: true,
        agrees: true,
        note: `D1's conversion row is the state seq ${match.seq} left; the object's later events are still on their way.`,
      };
    } else if (applied.length > 0 && (conversion.version === undefined || conversion.version < oldest)) {
      verdict = {
        checked: false,
        agrees: null,
        note: `D1's conversion row is older than the state the events still on their way (seq ${applied.map((event) => event.seq).join(", ")}) leave: it can be compared once D1 has them.`,
      };
    } else {
      differences.push(...current);
    }
  }
  if (differences.length > 0) {
    const note = `D1's conversion row is not the state the conversion's object holds: ${differences.join("; ")}${earlierLife ? ` (${earlierLife})` : ""}`;
    fail(null, note);
    return { checked: true, agrees: false, note };
  }
  if (earlierLife) notes.push(earlierLife);
  return verdict;
}

/** What differs between D1's row and a state: status, fields, time, whose clock, and the version when both have one. */
function differencesOf(
  held: StoredConversion,
  expected: Omit<StoredConversion, "first_seen_at" | "version"> & { version?: number },
): string[] {
  const differences: string[] = [];
  if (held.status !== expected.status)
    differences.push(`status is ${shown(held.status)}, not ${shown(expected.status)}`);
  for (const key of MATERIAL_FIELDS) {
    if (key === "status") continue;
    const value = held.fields[key];
    const built = expected.fields[key];
    if (canonicalJson(value ?? null) !== canonicalJson(built ?? null))
      differences.push(`${key} is ${shown(value)}, not ${shown(built)}`);
  }
  if (held.event_time !== expected.event_time) {
    differences.push(`event_time is ${shown(held.event_time)}, not ${shown(expected.event_time)}`);
  }
  if (held.event_time_supplied !== expected.event_time_supplied) {
    differences.push(`event_time_supplied is ${held.event_time_supplied}, not ${expected.event_time_supplied}`);
  }
  if (held.version !== undefined && expected.version !== undefined && held.version !== expected.version) {
    differences.push(`version is ${held.version}, not ${expected.version}`);
  }
  return differences;
}

function shown(value: unknown): string {
  return JSON.stringify(value ?? null);
}

function pickFields(event: Record<string, unknown>): ConversionFields {
  const fields: Record<string, unknown> = {};
  for (const key of MATERIAL_FIELDS) if (event[key] !== undefined) fields[key] = event[key];
  return { ...(fields as ConversionFields), status: event.status as ConversionStatus };
}

/** "seq 4" or "seq 4, 6". */
function seqsOf(list: readonly number[]): string {
  return `seq ${list.join(", ")}`;
}

/** "seq 4 is" or "seq 4 to 9 are". */
function seqs(from: number, to: number): string {
  return from === to ? `seq ${from} is` : `seq ${from} to ${to} are`;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
