/**
 * A stats query (docs/reports.md#stats): the period in the asker's time zone turned into UTC hours
 * of the roll-ups, the groups as SQL over them, and the roll-ups' rows folded into groups with
 * exact, per-currency money. Days in a time zone are exact because the roll-ups are hourly and the
 * zone's offset is a whole number of hours over the period (a zone with a half-hour offset is
 * refused rather than approximated).
 */
import Big from "big.js";
import { minorUnits } from "../domain/currencies";
import { isCalendarDate, RFC_3339 } from "../domain/postback";
import {
  CLICK_DIMENSIONS,
  DELIVERY_DIMENSIONS,
  INTEGER_LIMB,
  MAX_STATS_DAYS,
  MAX_STATS_GROUPS,
  STATS_COLUMNS,
  STATS_FRACTION_DIGITS,
  STATS_MONEY,
  type StatsColumnDimension,
  type StatsDimension,
  type StatsMoney,
} from "../domain/stats";
import { ProblemError } from "../errors";
import type { ExportColumn } from "../lib/export-stream";
import type { D1 } from "../storage/d1";
import {
  clickStats,
  conversionStats,
  deliveryStats,
  type StatsGroupValues,
  type StatsSelection,
  statsBackfilling,
} from "../storage/stats";

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** The years a period may fall in: Date.UTC maps years 0-99 to 1900-1999, and a 5-digit year is no ISO date. */
const MIN_YEAR = 1970;
const MAX_YEAR = 9999;
/** The first instant whose UTC hour is no longer 'YYYY-MM-DDTHH' (the roll-ups' key). */
const END_MS = Date.UTC(MAX_YEAR + 1, 0, 1);
const STATUSES = ["pending", "approved", "paid", "declined", "reversed"] as const;

export interface StatsQuery {
  group_by: readonly StatsDimension[];
  /** A date (the zone's midnight) or an RFC 3339 time on a whole hour; defaults: the last 30 days. */
  since?: string | undefined;
  until?: string | undefined;
  time_zone: string;
  test: boolean;
  filters: Partial<Record<StatsColumnDimension, string>>;
  /** Leave payouts out (a network's key: the partners' payouts are the operator's business). */
  hide_payout: boolean;
}

export interface Money {
  currency: string;
  amount: string;
}

export interface StatsMetrics {
  clicks: number | null;
  conversions: number;
  conversion_rate: number | null;
  statuses: Record<(typeof STATUSES)[number], number>;
  amount: Money[];
  revenue: Money[];
  payout: Money[] | null;
  deliveries: { attempts: number; delivered: number; failed: number; success_rate: number | null } | null;
}

export interface StatsGroupRow extends StatsMetrics {
  group: Partial<Record<StatsDimension, string | null>>;
}

export interface StatsAnswer {
  since: string;
  until: string;
  time_zone: string;
  group_by: StatsDimension[];
  test: boolean;
  /** False while conversions recorded before the roll-ups existed are still being counted. */
  complete: boolean;
  data: StatsGroupRow[];
  totals: StatsMetrics;
}

// ---------------------------------------------------------------------------------------------
// Time zones
// ---------------------------------------------------------------------------------------------

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterOf(zone: string): Intl.DateTimeFormat {
  let formatter = formatters.get(zone);
  if (formatter === undefined) {
    try {
      formatter = new Intl.DateTimeFormat("en-US", { timeZone: zone, timeZoneName: "longOffset" });
    } catch {
      throw new ProblemError("validation_failed", `Unknown time zone ${zone}.`, [
        { location: "query.time_zone", message: "must be an IANA time zone name, such as Europe/Paris or UTC" },
      ]);
    }
    formatters.set(zone, formatter);
  }
  return formatter;
}

/**
 * The zone's offset from UTC at `ms`, in minutes (Europe/Paris in July: 120). An offset with seconds
 * (local mean time before a zone adopted standard time: Paris's +00:09:21 until 1911, Monrovia's
 * -00:44:30 until 1972) is refused like any offset that is not a whole number of hours.
 */
export function offsetMinutes(zone: string, ms: number): number {
  const name = formatterOf(zone)
    .formatToParts(ms)
    .find((part) => part.type === "timeZoneName")?.value;
  const match = /^GMT(?:([+-])(\d{2}):?(\d{2})?(?::(\d{2}))?)?$/.exec(name ?? "");
  if (match === null) throw oddZone(zone, name ?? "an unknown offset");
  if (match[1] === undefined) return 0;
  if (Number(match[4] ?? 0) !== 0) throw oddZone(zone, (name ?? "").slice(3));
  return (match[1] === "-" ? -1 : 1) * (Number(match[2]) * 60 + Number(match[3] ?? 0));
}

/** A span of UTC hours with one offset: from `from_ms` (included) to the next span. */
export interface OffsetSpan {
  from_ms: number;
  offset_minutes: number;
}

/** The zone's offsets over [since, until): one span per offset, each starting on a UTC hour. */
export function offsetSpans(zone: string, sinceMs: number, untilMs: number): OffsetSpan[] {
  const spans: OffsetSpan[] = [{ from_ms: sinceMs, offset_minutes: offsetMinutes(zone, sinceMs) }];
  let at = sinceMs;
  while (at < untilMs) {
    const next = Math.min(at + DAY_MS, untilMs);
    const current = spans.at(-1)?.offset_minutes ?? 0;
    if (next - HOUR_MS <= at || offsetMinutes(zone, next - HOUR_MS) === current) {
      at = next;
      continue;
    }
    // The offset changes within the day: find the first hour with the new one.
    let low = at;
    let high = next - HOUR_MS;
    while (high - low > HOUR_MS) {
      const middle = low + Math.floor((high - low) / HOUR_MS / 2) * HOUR_MS;
      if (offsetMinutes(zone, middle) === current) low = middle;
      else high = middle;
    }
    spans.push({ from_ms: high, offset_minutes: offsetMinutes(zone, high) });
    at = high;
  }
  return spans;
}

/** The UTC instant of a date's midnight in the zone. */
function localMidnight(zone: string, date: string): number {
  const [year, month, day] = date.split("-").map(Number);
  const utcMidnight = Date.UTC(year ?? 0, (month ?? 1) - 1, day ?? 1);
  let guess = utcMidnight - offsetMinutes(zone, utcMidnight) * 60_000;
  guess = utcMidnight - offsetMinutes(zone, guess) * 60_000;
  return guess;
}

function boundary(zone: string, value: string, field: "since" | "until"): number {
  const location = `query.${field}`;
  const isDate = DATE.test(value);
  const notDate = (detail: string, message: string) =>
    new ProblemError("validation_failed", `${field} ${detail}.`, [{ location, message }]);
  if (!isDate && !RFC_3339.test(value)) {
    throw notDate(
      "is not a date or a time",
      "must be a date (2026-11-01, midnight in time_zone) or an RFC 3339 time with its offset",
    );
  }
  const year = Number(value.slice(0, 4));
  const outOfRange = () =>
    notDate("is out of range", `must be a date or a time from ${MIN_YEAR} to ${MAX_YEAR}, in UTC too`);
  if (year < MIN_YEAR || year > MAX_YEAR) throw outOfRange();
  if (!isCalendarDate(value)) throw notDate("is not a real calendar date", "must be a real date, such as 2026-02-28");
  const ms = isDate ? localMidnight(zone, value) : Date.parse(value);
  if (Number.isNaN(ms)) {
    throw notDate("is not a date or a time", "must be an RFC 3339 time, such as 2026-11-01T00:00:00Z");
  }
  if (ms >= END_MS) throw outOfRange();
  if (ms % HOUR_MS !== 0 && isDate) throw oddZone(zone, offsetText(offsetMinutes(zone, ms)));
  if (ms % HOUR_MS !== 0) {
    throw new ProblemError("validation_failed", `${field} is not on a whole hour.`, [
      { location, message: "must fall on a whole hour: stats are kept by the hour" },
    ]);
  }
  return ms;
}

const utcHour = (ms: number) => new Date(ms).toISOString().slice(0, 13);

function period(query: StatsQuery, nowMs: number): { since: number; until: number; spans: OffsetSpan[] } {
  const zone = query.time_zone;
  formatterOf(zone);
  const today = new Date(nowMs + offsetMinutes(zone, nowMs) * 60_000).toISOString().slice(0, 10);
  const tomorrow = new Date(Date.parse(today) + DAY_MS).toISOString().slice(0, 10);
  // since first: a refusal names the period's start when both ends are wrong.
  const asked = query.since === undefined ? undefined : boundary(zone, query.since, "since");
  const until = boundary(zone, query.until ?? tomorrow, "until");
  const since = asked ?? until - 30 * DAY_MS;
  const defaultSince = query.since === undefined;
  const start = defaultSince ? localMidnight(zone, new Date(since + DAY_MS / 2).toISOString().slice(0, 10)) : since;
  if (start >= until) {
    throw new ProblemError("validation_failed", "The period is empty.", [
      { location: "query.until", message: "must be after since" },
    ]);
  }
  if (until - start > MAX_STATS_DAYS * DAY_MS) {
    throw new ProblemError("validation_failed", `The period is longer than ${MAX_STATS_DAYS} days.`, [
      { location: "query.since", message: `must be at most ${MAX_STATS_DAYS} days before until` },
    ]);
  }
  const spans = offsetSpans(zone, start, until);
  const odd = spans.find((span) => span.offset_minutes % 60 !== 0);
  if (odd !== undefined) throw oddZone(zone, offsetText(odd.offset_minutes));
  return { since: start, until, spans };
}

/** An offset in minutes as ±HH:MM (330: +05:30). */
function offsetText(minutes: number): string {
  const abs = Math.abs(minutes);
  return `${minutes < 0 ? "-" : "+"}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** A zone whose offset over the period is not a whole number of hours (`offset` as ±HH:MM[:SS]). */
function oddZone(zone: string, offset: string): ProblemError {
  return new ProblemError("validation_failed", `${zone} is ${offset} from UTC over the period.`, [
    {
      location: "query.time_zone",
      message: "must have a whole-hour offset over the period: stats are kept by the UTC hour",
    },
  ]);
}

/** The SQL of a roll-up hour's local day, over the period's offsets (values are ours, never the asker's). */
function localDaySql(spans: readonly OffsetSpan[]): string {
  const modifier = (span: OffsetSpan) => `'${span.offset_minutes >= 0 ? "+" : ""}${span.offset_minutes} minutes'`;
  const [first, ...rest] = spans;
  if (first === undefined) return "substr(hour, 1, 10)";
  let expression = modifier(spans.at(-1) ?? first);
  for (let i = rest.length - 1; i >= 0; i--) {
    const span = rest[i];
    const before = spans[i];
    if (span === undefined || before === undefined) continue;
    expression = `(CASE WHEN hour < '${utcHour(span.from_ms)}' THEN ${modifier(before)} ELSE ${expression} END)`;
  }
  return `substr(datetime(hour || ':00:00', ${expression}), 1, 10)`;
}

function localHourLabel(hour: string, spans: readonly OffsetSpan[]): string {
  const ms = Date.parse(`${hour}:00:00Z`);
  let offset = spans[0]?.offset_minutes ?? 0;
  for (const span of spans) if (span.from_ms <= ms) offset = span.offset_minutes;
  const local = new Date(ms + offset * 60_000).toISOString().slice(0, 13);
  const sign = offset < 0 ? "-" : "+";
  const hours = String(Math.floor(Math.abs(offset) / 60)).padStart(2, "0");
  return `${local}:00:00${sign}${hours}:00`;
}

// ---------------------------------------------------------------------------------------------
// The query
// ---------------------------------------------------------------------------------------------

type Sums = Map<string, Big>;

interface Fold {
  group: StatsGroupValues;
  conversions: number;
  statuses: Record<(typeof STATUSES)[number], number>;
  money: Record<StatsMoney, Sums>;
  clicks: number;
  attempts: number;
  delivered: number;
  failed: number;
}

const emptyFold = (group: StatsGroupValues): Fold => ({
  group,
  conversions: 0,
  statuses: { pending: 0, approved: 0, paid: 0, declined: 0, reversed: 0 },
  money: { amount: new Map(), revenue: new Map(), payout: new Map() },
  clicks: 0,
  attempts: 0,
  delivered: 0,
  failed: 0,
});

const SCALE = new Big(10).pow(STATS_FRACTION_DIGITS);

/** An exact decimal string, with at least the currency's minor digits ("12.5" USD → "12.50"). */
function moneyText(sum: Big, currency: string): string {
  const text = sum.toFixed();
  const digits = text.split(".")[1]?.length ?? 0;
  return digits >= minorUnits(currency) ? text : sum.toFixed(minorUnits(currency));
}

function moneyList(sums: Sums): Money[] {
  return [...sums.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([currency, sum]) => ({ currency, amount: moneyText(sum, currency) }));
}

const ratio = (part: number, whole: number) => (whole === 0 ? null : Number((part / whole).toFixed(6)));

export async function queryStats(db: D1, query: StatsQuery, nowMs: number): Promise<StatsAnswer> {
  const { since, until, spans } = period(query, nowMs);
  const groupBy = [...new Set(query.group_by)];
  const groups = groupBy.map((name) => ({
    name,
    sql: name === "day" ? localDaySql(spans) : name === "hour" ? "hour" : STATS_COLUMNS[name],
  }));
  const selection: StatsSelection = {
    since_hour: utcHour(since),
    until_hour: utcHour(until),
    test: query.test,
    filters: query.filters,
    groups,
    limit: MAX_STATS_GROUPS * 20 + 1,
  };
  const asked = [...groupBy.filter((d) => d !== "day" && d !== "hour"), ...Object.keys(query.filters)];
  const keeps = (dimensions: readonly StatsColumnDimension[]) =>
    asked.every((d) => dimensions.includes(d as StatsColumnDimension));
  const withClicks = !query.test && keeps(CLICK_DIMENSIONS);
  const withDeliveries = keeps(DELIVERY_DIMENSIONS);
  const [conversions, clicks, deliveries, backfilling] = await Promise.all([
    conversionStats(db, selection),
    withClicks ? clickStats(db, selection) : Promise.resolve([]),
    withDeliveries ? deliveryStats(db, selection) : Promise.resolve([]),
    statsBackfilling(db),
  ]);
  if ([conversions, clicks, deliveries].some((rows) => rows.length >= selection.limit)) tooMany();

  const folds = new Map<string, Fold>();
  const totals = emptyFold({});
  const foldOf = (group: StatsGroupValues) => {
    const key = JSON.stringify(groupBy.map((name) => group[name] ?? ""));
    let fold = folds.get(key);
    if (fold === undefined) {
      fold = emptyFold(group);
      folds.set(key, fold);
    }
    return fold;
  };
  for (const row of conversions) {
    for (const fold of [foldOf(row.group), totals]) {
      fold.conversions += row.conversions;
      if (row.status in fold.statuses) fold.statuses[row.status as (typeof STATUSES)[number]] += row.conversions;
      for (const money of STATS_MONEY) {
        const currency = row.currencies[money];
        if (currency === "") continue;
        const { high, integer, fraction } = row.sums[money];
        const sum = new Big(high).times(INTEGER_LIMB).plus(integer).plus(new Big(fraction).div(SCALE));
        const sums = fold.money[money];
        sums.set(currency, (sums.get(currency) ?? new Big(0)).plus(sum));
      }
    }
  }
  for (const row of clicks) for (const fold of [foldOf(row.group), totals]) fold.clicks += row.clicks;
  for (const row of deliveries) {
    for (const fold of [foldOf(row.group), totals]) {
      fold.attempts += row.attempts;
      fold.delivered += row.delivered;
      fold.failed += row.failed;
    }
  }
  if (folds.size > MAX_STATS_GROUPS) tooMany();

  const metrics = (fold: Fold): StatsMetrics => ({
    clicks: withClicks ? fold.clicks : null,
    conversions: fold.conversions,
    conversion_rate: withClicks ? ratio(fold.conversions, fold.clicks) : null,
    statuses: fold.statuses,
    amount: moneyList(fold.money.amount),
    revenue: moneyList(fold.money.revenue),
    payout: query.hide_payout ? null : moneyList(fold.money.payout),
    deliveries: withDeliveries
      ? {
          attempts: fold.attempts,
          delivered: fold.delivered,
          failed: fold.failed,
          success_rate: ratio(fold.delivered, fold.delivered + fold.failed),
        }
      : null,
  });
  const label = (name: StatsDimension, value: string): string | null =>
    name === "hour" ? localHourLabel(value, spans) : value === "" ? null : value;
  const data = [...folds.values()]
    .map((fold) => ({
      group: Object.fromEntries(groupBy.map((name) => [name, label(name, fold.group[name] ?? "")])),
      ...metrics(fold),
    }))
    .sort((a, b) => compareGroups(groupBy, a.group, b.group));
  return {
    since: new Date(since).toISOString(),
    until: new Date(until).toISOString(),
    time_zone: query.time_zone,
    group_by: groupBy,
    test: query.test,
    complete: !backfilling,
    data,
    totals: metrics(totals),
  };
}

function compareGroups(
  groupBy: readonly StatsDimension[],
  a: Partial<Record<StatsDimension, string | null>>,
  b: Partial<Record<StatsDimension, string | null>>,
): number {
  for (const name of groupBy) {
    const x = a[name] ?? "";
    const y = b[name] ?? "";
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}

function tooMany(): never {
  throw new ProblemError("validation_failed", `The query has more than ${MAX_STATS_GROUPS} groups.`, [
    { location: "query.group_by", message: "group by fewer dimensions, filter, or shorten the period" },
  ]);
}

/** One column per group dimension, per metric, and per money kind and currency that appears. */
export function statsExportColumns(
  groupBy: readonly StatsDimension[],
  totals: { amount: { currency: string }[]; revenue: { currency: string }[]; payout: { currency: string }[] | null },
): ExportColumn<StatsGroupRow>[] {
  const money = STATS_MONEY.flatMap((kind) =>
    (totals[kind] ?? []).map(({ currency }) => ({
      name: `${kind}_${currency}`,
      value: (row: StatsGroupRow) => row[kind]?.find((m) => m.currency === currency)?.amount ?? "0",
    })),
  );
  return [
    ...groupBy.map((name) => ({ name, value: (row: StatsGroupRow) => row.group[name] ?? null })),
    { name: "clicks", value: (row) => row.clicks },
    { name: "conversions", value: (row) => row.conversions },
    { name: "conversion_rate", value: (row) => row.conversion_rate },
    ...(["pending", "approved", "paid", "declined", "reversed"] as const).map((status) => ({
      name: status,
      value: (row: StatsGroupRow) => row.statuses[status],
    })),
    ...money,
    { name: "delivery_attempts", value: (row) => row.deliveries?.attempts ?? null },
    { name: "deliveries_delivered", value: (row) => row.deliveries?.delivered ?? null },
    { name: "deliveries_failed", value: (row) => row.deliveries?.failed ?? null },
    { name: "delivery_success_rate", value: (row) => row.deliveries?.success_rate ?? null },
  ];
}
