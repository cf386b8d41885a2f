/**
 * The breaker's window of recent outcomes (delivery/breaker.ts counts it) as a few counted time
 * buckets, kept in one row of the coordinator's meta beside its pace: an attempt writes that one row
 * and reads it, where a row per outcome (insert, and delete once it left the window) wrote two and
 * read every outcome of the window (72 h by default) at every attempt.
 *
 * A bucket spans 1/BUCKETS of the window (at least a second), so the window's far edge is as fine
 * as one bucket: an outcome counts while its bucket overlaps the window.
 */
import type { WindowCounts } from "./breaker";

/** Buckets per window. */
const BUCKETS = 240;

/** [bucket start (epoch ms), attempts, failures] */
export type OutcomeBucket = [number, number, number];

export interface OutcomeWindow {
  bucket_ms: number;
  buckets: OutcomeBucket[];
}

export function bucketMsFor(windowSeconds: number): number {
  return Math.max(1000, Math.ceil((windowSeconds * 1000) / BUCKETS));
}

export function emptyWindow(windowSeconds: number): OutcomeWindow {
  return { bucket_ms: bucketMsFor(windowSeconds), buckets: [] };
}

/** Outcomes (one per attempt, as the old `outcomes` rows held them) as a window. */
export function windowOf(outcomes: readonly { at_ms: number; ok: number }[], windowSeconds: number): OutcomeWindow {
  let window = emptyWindow(windowSeconds);
  for (const outcome of [...outcomes].sort((a, b) => a.at_ms - b.at_ms)) {
    window = withOutcome(window, windowSeconds, outcome.ok === 1, outcome.at_ms);
  }
  return window;
}

/** The window with one more outcome at `nowMs`, less the buckets that left it. */
export function withOutcome(window: OutcomeWindow, windowSeconds: number, ok: boolean, nowMs: number): OutcomeWindow {
  // A changed window length (the partner's settings) starts its buckets at the new width.
  const bucket_ms = bucketMsFor(windowSeconds);
  const start = nowMs - (nowMs % bucket_ms);
  const kept = within(window.bucket_ms === bucket_ms ? window : { bucket_ms, buckets: [] }, windowSeconds, nowMs);
  const last = kept.buckets.at(-1);
  const failure = ok ? 0 : 1;
  const buckets: OutcomeBucket[] =
    last && last[0] === start
      ? [...kept.buckets.slice(0, -1), [start, last[1] + 1, last[2] + failure]]
      : [...kept.buckets, [start, 1, failure]];
  return { bucket_ms, buckets };
}

/** The buckets that overlap the window ending at `nowMs`. */
export function within(window: OutcomeWindow, windowSeconds: number, nowMs: number): OutcomeWindow {
  const from = nowMs - windowSeconds * 1000;
  return { ...window, buckets: window.buckets.filter(([start]) => start + window.bucket_ms > from) };
}

export function countsOf(window: OutcomeWindow): WindowCounts {
  let attempts = 0;
  let failures = 0;
  for (const [, a, f] of window.buckets) {
    attempts += a;
    failures += f;
  }
  return { attempts, failures };
}
