/**
 * A partner's pace and breaker, as plain functions: additive increase on fast 2xx, halving on
 * 429, 5xx, timeouts and rising latency, Retry-After pausing, the operator's cap; the breaker
 * opening by failure density, half-opening after its cool-down, closing on a good probe, backing
 * off on a bad one, and disabling the partner after staying open.
 */
import { describe, expect, it } from "vitest";
import { afterAttempt, breakerAllows, closedBreaker, withTime } from "../src/delivery/breaker";
import { afterSignal, capacity, initialPace, type PaceSettings, type PaceState, signalOf } from "../src/delivery/pace";
import { type BreakerSettings, DEFAULT_BREAKER } from "../src/domain/partner";

const SETTINGS: PaceSettings = { max_in_flight: 8, max_per_second: null };
const T0 = Date.parse("2026-12-01T00:00:00Z");

function fastAnswers(state: PaceState, count: number, latency = 50): PaceState {
  let next = state;
  for (let i = 0; i < count; i++) next = afterSignal(next, SETTINGS, { kind: "ok", latency_ms: latency }, T0 + i);
  return next;
}

describe("pace", () => {
  it("starts at 2 in flight and grows by about one per round of fast 2xx answers, up to the cap", () => {
    const start = initialPace(SETTINGS);
    expect(capacity(start, SETTINGS, 0, T0)).toBe(2);
    // 2 + 1/2 + 1/2.5 + 1/2.9: a round of answers (as many as the limit) adds about one.
    const grown = fastAnswers(start, 3);
    expect(Math.floor(grown.limit)).toBe(3);
    expect(grown.changes.at(-1)).toMatchObject({ from: 2, to: 3, reason: "fast 2xx answers" });
    const capped = fastAnswers(start, 500);
    expect(capped.limit).toBe(8);
    expect(capacity(capped, SETTINGS, 3, T0)).toBe(5);
  });

  it("halves on 5xx, timeouts and network errors, never below one", () => {
    let state = fastAnswers(initialPace(SETTINGS), 500);
    state = afterSignal(
      state,
      SETTINGS,
      signalOf({ kind: "response", status: 502, retry_after_seconds: null, latency_ms: 10 }),
      T0,
    );
    expect(state.limit).toBe(4);
    expect(state.changes.at(-1)).toMatchObject({ from: 8, to: 4, reason: "HTTP 502" });
    state = afterSignal(state, SETTINGS, signalOf({ kind: "timeout" }), T0);
    state = afterSignal(state, SETTINGS, signalOf({ kind: "network" }), T0);
    state = afterSignal(state, SETTINGS, signalOf({ kind: "timeout" }), T0);
    expect(state.limit).toBe(1);
    expect(state.changes.map((c) => c.reason).slice(-2)).toEqual(["timeout", "network error"]);
  });

  it("halves when a 2xx comes much slower than the baseline", () => {
    let state = fastAnswers(initialPace(SETTINGS), 100, 100);
    const before = state.limit;
    state = afterSignal(state, SETTINGS, { kind: "ok", latency_ms: 900 }, T0);
    expect(state.limit).toBe(before / 2);
    expect(state.changes.at(-1)?.reason).toMatch(/^latency rising: 900 ms against 100 ms$/);
  });

  it("pauses for a Retry-After on 429 (and a 503 that gives one), and ignores other 4xx", () => {
    let state = fastAnswers(initialPace(SETTINGS), 50);
    const throttled = signalOf({ kind: "response", status: 429, retry_after_seconds: 30, latency_ms: 5 });
    state = afterSignal(state, SETTINGS, throttled, T0);
    expect(capacity(state, SETTINGS, 0, T0 + 29_000)).toBe(0);
    expect(capacity(state, SETTINGS, 0, T0 + 30_000)).toBeGreaterThan(0);
    expect(state.changes.at(-1)?.reason).toBe("throttled, Retry-After: 30 s");
    expect(signalOf({ kind: "response", status: 503, retry_after_seconds: 5, latency_ms: 5 })).toEqual({
      kind: "throttled",
      retry_after_seconds: 5,
    });
    const same = afterSignal(
      state,
      SETTINGS,
      signalOf({ kind: "response", status: 404, retry_after_seconds: null, latency_ms: 5 }),
      T0,
    );
    expect(same).toBe(state);
  });

  it("keeps only the last ten changes", () => {
    let state = fastAnswers(initialPace({ max_in_flight: 100, max_per_second: null }), 0);
    for (let i = 0; i < 30; i++) {
      state = afterSignal(state, { max_in_flight: 100, max_per_second: null }, { kind: "ok", latency_ms: 10 }, T0 + i);
      state = afterSignal(
        state,
        { max_in_flight: 100, max_per_second: null },
        { kind: "overloaded", reason: `r${i}` },
        T0 + i,
      );
    }
    expect(state.changes.length).toBeLessThanOrEqual(10);
  });
});

describe("breaker", () => {
  const settings: BreakerSettings = { ...DEFAULT_BREAKER, min_attempts: 10, failure_percent: 80, cooldown_seconds: 60 };

  it("opens on failure density, not on a lone failure or too few attempts", () => {
    const closed = closedBreaker(settings);
    expect(afterAttempt(closed, settings, false, { attempts: 9, failures: 9 }, T0).transition).toBeNull();
    expect(afterAttempt(closed, settings, false, { attempts: 10, failures: 7 }, T0).transition).toBeNull();
    // One success among many failures does not reset anything: density decides.
    const opened = afterAttempt(closed, settings, false, { attempts: 20, failures: 19 }, T0);
    expect(opened.transition).toMatchObject({ from: "closed", to: "open" });
    expect(opened.state.reason).toBe("19 of 20 attempts failed in 72 h (95 %, the limit is 80 %)");
    expect(breakerAllows(opened.state, 0)).toBe(0);
  });

  it("half-opens for one probe after the cool-down, closes on its success, backs off on its failure", () => {
    const open = afterAttempt(closedBreaker(settings), settings, false, { attempts: 10, failures: 10 }, T0).state;
    expect(withTime(open, settings, T0 + 59_000).transition).toBeNull();
    const half = withTime(open, settings, T0 + 60_000);
    expect(half.transition).toMatchObject({ from: "open", to: "half_open" });
    expect(breakerAllows(half.state, 0)).toBe(1);
    expect(breakerAllows(half.state, 1)).toBe(0);
    const again = afterAttempt(half.state, settings, false, { attempts: 11, failures: 11 }, T0 + 61_000);
    expect(again.transition).toMatchObject({ from: "half_open", to: "open" });
    expect(again.state.probe_at_ms).toBe(T0 + 61_000 + 120_000);
    const half2 = withTime(again.state, settings, T0 + 181_000).state;
    const closed = afterAttempt(half2, settings, true, { attempts: 12, failures: 11 }, T0 + 182_000);
    expect(closed.transition).toMatchObject({ from: "half_open", to: "closed", reason: "the probe succeeded" });
    expect(closed.state.opened_at_ms).toBeNull();
  });

  it("opens with the cool-down the settings have now, not the one it had when it last closed", () => {
    // The state was stored under a 300 s cool-down; the operator has since set 2 s (PATCH).
    const closedUnderOld = closedBreaker({ ...settings, cooldown_seconds: 300 });
    const now = { ...settings, cooldown_seconds: 2 };
    const opened = afterAttempt(closedUnderOld, now, false, { attempts: 10, failures: 10 }, T0).state;
    expect(opened.probe_at_ms).toBe(T0 + 2_000);
    const half = withTime(opened, now, T0 + 2_000).state;
    // A failed probe doubles the cool-down the streak started with.
    expect(afterAttempt(half, now, false, { attempts: 11, failures: 11 }, T0 + 3_000).state.probe_at_ms).toBe(
      T0 + 3_000 + 4_000,
    );
  });

  it("disables the partner once open for disable_after_seconds", () => {
    const open = afterAttempt(closedBreaker(settings), settings, false, { attempts: 10, failures: 10 }, T0).state;
    const later = withTime(open, settings, T0 + settings.disable_after_seconds * 1000);
    expect(later.transition).toMatchObject({ from: "open", to: "disabled", reason: "open for 5 days: disabled" });
  });
});
