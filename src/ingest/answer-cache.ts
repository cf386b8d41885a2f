/**
 * Duplicates absorbed at the edge. Networks retry on timeouts, so a postback the hub has answered
 * often comes again within seconds. Once a conversion's object has recorded an event, every repeat
 * of the same content gets the same answer from it, for as long as it keeps its history: the first
 * answer, as a duplicate (the object says until when: `final_until_ms`, the end of its dedupe window). An isolate keeps those answers
 * for a short while, keyed by the object (network, transaction, test or live), where the event came
 * from and a digest of its material fields (the object's own fingerprint), and answers a repeat
 * without the object call. Authentication, the test marker, the rate limit and validation have run
 * before the cache is asked, so it answers only what the network has just sent and signed.
 *
 * The object stays the one authority: a miss, an answer not final (a conflict, a repeat matched
 * against the current state rather than a recorded event) and anything expired go to it. The cache
 * is per isolate and forgets on restart; nothing is stored that the object does not hold.
 */
import { fingerprint, materialFields } from "../conversions/lifecycle";
import type { IngestAnswer, RecordInput, RecordResult } from "../domain/conversion";
import { sha256Hex } from "../lib/bytes";
import type { ConversionRecorder } from "./ingest";

/** How many answers an isolate keeps at most; the oldest go first. */
export const ANSWER_CACHE_ENTRIES = 10_000;

export class AnswerCache {
  private readonly entries = new Map<string, { answer: IngestAnswer; expiresAt: number }>();

  constructor(private readonly maxEntries = ANSWER_CACHE_ENTRIES) {}

  get(key: string, nowMs: number): IngestAnswer | null {
    const entry = this.entries.get(key);
    if (!entry) return null;
    if (entry.expiresAt <= nowMs) {
      this.entries.delete(key);
      return null;
    }
    return entry.answer;
  }

  set(key: string, answer: IngestAnswer, expiresAt: number): void {
    this.entries.delete(key);
    this.entries.set(key, { answer, expiresAt });
    // A Map iterates in insertion order: the first key is the oldest entry.
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/** The isolate's cache of final answers (module scope: it lives as long as the isolate). */
export const isolateAnswers = new AnswerCache();

/** The cache key of one event for one object: SHA-256 of the object, the source and the fingerprint. */
export async function answerKey(objectName: string, input: RecordInput): Promise<string> {
  const source = input.source ?? "s2s";
  const text = JSON.stringify([objectName, source, fingerprint(materialFields(input.postback), source)]);
  return sha256Hex(text);
}

export interface AnswerCacheOptions {
  cache: AnswerCache;
  /** How long an answer is kept (DUPLICATE_CACHE_SECONDS); 0 turns the cache off. */
  ttlMs: number;
  nowMs: number;
}

/**
 * A conversion's recorder that answers a cached repeat itself and otherwise asks the object, made
 * lazily so that a cached repeat makes no object stub either.
 */
export function cachingRecorder(
  objectName: string,
  object: () => ConversionRecorder,
  options: AnswerCacheOptions,
): ConversionRecorder {
  if (options.ttlMs <= 0) return object();
  return {
    async record(input: RecordInput): Promise<RecordResult> {
      // An operator's correction is judged against the current state, never as a repeat.
      if (input.source === "correction") return object().record(input);
      const key = await answerKey(objectName, input);
      const cached = options.cache.get(key, options.nowMs);
      if (cached) return { ok: true, answer: { ...cached, status: "duplicate" } };
      const result = await object().record(input);
      if (result.ok && result.final_until_ms !== undefined) {
        const expiresAt = Math.min(options.nowMs + options.ttlMs, result.final_until_ms);
        // An answer final only until a time already past (a history the alarm has yet to drop) is
        // kept nowhere: it would never be read, and would push a live answer out.
        if (expiresAt > options.nowMs) options.cache.set(key, result.answer, expiresAt);
      }
      return result;
    },
  };
}
