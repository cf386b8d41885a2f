/**
 * A partner's breaker, by failure density: over a sliding window, at least `min_attempts`
 * attempts of which at least `failure_percent` % failed opens it (deliveries wait, nothing is
 * lost); after a cool-down one probe half-opens it; the probe's success closes it, its failure
 * opens it again for twice as long (up to an hour); open for `disable_after_seconds`, the partner
 * is disabled. Defaults from the anchors: Everflow disables after 10 failures in 72 h, Svix
 * after 5 days of failing. Pure: the coordinator keeps the state and the window's outcomes.
 */

import type { BreakerSettings } from "../domain/partner";

const MAX_COOLDOWN_SECONDS = 3600;

export type BreakerPosition = "closed" | "open" | "half_open" | "disabled";

export interface BreakerState {
  position: BreakerPosition;
  /** Why it is where it is (for the partner's API object and the alert). */
  reason: string | null;
  /** When it last opened (epoch ms): the disable clock runs from the first opening of a streak. */
  opened_at_ms: number | null;
  /** When the next probe may go (epoch ms), while open. */
  probe_at_ms: number | null;
  cooldown_seconds: number;
}

export interface Transition {
  from: BreakerPosition;
  to: BreakerPosition;
  reason: string;
  at: string;
}

export interface WindowCounts {
  attempts: number;
  failures: number;
}

export function closedBreaker(settings: BreakerSettings): BreakerState {
  return {
    position: "closed",
    reason: null,
    opened_at_ms: null,
    probe_at_ms: null,
    cooldown_seconds: settings.cooldown_seconds,
  };
}

/** A span of seconds as an operator reads it: 90 s, 5 min, 72 h, 5 days. */
export function duration(seconds: number): string {
  const round = (n: number) => Math.round(n * 10) / 10;
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${round(seconds / 60)} min`;
  if (seconds < 4 * 86_400) return `${round(seconds / 3600)} h`;
  return `${round(seconds / 86_400)} days`;
}

/** After an attempt's outcome, with the window's counts including it. */
export function afterAttempt(
  state: BreakerState,
  settings: BreakerSettings,
  ok: boolean,
  counts: WindowCounts,
  nowMs: number,
): { state: BreakerState; transition: Transition | null } {
  const at = new Date(nowMs).toISOString();
  if (state.position === "half_open") {
    if (ok) {
      const next = { ...closedBreaker(settings), reason: "the probe succeeded" };
      return { state: next, transition: { from: "half_open", to: "closed", reason: "the probe succeeded", at } };
    }
    const cooldown = Math.min(MAX_COOLDOWN_SECONDS, state.cooldown_seconds * 2);
    const reason = `the probe failed; next probe in ${cooldown} s`;
    const next: BreakerState = {
      ...state,
      position: "open",
      reason,
      probe_at_ms: nowMs + cooldown * 1000,
      cooldown_seconds: cooldown,
    };
    return { state: next, transition: { from: "half_open", to: "open", reason, at } };
  }
  if (state.position !== "closed" || ok) return { state, transition: null };
  if (counts.attempts < settings.min_attempts) return { state, transition: null };
  const percent = (100 * counts.failures) / counts.attempts;
  if (percent < settings.failure_percent) return { state, transition: null };
  const reason = `${counts.failures} of ${counts.attempts} attempts failed in ${duration(settings.window_seconds)} (${Math.round(percent)} %, the limit is ${settings.failure_percent} %)`;
  // A streak starts from the cool-down as the partner's settings have it now: the state's own was
  // copied when the breaker last closed (or first ran), before any PATCH since.
  const next: BreakerState = {
    position: "open",
    reason,
    opened_at_ms: state.opened_at_ms ?? nowMs,
    probe_at_ms: nowMs + settings.cooldown_seconds * 1000,
    cooldown_seconds: settings.cooldown_seconds,
  };
  return { state: next, transition: { from: "closed", to: "open", reason, at } };
}

/** With time passing: an open breaker half-opens once its cool-down is over, or disables the partner. */
export function withTime(
  state: BreakerState,
  settings: BreakerSettings,
  nowMs: number,
): { state: BreakerState; transition: Transition | null } {
  if (state.position !== "open") return { state, transition: null };
  const at = new Date(nowMs).toISOString();
  if (state.opened_at_ms !== null && nowMs - state.opened_at_ms >= settings.disable_after_seconds * 1000) {
    const reason = `open for ${duration(settings.disable_after_seconds)}: disabled`;
    return {
      state: { ...state, position: "disabled", reason, probe_at_ms: null },
      transition: { from: "open", to: "disabled", reason, at },
    };
  }
  if (state.probe_at_ms !== null && nowMs >= state.probe_at_ms) {
    const reason = "cool-down over: one probe";
    return {
      state: { ...state, position: "half_open", reason },
      transition: { from: "open", to: "half_open", reason, at },
    };
  }
  return { state, transition: null };
}

/** How many attempts the breaker lets start now, on top of the pace's limit. */
export function breakerAllows(state: BreakerState, inFlight: number): number {
  switch (state.position) {
    case "closed":
      return Number.POSITIVE_INFINITY;
    case "half_open":
      return inFlight === 0 ? 1 : 0;
    case "open":
    case "disabled":
      return 0;
  }
}
