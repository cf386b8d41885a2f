/** The breaker's window as counted buckets (delivery/breaker-window.ts). */
import { describe, expect, it } from "vitest";
import { bucketMsFor, countsOf, emptyWindow, windowOf, within, withOutcome } from "../src/delivery/breaker-window";

const HOUR = 3600;

describe("the breaker's window", () => {
  it("counts attempts and failures, one bucket per 1/240 of the window", () => {
    expect(bucketMsFor(72 * HOUR)).toBe(1_080_000);
    expect(bucketMsFor(60)).toBe(1000);
    let window = emptyWindow(72 * HOUR);
    const t0 = 1_800_000_000_000;
    window = withOutcome(window, 72 * HOUR, false, t0);
    window = withOutcome(window, 72 * HOUR, true, t0 + 1000);
    window = withOutcome(window, 72 * HOUR, false, t0 + 2 * 3_600_000);
    expect(countsOf(window)).toEqual({ attempts: 3, failures: 2 });
    expect(window.buckets.length).toBeLessThanOrEqual(3);
  });

  it("forgets the buckets that left the window, and keeps the rest", () => {
    const seconds = 600;
    let window = emptyWindow(seconds);
    const t0 = 1_800_000_000_000;
    window = withOutcome(window, seconds, false, t0);
    window = withOutcome(window, seconds, false, t0 + 300_000);
    expect(countsOf(within(window, seconds, t0 + 599_000))).toEqual({ attempts: 2, failures: 2 });
    // 10 minutes and a bucket later, the first is gone; the second stays.
    window = withOutcome(window, seconds, true, t0 + 600_000 + bucketMsFor(seconds));
    expect(countsOf(window)).toEqual({ attempts: 2, failures: 1 });
    expect(countsOf(within(window, seconds, t0 + 2 * 600_000))).toEqual({ attempts: 1, failures: 0 });
  });

  it("takes the outcomes rows of an object written by earlier code, in any order", () => {
    const t0 = 1_800_000_000_000;
    const window = windowOf(
      [
        { at_ms: t0 + 5000, ok: 0 },
        { at_ms: t0, ok: 1 },
        { at_ms: t0 + 2000, ok: 0 },
      ],
      72 * HOUR,
    );
    expect(countsOf(window)).toEqual({ attempts: 3, failures: 2 });
  });
});
