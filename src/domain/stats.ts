/**
 * Stats (docs/reports.md): the dimensions a report groups and filters by, and which roll-up keeps
 * each. Conversions are counted by the hour they were first seen; clicks by the hour they were made;
 * delivery attempts by the hour they started. A dimension a roll-up does not keep (a click has no
 * status) makes that roll-up's metrics unknown for the query, never zero.
 */

/** Every dimension, by its name in `group_by`; `day` and `hour` are in the query's time zone. */
export const STATS_DIMENSIONS = [
  "day",
  "hour",
  "network",
  "offer",
  "campaign",
  "partner",
  "platform",
  "country",
  "device",
  "event_type",
  "status",
  "sub1",
] as const;
export type StatsDimension = (typeof STATS_DIMENSIONS)[number];

/** The dimensions that are columns of the roll-ups (all but the times), with their column and filter name. */
export const STATS_COLUMNS = {
  network: "network_id",
  offer: "offer_id",
  campaign: "campaign_id",
  partner: "partner_id",
  platform: "platform",
  country: "country",
  device: "device",
  event_type: "event_type",
  status: "status",
  sub1: "sub1",
} as const satisfies Partial<Record<StatsDimension, string>>;
export type StatsColumnDimension = keyof typeof STATS_COLUMNS;
export type StatsColumn = (typeof STATS_COLUMNS)[StatsColumnDimension];

export const STATS_COLUMN_DIMENSIONS = Object.keys(STATS_COLUMNS) as StatsColumnDimension[];

/** What clicks are kept by: a click has an offer, a partner and a visitor, not a status or a platform. */
export const CLICK_DIMENSIONS: readonly StatsColumnDimension[] = [
  "network",
  "offer",
  "campaign",
  "partner",
  "country",
  "device",
  "sub1",
];

/** What delivery attempts are kept by: the partner they went to and the network of the conversion. */
export const DELIVERY_DIMENSIONS: readonly StatsColumnDimension[] = ["network", "partner"];

/** The money a conversion carries: the network's amount, the offer's revenue and the partner's payout. */
export const STATS_MONEY = ["amount", "revenue", "payout"] as const;
export type StatsMoney = (typeof STATS_MONEY)[number];

/** Statuses whose money is summed: a declined or reversed conversion is counted, never summed. */
export const STANDING_STATUSES = ["pending", "approved", "paid"] as const;

/** Fraction digits kept of an amount (AmountSchema allows at most 8). */
export const STATS_FRACTION_DIGITS = 8;

/**
 * What the integer part of an amount is split at (migration 0015): `high` = integer part div this,
 * `integer` = integer part mod this. An amount has up to 15 integer digits, so a plain sum of them
 * overflows SQLite's 64-bit integers after ~9,300 conversions; a sum of limbs below 1e9, after billions.
 */
export const INTEGER_LIMB = 1_000_000_000;

/** A sum of money as the roll-ups keep it, each limb an exact integer in decimal text. */
export interface StatsMoneySum {
  /** The integer parts div INTEGER_LIMB, summed. */
  high: string;
  /** The integer parts mod INTEGER_LIMB, summed. */
  integer: string;
  /** The fractions in hundred-millionths (10^-STATS_FRACTION_DIGITS), summed. */
  fraction: string;
}

/** The most groups one stats query answers with. */
export const MAX_STATS_GROUPS = 10_000;

/** The longest period one query covers. */
export const MAX_STATS_DAYS = 400;

/** Conversions recorded before the roll-ups existed, counted per cron run. */
export const STATS_BACKFILL_PAGE = 500;
