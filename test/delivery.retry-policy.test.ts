/** The retry policy as plain functions: jitter, Retry-After, classification and the schedule. */
import { describe, expect, it } from "vitest";
import {
  type AttemptOutcome,
  type Classification,
  classify,
  DEFAULT_RETRY_SCHEDULE_SECONDS,
  MAX_QUEUE_DELAY_SECONDS,
  nextRetryDelaySeconds,
  parseRetryAfter,
  validateRetrySchedule,
  withJitter,
} from "../src/delivery/retry-policy";

const NOW_MS = Date.UTC(2025, 5, 1, 12, 0, 0);
const LOWEST = () => 0;
const MIDDLE = () => 0.5;
const HIGHEST = () => 0.999_999_999;

function response(status: number, retryAfter: string | null = null): AttemptOutcome {
  return { kind: "response", status, retryAfter };
}

describe("withJitter", () => {
  it.each([
    { random: LOWEST, name: "0", expected: 80 },
    { random: MIDDLE, name: "0.5", expected: 100 },
    { random: HIGHEST, name: "0.999…", expected: 120 },
  ])("spreads 100 s to $expected s with random $name", ({ random, expected }) => {
    expect(withJitter(100, random)).toBe(expected);
  });

  it("stays within ±20 % for any random value", () => {
    for (let i = 0; i < 1000; i++) {
      const delay = withJitter(300);
      expect(delay).toBeGreaterThanOrEqual(240);
      expect(delay).toBeLessThanOrEqual(360);
    }
  });

  it("rounds to whole seconds", () => {
    expect(withJitter(7, LOWEST)).toBe(6); // 5.6
    expect(withJitter(7, HIGHEST)).toBe(8); // 8.4
    expect(withJitter(3, () => 0.25)).toBe(3); // 2.7
  });

  it("never goes below one second", () => {
    expect(withJitter(1, LOWEST)).toBe(1);
    expect(withJitter(0, MIDDLE)).toBe(1);
  });

  it("never goes beyond the Queues delay cap", () => {
    expect(withJitter(36_000, HIGHEST)).toBe(MAX_QUEUE_DELAY_SECONDS);
    expect(withJitter(MAX_QUEUE_DELAY_SECONDS, HIGHEST)).toBe(MAX_QUEUE_DELAY_SECONDS);
    expect(withJitter(100_000, LOWEST)).toBe(MAX_QUEUE_DELAY_SECONDS);
  });

  it("keeps every default delay under the cap", () => {
    for (const seconds of DEFAULT_RETRY_SCHEDULE_SECONDS) {
      expect(withJitter(seconds, HIGHEST)).toBeLessThanOrEqual(MAX_QUEUE_DELAY_SECONDS);
    }
  });
});

describe("parseRetryAfter", () => {
  it("reads delay-seconds", () => {
    expect(parseRetryAfter("120", NOW_MS)).toBe(120);
    expect(parseRetryAfter("0", NOW_MS)).toBe(0);
    expect(parseRetryAfter(" 30 ", NOW_MS)).toBe(30);
  });

  it("reads an IMF-fixdate as seconds from now", () => {
    expect(parseRetryAfter("Sun, 01 Jun 2025 12:01:30 GMT", NOW_MS)).toBe(90);
    expect(parseRetryAfter(new Date(NOW_MS + 3_600_000).toUTCString(), NOW_MS)).toBe(3600);
  });

  it("rounds a date part-way through a second up, so we never come back early", () => {
    expect(parseRetryAfter("Sun, 01 Jun 2025 12:00:10 GMT", NOW_MS + 500)).toBe(10);
  });

  it("reads the obsolete RFC 850 and asctime forms", () => {
    expect(parseRetryAfter("Sunday, 01-Jun-25 12:02:00 GMT", NOW_MS)).toBe(120);
    expect(parseRetryAfter("Sun Jun  1 12:03:00 2025", NOW_MS)).toBe(180);
  });

  it("answers 0 for a date in the past", () => {
    expect(parseRetryAfter("Sun, 01 Jun 2025 11:00:00 GMT", NOW_MS)).toBe(0);
    expect(parseRetryAfter("Thu, 01 Jan 1970 00:00:00 GMT", NOW_MS)).toBe(0);
  });

  it.each([
    "",
    "soon",
    "-5",
    "1.5",
    "10s",
    "1e3",
    "Sun, 31 Feb 2025 12:00:00 GMT",
    "Sun, 01 Foo 2025 12:00:00 GMT",
    "Sun, 01 Jun 2025 25:00:00 GMT",
    "Sun, 01 Jun 2025 12:00:00 PST",
    "2025-06-01T12:05:00Z",
    "foo 1",
  ])("answers null for garbage %j", (header) => {
    expect(parseRetryAfter(header, NOW_MS)).toBeNull();
  });

  it("answers null when the header is absent", () => {
    expect(parseRetryAfter(null, NOW_MS)).toBeNull();
  });
});

describe("classify", () => {
  const table: [AttemptOutcome, Classification][] = [
    [response(200), "delivered"],
    [response(204), "delivered"],
    [response(299), "delivered"],
    [response(100), "failed"],
    [response(301), "failed"],
    [response(302), "failed"],
    [response(400), "failed"],
    [response(401), "failed"],
    [response(404), "failed"],
    [response(408), "retry"],
    [response(409), "failed"],
    [response(410), "gone"],
    [response(422), "failed"],
    [response(425), "retry"],
    [response(429), "retry"],
    [response(500), "retry"],
    [response(502), "retry"],
    [response(503), "retry"],
    [response(599), "retry"],
    [{ kind: "timeout" }, "retry"],
    [{ kind: "network", error: "connection refused" }, "retry"],
  ];

  it.each(table)("classifies %j as %s", (outcome, expected) => {
    expect(classify(outcome)).toBe(expected);
  });
});

describe("nextRetryDelaySeconds", () => {
  const schedule = [10, 60, 600];

  it("walks the schedule with jitter", () => {
    expect(nextRetryDelaySeconds(schedule, 0, response(500), NOW_MS, MIDDLE)).toBe(10);
    expect(nextRetryDelaySeconds(schedule, 1, { kind: "timeout" }, NOW_MS, LOWEST)).toBe(48);
    expect(nextRetryDelaySeconds(schedule, 2, { kind: "network", error: "reset" }, NOW_MS, HIGHEST)).toBe(720);
  });

  it("is exhausted at exactly schedule.length retries", () => {
    expect(nextRetryDelaySeconds(schedule, schedule.length - 1, response(503), NOW_MS, MIDDLE)).toBe(600);
    expect(nextRetryDelaySeconds(schedule, schedule.length, response(503), NOW_MS, MIDDLE)).toBeNull();
    expect(nextRetryDelaySeconds(schedule, schedule.length + 1, response(503), NOW_MS, MIDDLE)).toBeNull();
  });

  it("walks the default schedule for seven retries", () => {
    const delays = DEFAULT_RETRY_SCHEDULE_SECONDS.map((_, retries) =>
      nextRetryDelaySeconds(DEFAULT_RETRY_SCHEDULE_SECONDS, retries, { kind: "timeout" }, NOW_MS, MIDDLE),
    );
    expect(delays).toEqual([5, 300, 1800, 7200, 18000, 36000, 36000]);
    expect(nextRetryDelaySeconds(DEFAULT_RETRY_SCHEDULE_SECONDS, 7, { kind: "timeout" }, NOW_MS)).toBeNull();
  });

  it("does not retry what is not retryable", () => {
    for (const status of [200, 302, 404, 410]) {
      expect(nextRetryDelaySeconds(schedule, 0, response(status), NOW_MS, MIDDLE)).toBeNull();
    }
  });

  it("honours a Retry-After longer than the schedule", () => {
    expect(nextRetryDelaySeconds(schedule, 0, response(429, "120"), NOW_MS, MIDDLE)).toBe(120);
    const date = new Date(NOW_MS + 900_000).toUTCString();
    expect(nextRetryDelaySeconds(schedule, 0, response(503, date), NOW_MS, MIDDLE)).toBe(900);
  });

  it("ignores a Retry-After shorter than the schedule", () => {
    expect(nextRetryDelaySeconds(schedule, 1, response(429, "1"), NOW_MS, MIDDLE)).toBe(60);
    expect(nextRetryDelaySeconds(schedule, 1, response(429, "0"), NOW_MS, MIDDLE)).toBe(60);
    const past = new Date(NOW_MS - 60_000).toUTCString();
    expect(nextRetryDelaySeconds(schedule, 1, response(503, past), NOW_MS, MIDDLE)).toBe(60);
  });

  it("caps a Retry-After beyond 12 h at the Queues delay cap", () => {
    expect(nextRetryDelaySeconds(schedule, 0, response(503, "86400"), NOW_MS, MIDDLE)).toBe(MAX_QUEUE_DELAY_SECONDS);
    const date = new Date(NOW_MS + 7 * 86_400_000).toUTCString();
    expect(nextRetryDelaySeconds(schedule, 0, response(503, date), NOW_MS, MIDDLE)).toBe(MAX_QUEUE_DELAY_SECONDS);
  });

  it("falls back to the schedule when Retry-After is garbage", () => {
    expect(nextRetryDelaySeconds(schedule, 2, response(503, "later, please"), NOW_MS, MIDDLE)).toBe(600);
  });

  it("does not let Retry-After revive an exhausted schedule", () => {
    expect(nextRetryDelaySeconds(schedule, 3, response(429, "30"), NOW_MS, MIDDLE)).toBeNull();
  });
});

describe("validateRetrySchedule", () => {
  it.each([
    [[1]],
    [[MAX_QUEUE_DELAY_SECONDS]],
    [[...DEFAULT_RETRY_SCHEDULE_SECONDS]],
    [Array.from({ length: 20 }, () => 60)],
  ])("accepts %j", (schedule) => {
    expect(validateRetrySchedule(schedule)).toBeNull();
  });

  it.each([
    { schedule: [], pattern: /1 to 20 delays \(it holds 0\)/ },
    { schedule: Array.from({ length: 21 }, () => 60), pattern: /1 to 20 delays \(it holds 21\)/ },
    { schedule: [5, 0], pattern: /retry delay 1 is 0/ },
    { schedule: [-5], pattern: /retry delay 0 is -5/ },
    { schedule: [1.5], pattern: /retry delay 0 is 1.5; each must be a whole number of seconds from 1 to 43200/ },
    { schedule: [MAX_QUEUE_DELAY_SECONDS + 1], pattern: /retry delay 0 is 43201/ },
    { schedule: [Number.NaN], pattern: /retry delay 0 is NaN/ },
  ])("rejects $schedule", ({ schedule, pattern }) => {
    expect(validateRetrySchedule(schedule)).toMatch(pattern);
  });
});
