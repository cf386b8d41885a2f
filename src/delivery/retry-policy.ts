/**
 * When to try a partner again, and whether to. Pure: the outcome of one attempt, the partner's
 * schedule, a clock reading and a random source in; a classification or a delay out. The delay is
 * handed to `message.retry({ delaySeconds })`, so it never exceeds what Queues accepts.
 */

/** 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about a day and a half of attempts in all. */
export const DEFAULT_RETRY_SCHEDULE_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000] as const;
/** Cloudflare Queues refuses a longer delay; 10 h with +20 % jitter lands exactly on it. */
export const MAX_QUEUE_DELAY_SECONDS = 43_200;
export const MAX_RETRY_SCHEDULE_ENTRIES = 20;
const JITTER = 0.2;

export type AttemptOutcome =
  | { kind: "response"; status: number; retryAfter: string | null }
  | { kind: "timeout" }
  | { kind: "network"; error: string };

export type Classification = "delivered" | "retry" | "gone" | "failed";

/** Spreads retries of many deliveries that failed together, so a recovering partner is not stampeded. */
export function withJitter(seconds: number, random: () => number = Math.random): number {
  const jittered = Math.round(seconds * (1 - JITTER + 2 * JITTER * random()));
  return Math.min(MAX_QUEUE_DELAY_SECONDS, Math.max(1, jittered));
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const TIME = String.raw`(?<hour>\d{2}):(?<minute>\d{2}):(?<second>\d{2})`;
/** The three HTTP-date forms a recipient must accept (RFC 9110 §5.6.7); Date.parse is far looser. */
const HTTP_DATES = [
  new RegExp(String.raw`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (?<day>\d{2}) (?<month>\w{3}) (?<year>\d{4}) ${TIME} GMT$`),
  new RegExp(
    String.raw`^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (?<day>\d{2})-(?<month>\w{3})-(?<year>\d{2}) ${TIME} GMT$`,
  ),
  new RegExp(String.raw`^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?<month>\w{3}) (?<day>[ \d]\d) ${TIME} (?<year>\d{4})$`),
];

function parseHttpDate(text: string, nowMs: number): number | null {
  for (const pattern of HTTP_DATES) {
    const parts = pattern.exec(text)?.groups;
    if (!parts) continue;
    const month = MONTHS.indexOf(parts.month ?? "");
    const [day, hour, minute, second] = [
      Number(parts.day),
      Number(parts.hour),
      Number(parts.minute),
      Number(parts.second),
    ];
    let year = Number(parts.year);
    if (parts.year?.length === 2) {
      // A two-digit year more than 50 years ahead means the previous century.
      year += 2000;
      if (year > new Date(nowMs).getUTCFullYear() + 50) year -= 100;
    }
    const ms = Date.UTC(year, month, day, hour, minute, second);
    // Date.UTC rolls 31 Feb over into March and 25:00 into tomorrow; those are garbage, not dates.
    const valid = month >= 0 && new Date(ms).getUTCDate() === day && hour <= 23 && minute <= 59 && second <= 60;
    return valid ? ms : null;
  }
  return null;
}

/** Seconds from now that a `Retry-After` header asks for (RFC 9110 §10.2.3), or null when it asks nothing usable. */
export function parseRetryAfter(header: string | null, nowMs: number): number | null {
  if (header === null) return null;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const dateMs = parseHttpDate(text, nowMs);
  return dateMs === null ? null : Math.max(0, Math.ceil((dateMs - nowMs) / 1000));
}

/**
 * Redirects are not followed (a partner's URL is checked when it is saved, a Location is not), so a
 * 3xx is a misconfiguration like any other 4xx; 410 says the endpoint is gone for good.
 */
export function classify(outcome: AttemptOutcome): Classification {
  if (outcome.kind !== "response") return "retry";
  const { status } = outcome;
  if (status >= 200 && status <= 299) return "delivered";
  if (status === 410) return "gone";
  if (status === 408 || status === 425 || status === 429 || (status >= 500 && status <= 599)) return "retry";
  return "failed";
}

/**
 * The delay before the next attempt, or null when there is none: the outcome is not worth a retry,
 * or `retriesSoFar` has used up the schedule and the delivery is dead. A partner's `Retry-After`
 * may slow us down but never speed us up past the schedule, nor push past the queue's cap.
 */
export function nextRetryDelaySeconds(
  schedule: readonly number[],
  retriesSoFar: number,
  outcome: AttemptOutcome,
  nowMs: number,
  random: () => number = Math.random,
): number | null {
  if (classify(outcome) !== "retry") return null;
  const scheduled = schedule[retriesSoFar];
  if (scheduled === undefined) return null;
  const delay = withJitter(scheduled, random);
  const retryAfter = outcome.kind === "response" ? parseRetryAfter(outcome.retryAfter, nowMs) : null;
  return retryAfter === null ? delay : Math.min(MAX_QUEUE_DELAY_SECONDS, Math.max(delay, retryAfter));
}

/** An error message for a partner's `retry_schedule_seconds`, or null when it is usable. */
export function validateRetrySchedule(schedule: readonly number[]): string | null {
  if (schedule.length < 1 || schedule.length > MAX_RETRY_SCHEDULE_ENTRIES) {
    return `the retry schedule must hold 1 to ${MAX_RETRY_SCHEDULE_ENTRIES} delays (it holds ${schedule.length})`;
  }
  const bad = schedule.findIndex((s) => !Number.isInteger(s) || s < 1 || s > MAX_QUEUE_DELAY_SECONDS);
  if (bad >= 0) {
    return `retry delay ${bad} is ${schedule[bad]}; each must be a whole number of seconds from 1 to ${MAX_QUEUE_DELAY_SECONDS} (the Queues delay cap)`;
  }
  return null;
}
