/**
 * A partner's pace: how many of its deliveries may be in flight at once, adapted to how it
 * answers (additive increase, multiplicative decrease, as TCP does), under the operator's caps
 * (`max_in_flight`, `max_per_second`), and paused while a `Retry-After` asks. Pure: a state and
 * an attempt's outcome in, the next state out; the partner's coordinator keeps it.
 */

export interface PaceSettings {
  /** The most deliveries in flight at once, whatever the partner's answers. */
  max_in_flight: number;
  /** The most attempts started per second; null for no cap. */
  max_per_second: number | null;
}

export const DEFAULT_PACE: PaceSettings = { max_in_flight: 10, max_per_second: null };

export interface PaceChange {
  at: string;
  from: number;
  to: number;
  reason: string;
}

export interface PaceState {
  /** The in-flight limit now: fractional, so that additive increase adds one per round trip. */
  limit: number;
  /** Smoothed latency of recent 2xx answers, the baseline "rising latency" is judged against. */
  latency_ms: number | null;
  /** Epoch ms until which a `Retry-After` pauses the partner, or null. */
  paused_until_ms: number | null;
  /** The last changes of the limit, newest last. */
  changes: PaceChange[];
}

/** What an attempt says about the partner's health, for its pace. */
export type PaceSignal =
  | { kind: "ok"; latency_ms: number }
  | { kind: "throttled"; retry_after_seconds: number | null }
  | { kind: "overloaded"; reason: string }
  /** A 4xx other than 429, or a request that never left: nothing about load. */
  | { kind: "neutral" };

const START_LIMIT = 2;
const KEPT_CHANGES = 10;
/** A 2xx slower than this many times the baseline (and than the floor) counts as rising latency. */
const LATENCY_FACTOR = 2;
const LATENCY_FLOOR_MS = 250;
const SMOOTHING = 0.2;

export function initialPace(settings: PaceSettings): PaceState {
  return { limit: Math.min(START_LIMIT, settings.max_in_flight), latency_ms: null, paused_until_ms: null, changes: [] };
}

export function afterSignal(state: PaceState, settings: PaceSettings, signal: PaceSignal, nowMs: number): PaceState {
  const at = new Date(nowMs).toISOString();
  switch (signal.kind) {
    case "neutral":
      return state;
    case "ok": {
      const baseline = state.latency_ms;
      const latency_ms = baseline === null ? signal.latency_ms : baseline + SMOOTHING * (signal.latency_ms - baseline);
      if (baseline !== null && signal.latency_ms > Math.max(LATENCY_FLOOR_MS, LATENCY_FACTOR * baseline)) {
        const reason = `latency rising: ${Math.round(signal.latency_ms)} ms against ${Math.round(baseline)} ms`;
        return decrease({ ...state, latency_ms }, reason, at);
      }
      const limit = Math.min(settings.max_in_flight, state.limit + 1 / Math.max(1, state.limit));
      return changed({ ...state, latency_ms }, limit, "fast 2xx answers", at);
    }
    case "throttled": {
      const pausedUntil =
        signal.retry_after_seconds === null ? state.paused_until_ms : nowMs + signal.retry_after_seconds * 1000;
      const reason =
        signal.retry_after_seconds === null
          ? "throttled (429)"
          : `throttled, Retry-After: ${signal.retry_after_seconds} s`;
      return decrease({ ...state, paused_until_ms: pausedUntil }, reason, at);
    }
    case "overloaded":
      return decrease(state, signal.reason, at);
  }
}

function decrease(state: PaceState, reason: string, at: string): PaceState {
  return changed(state, Math.max(1, state.limit / 2), reason, at);
}

/** Records a change when the whole number of deliveries in flight moves (the fraction is bookkeeping). */
function changed(state: PaceState, limit: number, reason: string, at: string): PaceState {
  if (Math.floor(limit) === Math.floor(state.limit)) return { ...state, limit };
  const change = { at, from: Math.floor(state.limit), to: Math.floor(limit), reason };
  return { ...state, limit, changes: [...state.changes, change].slice(-KEPT_CHANGES) };
}

/** How many more attempts may start now: none while paused, else the limit less those in flight. */
export function capacity(state: PaceState, settings: PaceSettings, inFlight: number, nowMs: number): number {
  if (state.paused_until_ms !== null && nowMs < state.paused_until_ms) return 0;
  return Math.max(0, Math.min(Math.floor(state.limit), settings.max_in_flight) - inFlight);
}

/** The pace's signal in an attempt's outcome. */
export function signalOf(
  outcome:
    | { kind: "response"; status: number; retry_after_seconds: number | null; latency_ms: number }
    | { kind: "timeout" }
    | { kind: "network" }
    | { kind: "not_sent" },
): PaceSignal {
  switch (outcome.kind) {
    case "response":
      if (outcome.status >= 200 && outcome.status <= 299) return { kind: "ok", latency_ms: outcome.latency_ms };
      // 429, or a 503 that says when to come back.
      if (outcome.status === 429 || (outcome.status === 503 && outcome.retry_after_seconds !== null)) {
        return { kind: "throttled", retry_after_seconds: outcome.retry_after_seconds };
      }
      if (outcome.status >= 500) return { kind: "overloaded", reason: `HTTP ${outcome.status}` };
      return { kind: "neutral" };
    case "timeout":
      return { kind: "overloaded", reason: "timeout" };
    case "network":
      return { kind: "overloaded", reason: "network error" };
    case "not_sent":
      return { kind: "neutral" };
  }
}
