/**
 * ConversionObject: one per (network_id, transaction_id, test). It decides every incoming event against
 * the conversion's state, records it in one SQLite transaction, and answers. An event's row holds
 * its EVENTS message too (the outbox is the events whose `message` is not NULL: one row written per
 * event, not two). Its alarm sends those messages to the EVENTS queue, retrying until the queue
 * takes them. A message stays until the events consumer confirms that D1 has the event (`confirm`);
 * until then the alarm sends it again now and then, so an event survives a queue that loses
 * messages (wrangler dev's local queues live in memory and die with the process). Once no message
 * is pending and the dedupe window has passed, the object drops its history and keeps a one-row
 * tail (see `keepTail`).
 *
 * Each recorded event is a link of the conversion's hash chain (chain.ts), hashed inside the same
 * SQLite transaction that decides it. An erasure (`erase`, docs/privacy.md) rewrites one person's
 * identifier in the object's records and attests the events it rewrites, so the chain still proves.
 */
import { DurableObject } from "cloudflare:workers";
import { configOf } from "../config";
import {
  type ConversionFields,
  type ConversionState,
  chainSourceOf,
  eventSourceOf,
  type IngestAnswer,
  type RecordedVerdict,
  type RecordInput,
  type RecordResult,
} from "../domain/conversion";
import {
  type ErasableIdentifier,
  type ErasureTarget,
  eraseEventMessage,
  eraseFields,
  keepErased,
  type ObjectErasure,
} from "../domain/erasure";
import type { EventMessage } from "../domain/messages";
import type { ConversionStatus } from "../domain/postback";
import { newId } from "../lib/bytes";
import { logLine } from "../lib/log";
import { countOutboxResendsStatements, reportUnconfirmedStatements } from "../storage/metrics";
import {
  type AttestedState,
  type ChainHead,
  chainHash,
  contentOf,
  type StoredConversion as D1Conversion,
  type ErasedEvent,
  type RetentionCut,
  type StoredEvent,
  verifyChain,
} from "./chain";
import { chainContentOf, eraseFingerprint } from "./erasure";
import { decide, fingerprint, materialFields, merge } from "./lifecycle";
import { createSchema, ensureErasedEvents, hasErasedEvents, openSchema } from "./object-schema";

/** The queue seam: the alarm only needs `sendBatch`. */
export type EventsQueue = Pick<Queue<EventMessage>, "sendBatch">;

const OUTBOX_BATCH = 100;
const MAX_FLUSH_BACKOFF_MS = 5 * 60_000;
/** An unconfirmed row is sent again after OUTBOX_RESEND_SECONDS, doubling each time up to this. */
const MAX_RESEND_DELAY_MS = 60 * 60_000;
/**
 * What the object last told D1 of its overdue events (outbox_unconfirmed, migration 0021), in its
 * own storage: absent while it has told D1 nothing, which is always, unless something went wrong.
 */
const UNCONFIRMED_REPORT_KEY = "outbox_unconfirmed_report";
/** When D1 did not take that report, the alarm tries again this soon (whatever else it waits for). */
const REPORT_RETRY_MS = 60_000;

interface UnconfirmedState {
  events: number;
  oldest_at: string | null;
}

interface StoredConversion {
  state: ConversionState;
  version: number;
  first_seen_at: string;
  last_event_at: string;
  /** The answer of the event that set the state (null only in an object upgraded without one). */
  answer: IngestAnswer | null;
  /** The chain head: the last recorded event's seq, and its hash (null before the chain existed). */
  head: { seq: number; hash: string | null };
  /** The seq of the chain's first event in this life; null before it began, or not known (see object-schema.ts). */
  chain_from: number | null;
  /** Where history retention cut the chain in D1, as retention told the object and the object checked. */
  retention: RetentionCut | null;
  /** Fields erasures erased, with the marker each left: a later event's value for them becomes that marker. */
  erased: Partial<Record<ErasableIdentifier, string>>;
}

/** D1's record of a conversion, as the erasure route read it: what the object checks before it rewrites. */
export interface ErasureD1View {
  rows: StoredEvent[];
  conversion: D1Conversion | null;
  pruned: { seq: number; hash: string; pruned_before: string } | null;
}

interface StateRow extends Record<string, SqlStorageValue> {
  status: string;
  source: string;
  event_time: string;
  event_time_supplied: number;
  fields: string;
  version: number;
  first_seen_at: string;
  last_event_at: string;
  answer: string | null;
  head_seq: number;
  head_hash: string | null;
  chain_from: number | null;
  retention_seq: number | null;
  retention_hash: string | null;
  retention_before: string | null;
  erased: string | null;
}

/** The answer to retention's `cutChain`: whether D1 may delete the chain up to the cut. */
export interface CutAnswer {
  accepted: boolean;
  reason: string;
}

export class ConversionObject extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Where the alarm sends outbox messages; tests swap in a failing queue to prove nothing is lost. */
  eventsQueue: EventsQueue;
  /**
   * The seqs of the events this instance recorded and has not sent yet: its alarm sends them at
   * once. An event is recorded already charged for its first send (sends 1, due a resend delay
   * later: what sending it would have written), so that send writes nothing. Lost with the
   * instance, which is why a new instance sends every pending message at once (see `sentEarlierRows`).
   */
  private readonly unsent = new Set<number>();
  /**
   * Whether this instance's alarm has sent the pending messages it found in storage. Until then it
   * cannot tell a message an earlier instance sent from one it recorded and was lost (evicted,
   * crashed, restarted by a deploy) before sending, so it sends them all at once rather than leave
   * one to its due time, OUTBOX_RESEND_SECONDS late. A second copy of a sent event is harmless:
   * the events consumer keeps its history by event id.
   */
  private sentEarlierRows = false;
  /**
   * Until `sentEarlierRows`: the last seq up to which this instance has sent every pending message
   * (its first sends are a batch at a time, OUTBOX_BATCH; the rest are still not known to be sent).
   */
  private sentEarlierThrough = 0;
  private flushFailures = 0;
  private schemaReady = false;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.eventsQueue = env.EVENTS;
  }

  /** For a write: the tables, created now if the object has none (see object-schema.ts). */
  private ensureSchema(): void {
    if (!this.hasSchema()) {
      createSchema(this.sql);
      this.schemaReady = true;
    }
  }

  /** For a read: whether the object holds anything, upgraded to the current schema. */
  private hasSchema(): boolean {
    if (!this.schemaReady) this.schemaReady = openSchema(this.ctx.storage);
    return this.schemaReady;
  }

  /** Empties an object that holds tables but no conversion (nothing to keep a tail of). */
  private async clear(): Promise<void> {
    await this.ctx.storage.deleteAll();
    this.schemaReady = false;
  }

  /**
   * Decides and records one event. Everything between reading the state and writing the event
   * row is synchronous SQLite, so concurrent calls cannot interleave; the reply leaves the object
   * only once the write is durable (the output gate).
   */
  async record(input: RecordInput): Promise<RecordResult> {
    this.ensureSchema();
    const result = this.ctx.storage.transactionSync(() => this.decideAndMaybeAppend(input, true));
    if (result.ok && result.answer.status !== "duplicate") {
      await this.ctx.storage.setAlarm(Date.now());
    }
    return result;
  }

  /**
   * What `record` would decide, without recording anything (for the explain endpoint). The event id
   * of a would-be new event is not known yet and reads `(not recorded)`.
   */
  async peek(input: RecordInput): Promise<
    RecordResult & {
      current_status: ConversionStatus | null;
      /** The conversion's fields as this event would leave them, and when it was first seen; null for a new one. */
      merged: { fields: ConversionFields; first_seen_at: string } | null;
    }
  > {
    this.hasSchema();
    const stored = this.loadStored();
    const incoming = keepErased(materialFields(input.postback), stored?.state.fields ?? null, stored?.erased ?? {});
    const merged = stored && { fields: merge(stored.state.fields, incoming), first_seen_at: stored.first_seen_at };
    return { ...this.decideAndMaybeAppend(input, false), current_status: stored?.state.status ?? null, merged };
  }

  private decideAndMaybeAppend(input: RecordInput, write: boolean): RecordResult {
    const stored = this.loadStored();
    // An erased conversion stays erased: whatever a later event brings for an erased field is the marker.
    const fields = keepErased(materialFields(input.postback), stored?.state.fields ?? null, stored?.erased ?? {});
    const source = input.source ?? "s2s";
    const print = fingerprint(fields, source);
    const state = stored?.state ?? null;
    const decision = decide(
      state,
      { fields, event_time: input.postback.event_time, source },
      (candidate) => this.findAnswer(candidate) !== null,
    );
    if (decision.verdict === "duplicate") {
      const original =
        decision.of === "recorded" ? this.findAnswer(print) : (stored?.answer ?? this.latestAppliedAnswer());
      if (!original) throw new Error("duplicate without a recorded answer");
      const answer: IngestAnswer = { ...original, status: "duplicate" };
      // A repeat of a recorded event gets this answer until the history goes; one matched against
      // the current state may not, once the state moves on (see ingest/answer-cache.ts).
      if (decision.of === "current" || !stored) return { ok: true, answer };
      return { ok: true, answer, final_until_ms: this.historyKeptUntil(stored.last_event_at) };
    }
    if (decision.verdict === "conflict") {
      return { ok: false, conversion_status: state?.status ?? fields.status, errors: decision.errors };
    }
    if (!write) {
      const status = decision.verdict === "stale" && state ? state.status : fields.status;
      return {
        ok: true,
        answer: {
          status: decision.verdict,
          event_id: "(not recorded)",
          network_id: input.network_id,
          transaction_id: input.transaction_id,
          conversion_status: status,
        },
      };
    }
    // Recorded with its fingerprint: every repeat is a duplicate of this answer (not a correction's,
    // which is judged against the current state each time).
    const answer = this.append(input, fields, print, decision.verdict, stored);
    if (source === "correction") return { ok: true, answer };
    return { ok: true, answer, final_until_ms: this.historyKeptUntil(input.received_at) };
  }

  /**
   * The events consumer's receipt: D1 has these events, so their messages can go (the events stay,
   * the dedupe history, until the window ends). Keyed by event id, which never repeats (objects
   * cleared by earlier code started their seqs again). A receipt for an event already confirmed
   * writes nothing.
   */
  async confirm(eventIds: readonly string[]): Promise<void> {
    if (!this.hasSchema()) return;
    this.sql.exec(
      "UPDATE events SET message = NULL WHERE event_id IN (SELECT value FROM json_each(?)) AND message IS NOT NULL",
      JSON.stringify(eventIds),
    );
    // An object that told D1 of overdue events tells it now what is left (its alarm writes, not this receipt).
    if (this.reportedUnconfirmed()) {
      await this.ctx.storage.setAlarm(Date.now());
      return;
    }
    // Straight to the next thing to do (usually the end of the dedupe window), not a wake-up at the resend time.
    await this.scheduleNext();
  }

  /**
   * Sends the messages this instance has not sent yet (on its first send, every pending one),
   * and the due ones (sent ones still waiting for their receipt after the resend delay), to the
   * EVENTS queue. When the queue refuses, tries again later, forever.
   */
  override async alarm(): Promise<void> {
    if (!this.hasSchema()) return;
    const now = Date.now();
    const rows = this.sql
      .exec<{ seq: number; message: string; sends: number; due_at: number }>(
        `SELECT seq, message, sends, due_at FROM events
         WHERE message IS NOT NULL AND ((? AND seq > ?) OR seq IN (SELECT value FROM json_each(?)) OR due_at <= ?)
         ORDER BY seq LIMIT ?`,
        this.sentEarlierRows ? 0 : 1,
        this.sentEarlierThrough,
        JSON.stringify([...this.unsent]),
        now,
        OUTBOX_BATCH,
      )
      .toArray();
    const first = rows.filter((row) => this.unsent.has(row.seq));
    // Resends, and messages an earlier instance (or earlier code) recorded whose due time came. An
    // earlier message sent early, before its due time, is charged nothing: it is not known to be a resend.
    const due = rows.filter((row) => !this.unsent.has(row.seq) && row.due_at <= now);
    const resent = due.filter((row) => row.sends > 0).length;
    if (rows.length > 0) {
      try {
        await this.eventsQueue.sendBatch(
          rows.map((row) => ({ body: JSON.parse(row.message) as EventMessage, contentType: "json" as const })),
        );
      } catch (error) {
        this.flushFailures++;
        const delayMs = Math.min(1000 * 2 ** (this.flushFailures - 1), MAX_FLUSH_BACKOFF_MS);
        logLine("warn", {
          message: "outbox flush failed; will retry",
          rows: rows.length,
          retry_in_ms: delayMs,
          error: String(error),
        });
        // The queue refusing for longer than the resend delay leaves events unconfirmed too; the
        // next alarm (within the backoff) is the retry if D1 does not take the report either.
        await this.reportUnconfirmed(now);
        await this.ctx.storage.setAlarm(Date.now() + delayMs);
        return;
      }
      this.flushFailures = 0;
      // Every pending message up to the batch's last seq was in it; a full batch may have left more.
      if (rows.length < OUTBOX_BATCH) this.sentEarlierRows = true;
      else this.sentEarlierThrough = Math.max(this.sentEarlierThrough, rows[rows.length - 1]?.seq ?? 0);
      for (const row of first) this.unsent.delete(row.seq);
      const resendMs = configOf(this.env).OUTBOX_RESEND_SECONDS * 1000;
      // `message IS NOT NULL`: an event whose receipt came while the queue took the batch is done,
      // and writes nothing more.
      if (due.length > 0) {
        this.sql.exec(
          `UPDATE events SET sends = sends + 1, due_at = ? + min(?, ? * (1 << min(sends, 20)))
           WHERE seq IN (SELECT value FROM json_each(?)) AND message IS NOT NULL`,
          now,
          MAX_RESEND_DELAY_MS,
          resendMs,
          JSON.stringify(due.map((row) => row.seq)),
        );
      }
      // A first send the queue refused until past its due time: its wait for the receipt starts now.
      const late = first.filter((row) => row.due_at <= now);
      if (late.length > 0) {
        this.sql.exec(
          "UPDATE events SET due_at = ? WHERE seq IN (SELECT value FROM json_each(?)) AND message IS NOT NULL",
          now + resendMs,
          JSON.stringify(late.map((row) => row.seq)),
        );
      }
      if (resent > 0) {
        logLine("warn", { message: "outbox re-sent unconfirmed events", rows: resent });
        await this.countResends(resent, now);
      }
    }
    // Only an object with overdue events, or one that had some, writes the gauge's row.
    const wasOverdue = this.reportedUnconfirmed();
    const reported = wasOverdue || resent > 0 ? await this.reportUnconfirmed(now) : true;
    await this.scheduleNext();
    if (!reported) await this.alarmWithin(REPORT_RETRY_MS);
  }

  /** Whether the object's last report to D1 said it had overdue events (so it owes D1 the next one). */
  private reportedUnconfirmed(): boolean {
    return this.ctx.storage.kv.get<UnconfirmedState>(UNCONFIRMED_REPORT_KEY) !== undefined;
  }

  /**
   * Tells D1 (outbox_unconfirmed) how many pending events have gone unconfirmed past their deadline:
   * sent again at least once, or not sent at all (the queue refusing) since longer than the resend
   * delay (not sent: `unsent`, sends 0 in an outbox row earlier code recorded, or any until this
   * instance has sent the earlier ones, which may never have been sent). Written only when it
   * changed since the last report, and the row removed once none is left. False when D1 did not
   * take it (the object's own record is then left as it was).
   */
  private async reportUnconfirmed(nowMs: number): Promise<boolean> {
    const deadline = new Date(nowMs - configOf(this.env).OUTBOX_RESEND_SECONDS * 1000).toISOString();
    const current = this.sql
      .exec<{ events: number; oldest_at: string | null }>(
        `SELECT count(*) AS events, min(message ->> '$.received_at') AS oldest_at FROM events
         WHERE message IS NOT NULL AND (sends >= 2
           OR ((sends = 0 OR (? AND seq > ?) OR seq IN (SELECT value FROM json_each(?))) AND message ->> '$.received_at' < ?))`,
        this.sentEarlierRows ? 0 : 1,
        this.sentEarlierThrough,
        JSON.stringify([...this.unsent]),
        deadline,
      )
      .one();
    const last = this.ctx.storage.kv.get<UnconfirmedState>(UNCONFIRMED_REPORT_KEY);
    if (current.events === 0 && last === undefined) return true;
    if (last && last.events === current.events && last.oldest_at === current.oldest_at) return true;
    const owner = this.sql
      .exec<{ network_id: string; transaction_id: string }>("SELECT network_id, transaction_id FROM state WHERE id = 1")
      .toArray()[0];
    try {
      await this.env.DB.batch(
        reportUnconfirmedStatements(
          this.env.DB,
          {
            object_id: this.ctx.id.toString(),
            network_id: owner?.network_id ?? "",
            transaction_id: owner?.transaction_id ?? "",
            events: current.events,
            oldest_at: current.oldest_at,
          },
          new Date(nowMs).toISOString(),
        ),
      );
    } catch (error) {
      logLine("warn", {
        message: "outbox unconfirmed events not reported",
        rows: current.events,
        error: String(error),
      });
      return false;
    }
    if (current.events === 0) this.ctx.storage.kv.delete(UNCONFIRMED_REPORT_KEY);
    else this.ctx.storage.kv.put(UNCONFIRMED_REPORT_KEY, current);
    return true;
  }

  /** Moves the alarm earlier, to within `ms`, if it is set later or not at all. */
  private async alarmWithin(ms: number): Promise<void> {
    const at = Date.now() + ms;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  /**
   * Tells D1 that events went unconfirmed (GET /metrics, the outbox_unconfirmed alert rule). Off the
   * hot path, and only when something is wrong; when D1 cannot take it, the log line above stands.
   */
  private async countResends(count: number, nowMs: number): Promise<void> {
    try {
      await this.env.DB.batch(countOutboxResendsStatements(this.env.DB, count, nowMs));
    } catch (error) {
      logLine("warn", { message: "outbox resends not counted", rows: count, error: String(error) });
    }
  }

  /** Read-only view for operators' debugging and tests; `outbox` counts the messages D1 has not confirmed. */
  async inspect(): Promise<{ state: ConversionState | null; events: number; outbox: number }> {
    if (!this.hasSchema()) return { state: null, events: 0, outbox: 0 };
    return { state: this.loadStored()?.state ?? null, ...this.heldEvents() };
  }

  /**
   * The object's own record of its chain, for the proof (one RPC): the head, where the chain begins,
   * where retention cut it, the current state (kept for the conversion's whole life, also in the
   * tail), and the events whose messages are still pending with the state each leaves (D1 may not
   * hold them yet). Null when the object holds nothing.
   */
  async chainHead(): Promise<Required<ChainHead> | null> {
    if (!this.hasSchema()) return null;
    const stored = this.loadStored();
    if (!stored) return null;
    const inFlight = this.sql
      .exec<{ message: string }>("SELECT message FROM events WHERE message IS NOT NULL ORDER BY seq")
      .toArray()
      .map((row) => {
        const message = JSON.parse(row.message) as Partial<EventMessage>;
        return {
          seq: message.seq ?? 0,
          hash: message.hash ?? null,
          prev_hash: message.prev_hash ?? null,
          verdict: message.verdict ?? null,
          state: message.verdict !== "stale" && message.conversion ? stateAfter(message as EventMessage) : null,
        };
      });
    return {
      seq: stored.head.seq,
      hash: stored.head.hash,
      in_flight: inFlight,
      state: {
        status: stored.state.status,
        fields: stored.state.fields,
        event_time: stored.state.event_time,
        event_time_supplied: stored.state.event_time_supplied,
        first_seen_at: stored.first_seen_at,
        version: stored.version,
      },
      chain_from: stored.chain_from,
      retention: stored.retention,
      erased: this.erasedEvents(),
    };
  }

  /**
   * Erases one person's identifier from this conversion (docs/privacy.md): the value becomes the
   * erasure's marker in the state, the dedupe fingerprints and the outbox, and the object remembers
   * the field, so that no later event brings the value back. Given D1's record of the conversion,
   * it first checks D1's chain against itself (as the proof does), then answers D1's events with
   * the value rewritten; when the chain verified, it records the hash of each rewritten event's
   * content beside its original hash, so the proof still verifies the erased history, and no one
   * who can only write D1 can pass an edit off as an erasure. The outbox's events it attests from
   * its own copy. Idempotent: a value already erased is not found again.
   */
  async erase(target: ErasureTarget, d1: ErasureD1View | null = null): Promise<ObjectErasure> {
    const held = this.hasSchema() && this.loadStored() !== null;
    const anchor = held ? await this.chainHead() : null;
    const chain = d1 ? verifyChain({ rows: d1.rows, conversion: d1.conversion, anchor, pruned: d1.pruned }) : null;
    const outcome: ObjectErasure = {
      held,
      state: false,
      fingerprints: 0,
      outbox: 0,
      in_flight: 0,
      chain: chain?.status ?? null,
      attested: 0,
      rewrites: [],
    };
    const attestations = new Map<number, { hash: string; content_hash: string | null }>();
    const rewriteD1 = () => {
      const attested = this.erasedEventsBySeq();
      for (const row of d1?.rows ?? []) {
        const event = parseObject(row.payload);
        const erased = event ? eraseFields(event, target) : null;
        if (!erased) continue;
        outcome.rewrites.push({ event_id: row.event_id, payload: JSON.stringify(erased) });
        if (row.hash === null || attestations.has(row.seq)) continue;
        // Only from a verified chain: then this row's content is what was recorded, or what an earlier erasure attested.
        attestations.set(row.seq, {
          hash: attested.get(row.seq)?.hash ?? row.hash,
          content_hash: chain?.status === "verified" ? chainHash(contentOf(row, erased)) : null,
        });
      }
    };
    if (!held) {
      rewriteD1();
      return outcome;
    }
    // One transaction: the object's records and what it attests change together, or not at all.
    this.ctx.storage.transactionSync(() => {
      this.eraseOwnRecords(target, outcome, attestations);
      rewriteD1();
      this.recordAttestations(target, attestations);
    });
    outcome.attested = [...attestations.values()].filter((a) => a.content_hash !== null).length;
    return outcome;
  }

  /** The state, the history's fingerprints and the outbox, in the caller's transaction. */
  private eraseOwnRecords(
    target: ErasureTarget,
    outcome: ObjectErasure,
    attestations: Map<number, { hash: string; content_hash: string | null }>,
  ): void {
    const stored = this.loadStored();
    if (!stored) return;
    const fields = eraseFields(stored.state.fields, target);
    if (fields) this.sql.exec("UPDATE state SET fields = ? WHERE id = 1", JSON.stringify(fields));
    outcome.state = fields !== null;
    for (const row of this.sql
      .exec<{ seq: number; fingerprint: string }>("SELECT seq, fingerprint FROM events")
      .toArray()) {
      const print = eraseFingerprint(row.fingerprint, target);
      if (print === null) continue;
      this.sql.exec("UPDATE events SET fingerprint = ? WHERE seq = ?", print, row.seq);
      outcome.fingerprints++;
    }
    const attested = this.erasedEventsBySeq();
    const pending = this.sql.exec<{ seq: number; message: string; sends: number }>(
      "SELECT seq, message, sends FROM events WHERE message IS NOT NULL",
    );
    for (const row of pending.toArray()) {
      const message = JSON.parse(row.message) as EventMessage;
      const rewritten = eraseEventMessage(message, target);
      if (!rewritten) continue;
      this.sql.exec("UPDATE events SET message = ? WHERE seq = ?", JSON.stringify(rewritten), row.seq);
      outcome.outbox++;
      if (row.sends > 0 && !this.unsent.has(row.seq)) outcome.in_flight++;
      if (!message.hash || rewritten.event === message.event) continue;
      // The object's own copy: it is what the object hashed, or what an earlier erasure attested.
      const before = attested.get(row.seq);
      const current = chainHash(chainContentOf(message));
      const trusted = before ? before.content_hash === current : current === message.hash;
      attestations.set(row.seq, {
        hash: message.hash,
        content_hash: trusted ? chainHash(chainContentOf(rewritten)) : null,
      });
    }
    if (outcome.state || outcome.fingerprints > 0 || outcome.outbox > 0) {
      // Remembered, so that no later event brings the value back; the first erasure of a field keeps its marker.
      const erased = { [target.field]: target.marker, ...stored.erased };
      this.sql.exec("UPDATE state SET erased = ? WHERE id = 1", JSON.stringify(erased));
    }
  }

  private recordAttestations(
    target: ErasureTarget,
    attestations: ReadonlyMap<number, { hash: string; content_hash: string | null }>,
  ): void {
    const before = this.erasedEventsBySeq();
    if (attestations.size > 0) ensureErasedEvents(this.sql);
    for (const [seq, attestation] of attestations) {
      const previous = before.get(seq);
      const ids = [...new Set([...(previous?.erasure_ids ?? []), target.erasure_id])];
      const fields = [...new Set([...(previous?.fields ?? []), target.field])];
      this.sql.exec(
        `INSERT INTO erased_events (seq, hash, content_hash, erasure_ids, fields) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (seq) DO UPDATE SET content_hash = excluded.content_hash, erasure_ids = excluded.erasure_ids,
           fields = excluded.fields`,
        seq,
        attestation.hash,
        attestation.content_hash,
        JSON.stringify(ids),
        JSON.stringify(fields),
      );
    }
  }

  private erasedEvents(): ErasedEvent[] {
    return [...this.erasedEventsBySeq().values()];
  }

  private erasedEventsBySeq(): Map<number, ErasedEvent> {
    if (!this.schemaReady || !hasErasedEvents(this.sql)) return new Map();
    const rows = this.sql
      .exec<{ seq: number; hash: string; content_hash: string | null; erasure_ids: string; fields: string }>(
        "SELECT seq, hash, content_hash, erasure_ids, fields FROM erased_events ORDER BY seq",
      )
      .toArray();
    return new Map(
      rows.map((row) => [
        row.seq,
        {
          seq: row.seq,
          hash: row.hash,
          content_hash: row.content_hash,
          erasure_ids: JSON.parse(row.erasure_ids) as string[],
          fields: JSON.parse(row.fields) as string[],
        },
      ]),
    );
  }

  /**
   * History retention asks before it deletes a conversion's chained events from D1: may it delete
   * them up to `cut.seq` (whose hash is `cut.hash`), all received before `cut.before`? The object
   * agrees only to what it can vouch for: the cut is on its chain, and seq `cut.seq` was received
   * before the cutoff by its own clock (from its history while it holds one; from its head's time
   * in the tail). What D1 says of received_at is not trusted: a D1 writer could backdate recent
   * events to have retention delete them. An agreed cut is kept, so the proof accepts that gap and
   * no other; asking again, or for an earlier cut, changes nothing.
   */
  async cutChain(cut: RetentionCut): Promise<CutAnswer> {
    const refuse = (reason: string): CutAnswer => ({ accepted: false, reason });
    if (!this.hasSchema()) return refuse("the object holds no conversion");
    const stored = this.loadStored();
    if (!stored) return refuse("the object holds no conversion");
    if (stored.retention && stored.retention.seq >= cut.seq) {
      return { accepted: true, reason: `retention already cut the chain up to seq ${stored.retention.seq}` };
    }
    if (stored.head.hash === null || cut.seq > stored.head.seq) {
      return refuse(
        `the object's chain ends at seq ${stored.head.seq}${stored.head.hash === null ? " with no hash" : ""}`,
      );
    }
    if (stored.chain_from !== null && cut.seq < stored.chain_from) {
      return refuse(`the object's chain begins at seq ${stored.chain_from}`);
    }
    const cutoff = Date.parse(cut.before);
    const held = this.sql
      .exec<{ hash: string | null; received_at: string }>("SELECT hash, received_at FROM events WHERE seq = ?", cut.seq)
      .toArray()[0];
    if (held) {
      if (held.hash !== cut.hash) return refuse(`seq ${cut.seq}'s hash is ${held.hash}, not ${cut.hash}`);
      if (!(Date.parse(held.received_at) < cutoff)) {
        return refuse(`seq ${cut.seq} was received at ${held.received_at}, not before ${cut.before}`);
      }
    } else if (cut.seq === stored.head.seq) {
      if (stored.head.hash !== cut.hash) return refuse(`seq ${cut.seq}'s hash is ${stored.head.hash}, not ${cut.hash}`);
      if (!(Date.parse(stored.last_event_at) < cutoff)) {
        return refuse(`seq ${cut.seq} was received at ${stored.last_event_at}, not before ${cut.before}`);
      }
    } else if (this.heldEvents().events > 0) {
      // An object holds every event of its life until it keeps its tail.
      return refuse(`the object holds its history, and no seq ${cut.seq} in it`);
    } else if (!(Date.parse(stored.last_event_at) < cutoff)) {
      // A tail knows only its head's time: seq cut.seq was received at or before it, maybe after the cutoff.
      return refuse(
        `the object keeps only its tail, whose last event (seq ${stored.head.seq}) was received at ${stored.last_event_at}, not before ${cut.before}: it cannot vouch for seq ${cut.seq}'s time`,
      );
    }
    this.sql.exec(
      "UPDATE state SET retention_seq = ?, retention_hash = ?, retention_before = ? WHERE id = 1",
      cut.seq,
      cut.hash,
      cut.before,
    );
    return { accepted: true, reason: `retention may delete the chain up to seq ${cut.seq}` };
  }

  /** When the dedupe window of an object whose last event came at `lastEventAt` ends. */
  private historyKeptUntil(lastEventAt: string): number {
    return Date.parse(lastEventAt) + configOf(this.env).DEDUPE_WINDOW_DAYS * 86_400_000;
  }

  private async scheduleNext(): Promise<void> {
    // A message not sent yet is due at once, and so is every one until this instance has sent them
    // (a receipt may be the first thing a new instance does, and its wake-up replaces the one set).
    // While any is pending, the dedupe window does not end: the history holds them.
    const next = this.sql
      .exec<{ due: number | null }>(
        `SELECT min(iif((? AND seq > ?) OR seq IN (SELECT value FROM json_each(?)), 0, due_at)) AS due FROM events
         WHERE message IS NOT NULL`,
        this.sentEarlierRows ? 0 : 1,
        this.sentEarlierThrough,
        JSON.stringify([...this.unsent]),
      )
      .one().due;
    if (next !== null) {
      await this.ctx.storage.setAlarm(Math.max(next, Date.now()));
      return;
    }
    const stored = this.loadStored();
    if (!stored) {
      await this.clear();
      return;
    }
    const expiresAt = this.historyKeptUntil(stored.last_event_at);
    if (Date.now() >= expiresAt) {
      this.keepTail();
    } else {
      await this.ctx.storage.setAlarm(expiresAt);
    }
  }

  /**
   * After the dedupe window the history goes (D1 holds it) and the tail stays: the state row, with
   * the current status, fields and whose clock set its time, the answer of the event that set it,
   * and the chain head. A later event is still decided by the lifecycle against the real state
   * (a re-sent old postback is stale, not a new conversion), its seq follows the head, and its hash
   * links to the last one. No alarm is left: the object sleeps with one row until the next event.
   * Only once every message is confirmed (`scheduleNext`); the condition here too, so that no
   * clean-up can ever drop an event D1 may not have.
   */
  private keepTail(): void {
    this.sql.exec("DELETE FROM events WHERE message IS NULL");
  }

  private append(
    input: RecordInput,
    fields: ConversionFields,
    print: string,
    verdict: RecordedVerdict,
    stored: StoredConversion | null,
  ): IngestAnswer {
    const receivedMs = Date.parse(input.received_at);
    const suppliedTime = input.postback.event_time;
    // A stale event joins the history but leaves the state, and its version, as they were.
    const kept = verdict === "stale" ? stored : null;
    const conversion: ConversionState = kept
      ? kept.state
      : {
          status: fields.status,
          // Without the network's time, the receipt time stands in, and the state remembers it is one.
          event_time: suppliedTime ?? input.received_at,
          event_time_supplied: suppliedTime !== undefined,
          fields: stored ? merge(stored.state.fields, fields) : fields,
          source: input.source ?? "s2s",
        };
    const version = kept ? kept.version : Math.max((stored?.version ?? 0) + 1, receivedMs);
    const firstSeenAt = stored?.first_seen_at ?? input.received_at;
    const eventId = newId("evt", receivedMs);
    const answer: IngestAnswer = {
      status: verdict,
      event_id: eventId,
      network_id: input.network_id,
      transaction_id: input.transaction_id,
      conversion_status: conversion.status,
    };
    // The chain: seqs continue from the head (also after the dedupe window), and each event's hash
    // covers its content and the previous hash. SHA-256 is synchronous: this is still one transaction.
    const seq = (stored?.head.seq ?? 0) + 1;
    const prevHash = stored?.head.hash ?? null;
    // event_time only when the network sent it: D1 tells a supplied time from an inferred one by it.
    const event = { ...fields, ...(suppliedTime ? { event_time: suppliedTime } : {}) };
    const hash = chainHash({
      network_id: input.network_id,
      transaction_id: input.transaction_id,
      test: input.test === true,
      seq,
      event_id: eventId,
      verdict,
      received_at: input.received_at,
      event,
      prev_hash: prevHash,
      source: chainSourceOf(input.source),
    });
    const stateAnswer = kept ? (kept.answer ?? this.latestAppliedAnswer()) : answer;
    // chain_from: set once, by the event that begins the chain (prev_hash null); an object that
    // does not know where its chain began (see object-schema.ts) never learns it from a later one.
    this.sql.exec(
      `INSERT INTO state (id, network_id, transaction_id, status, event_time, event_time_supplied, fields, version,
         first_seen_at, last_event_at, answer, head_seq, head_hash, chain_from, source)
       VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, event_time = excluded.event_time, source = excluded.source,
         event_time_supplied = excluded.event_time_supplied, fields = excluded.fields, version = excluded.version,
         last_event_at = excluded.last_event_at, answer = excluded.answer, head_seq = excluded.head_seq,
         head_hash = excluded.head_hash,
         chain_from = CASE WHEN state.head_hash IS NULL THEN excluded.chain_from ELSE state.chain_from END`,
      input.network_id,
      input.transaction_id,
      conversion.status,
      conversion.event_time,
      conversion.event_time_supplied ? 1 : 0,
      JSON.stringify(conversion.fields),
      version,
      firstSeenAt,
      input.received_at,
      stateAnswer ? JSON.stringify(stateAnswer) : null,
      seq,
      hash,
      prevHash === null ? seq : null,
      conversion.source,
    );
    const message: EventMessage = {
      v: 1,
      event_id: eventId,
      network_id: input.network_id,
      transaction_id: input.transaction_id,
      seq,
      verdict,
      previous_status: stored?.state.status ?? null,
      source: input.source ?? "s2s",
      previous_source: stored?.state.source ?? null,
      test: input.test === true,
      received_at: input.received_at,
      event,
      conversion: {
        ...conversion.fields,
        event_time: conversion.event_time,
        first_seen_at: firstSeenAt,
        version,
        source: conversion.source,
      },
      hash,
      prev_hash: prevHash,
    };
    // The event and its message in one row (the outbox is the events with a message).
    this.sql.exec(
      `INSERT INTO events (seq, event_id, fingerprint, verdict, answer, received_at, hash, prev_hash, message, due_at, sends)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
      seq,
      eventId,
      print,
      verdict,
      JSON.stringify(answer),
      input.received_at,
      hash,
      prevHash,
      JSON.stringify(message),
      Date.now() + configOf(this.env).OUTBOX_RESEND_SECONDS * 1000,
    );
    this.unsent.add(seq);
    return answer;
  }

  // The readers below find nothing in an object without tables (`hasSchema` or `ensureSchema` ran first).
  private loadStored(): StoredConversion | null {
    if (!this.schemaReady) return null;
    const row = this.sql.exec<StateRow>("SELECT * FROM state WHERE id = 1").toArray()[0];
    if (!row) return null;
    return {
      state: {
        status: row.status as ConversionStatus,
        event_time: row.event_time,
        event_time_supplied: row.event_time_supplied === 1,
        fields: JSON.parse(row.fields) as ConversionFields,
        source: eventSourceOf(row.source),
      },
      version: row.version,
      first_seen_at: row.first_seen_at,
      last_event_at: row.last_event_at,
      answer: row.answer === null ? null : (JSON.parse(row.answer) as IngestAnswer),
      head: { seq: row.head_seq, hash: row.head_hash },
      chain_from: row.chain_from,
      retention:
        row.retention_seq === null || row.retention_hash === null || row.retention_before === null
          ? null
          : { seq: row.retention_seq, hash: row.retention_hash, before: row.retention_before },
      erased: row.erased === null ? {} : (JSON.parse(row.erased) as StoredConversion["erased"]),
    };
  }

  /** The answer of the latest applied event in the history: for an upgraded state without one. */
  private latestAppliedAnswer(): IngestAnswer | null {
    const row = this.sql
      .exec<{ answer: string }>("SELECT answer FROM events WHERE verdict != 'stale' ORDER BY seq DESC LIMIT 1")
      .toArray()[0];
    return row ? (JSON.parse(row.answer) as IngestAnswer) : null;
  }

  private findAnswer(print: string): IngestAnswer | null {
    if (!this.schemaReady) return null;
    const row = this.sql
      .exec<{ answer: string }>("SELECT answer FROM events WHERE fingerprint = ? ORDER BY seq LIMIT 1", print)
      .toArray()[0];
    return row ? (JSON.parse(row.answer) as IngestAnswer) : null;
  }

  /** The events the object holds (its dedupe history), and how many of them D1 has not confirmed. */
  private heldEvents(): { events: number; outbox: number } {
    return this.sql
      .exec<{ events: number; outbox: number }>("SELECT count(*) AS events, count(message) AS outbox FROM events")
      .one();
  }
}

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

/** The conversion's state as an outbox message leaves it (an applied event's snapshot). */
function stateAfter(message: EventMessage): AttestedState {
  const { event_time, first_seen_at, version, source: _source, ...fields } = message.conversion;
  return {
    status: fields.status,
    fields,
    event_time,
    // An applied event's time is the conversion's: supplied exactly when the event carried one.
    event_time_supplied: message.event.event_time !== undefined,
    first_seen_at,
    version,
  };
}
