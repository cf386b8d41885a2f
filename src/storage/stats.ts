/**
 * The stats roll-ups (migration 0013, docs/reports.md): the statements that keep them, run by each
 * writer in the same batch as the rows they count, and the queries a report runs over them.
 *
 * Conversions are recounted, never incremented: a recount derives what a conversion counts as from
 * its rows as they are now (the conversion, and the click it names), compares that with what it is
 * counted as (`stats_conversions_counted`) and moves the difference. So a message delivered twice,
 * a batch retried, events arriving out of order (the snapshot only moves forward) or a status that
 * changes later all leave each conversion counted once, in the row its current state belongs to.
 */
import {
  CLICK_DIMENSIONS,
  DELIVERY_DIMENSIONS,
  INTEGER_LIMB,
  STANDING_STATUSES,
  STATS_COLUMN_DIMENSIONS,
  STATS_COLUMNS,
  STATS_MONEY,
  type StatsColumnDimension,
  type StatsMoney,
  type StatsMoneySum,
} from "../domain/stats";
import type { D1 } from "./d1";

/** A conversion's key, as the roll-ups know it. */
export type StatsConversionKey = readonly [network_id: string, transaction_id: string, test: number];

const DIMENSION_COLUMNS = STATS_COLUMN_DIMENSIONS.map((d) => STATS_COLUMNS[d]);
const CURRENCY_COLUMNS = STATS_MONEY.map((m) => `${m}_currency`);
/** Each kind of money's limbs (migration 0015), each summed on its own so that no sum overflows 64 bits. */
const MONEY_LIMBS = ["high", "integer", "fraction"] as const satisfies readonly (keyof StatsMoneySum)[];
const MONEY_COLUMNS = STATS_MONEY.flatMap((m) => MONEY_LIMBS.map((limb) => `${m}_${limb}`));
/** A conversions roll-up row's key, in the primary key's order. */
const HOURLY_KEY = ["hour", "test", ...DIMENSION_COLUMNS, ...CURRENCY_COLUMNS];
/** What a conversion is counted as: its row's key and its money. */
const COUNTED = ["hour", ...DIMENSION_COLUMNS, ...CURRENCY_COLUMNS, ...MONEY_COLUMNS];

const STANDING = `c.status IN (${STANDING_STATUSES.map((s) => `'${s}'`).join(", ")})`;

/**
 * A value the click told: the click's while its row is in D1 (an erased click's row is, emptied);
 * once retention has pruned the row, what the conversion was counted with, so a conversion updated
 * after its click was pruned keeps its country, device and sub1.
 */
function visitor(column: "country" | "device" | "sub1"): string {
  return `(CASE WHEN k.click_id IS NULL THEN coalesce(was.${column}, '') ELSE coalesce(k.${column}, '') END)`;
}

/** Where the conversion's columns come from; '' for what is absent. */
const SOURCE: Record<StatsColumnDimension, string> = {
  network: "c.network_id",
  offer: "coalesce(c.offer_id, '')",
  campaign: "coalesce(c.campaign_id, '')",
  partner: "coalesce(c.attributed_partner_id, '')",
  platform: "coalesce(c.platform, '')",
  // The visitor's: from the click the conversion names, once the click's record is in D1.
  country: visitor("country"),
  device: visitor("device"),
  event_type: "coalesce(c.event_type, '')",
  status: "c.status",
  sub1: visitor("sub1"),
};

/** The conversion's value and currency columns for each kind of money. */
const MONEY_SOURCE: Record<StatsMoney, [value: string, currency: string]> = {
  amount: ["c.amount", "c.currency"],
  revenue: ["c.revenue", "c.revenue_currency"],
  payout: ["c.payout", "c.payout_currency"],
};

/** The integer part of a plain decimal string ("29.99" → 29); 0 when it does not stand. At most 15 digits. */
function integerPart(value: string): string {
  return `(CASE WHEN ${value} IS NULL OR NOT (${STANDING}) THEN 0
    WHEN instr(${value}, '.') > 0 THEN CAST(substr(${value}, 1, instr(${value}, '.') - 1) AS INTEGER)
    ELSE CAST(${value} AS INTEGER) END)`;
}

/** The fraction in hundred-millionths ("29.99" → 99000000): exact for up to 8 fraction digits. */
function fractionPart(value: string): string {
  return `CASE WHEN ${value} IS NULL OR NOT (${STANDING}) OR instr(${value}, '.') = 0 THEN 0
    ELSE CAST(substr(substr(${value}, instr(${value}, '.') + 1) || '00000000', 1, 8) AS INTEGER) END`;
}

/**
 * The SQL of one limb of a plain decimal string: `high` the integer part div 1e9 (at most 999999),
 * `integer` the integer part mod 1e9, `fraction` in hundred-millionths. A sum of 15-digit integer
 * parts overflows 64 bits after ~9,300 of them; a sum of limbs below 1e9 only after billions.
 */
const LIMB_SQL: Record<(typeof MONEY_LIMBS)[number], (value: string) => string> = {
  high: (value) => `${integerPart(value)} / ${INTEGER_LIMB}`,
  integer: (value) => `${integerPart(value)} % ${INTEGER_LIMB}`,
  fraction: fractionPart,
};

const CURRENT_COLUMNS = [
  "substr(c.first_seen_at, 1, 13) AS hour",
  ...STATS_COLUMN_DIMENSIONS.map((d) => `${SOURCE[d]} AS ${STATS_COLUMNS[d]}`),
  ...STATS_MONEY.map(
    (m) => `CASE WHEN ${STANDING} THEN coalesce(upper(${MONEY_SOURCE[m][1]}), '') ELSE '' END AS ${m}_currency`,
  ),
  ...STATS_MONEY.flatMap((m) => MONEY_LIMBS.map((limb) => `${LIMB_SQL[limb](MONEY_SOURCE[m][0])} AS ${m}_${limb}`)),
];

/**
 * The conversions of `selection` (a query of network_id, transaction_id, test, each once however
 * often it names one: a message twice in a batch) whose counted row
 * differs from what their rows say now: `cur_*` is what they count as now, `old_*` what they were
 * counted as (NULL when never).
 */
function changedCte(selection: string): string {
  return `WITH picked AS (SELECT DISTINCT network_id, transaction_id, test FROM (${selection})),
    current AS (
      SELECT c.network_id AS key_network_id, c.transaction_id AS key_transaction_id, c.test AS key_test,
        c.test AS test, ${CURRENT_COLUMNS.join(",\n        ")}
      FROM picked p
      JOIN conversions c ON c.network_id = p.network_id AND c.transaction_id = p.transaction_id AND c.test = p.test
      LEFT JOIN clicks k ON k.click_id = lower(trim(c.click_id))
      LEFT JOIN stats_conversions_counted was
        ON was.network_id = c.network_id AND was.transaction_id = c.transaction_id AND was.test = c.test
    ),
    changed AS (
      SELECT cur.key_network_id, cur.key_transaction_id, cur.key_test, cur.test,
        ${COUNTED.map((col) => `cur.${col} AS cur_${col}, old.${col} AS old_${col}`).join(",\n        ")},
        old.network_id IS NOT NULL AS was_counted
      FROM current cur
      LEFT JOIN stats_conversions_counted old
        ON old.network_id = cur.key_network_id AND old.transaction_id = cur.key_transaction_id
          AND old.test = cur.key_test
      WHERE old.network_id IS NULL
        OR (${COUNTED.map((col) => `old.${col}`).join(", ")}) <> (${COUNTED.map((col) => `cur.${col}`).join(", ")})
    )`;
}

/**
 * The conversions roll-ups: one by every dimension, and one without sub1 (a partner's sub id, the
 * dimension that can make a row per conversion), which a query neither grouping nor filtering by
 * sub1 reads: a year of it stays small however many distinct sub ids there are.
 */
export const CONVERSION_ROLLUPS = {
  detailed: { table: "stats_conversions_by_sub1_hourly", key: HOURLY_KEY },
  lean: { table: "stats_conversions_hourly", key: HOURLY_KEY.filter((col) => col !== "sub1") },
} as const;

/** Take the changed conversions out of the rows they were counted in, drop rows left empty, add them where they belong. */
function rollupStatements(cte: string, rollup: { table: string; key: readonly string[] }): string[] {
  const keyOf = (prefix: "old" | "cur") =>
    rollup.key.map((col) => (col === "test" ? "test" : `${prefix}_${col}`)).join(", ");
  const key = rollup.key.join(", ");
  const subtract = `${cte}
    UPDATE ${rollup.table} AS s SET conversions = s.conversions - d.n,
      ${MONEY_COLUMNS.map((col) => `${col} = s.${col} - d.${col}`).join(", ")}
    FROM (
      SELECT ${keyOf("old")}, count(*) AS n, ${MONEY_COLUMNS.map((col) => `sum(old_${col}) AS ${col}`).join(", ")}
      FROM changed WHERE was_counted GROUP BY ${keyOf("old")}
    ) AS d
    WHERE (${rollup.key.map((col) => `s.${col}`).join(", ")}) = (${rollup.key.map((col) => (col === "test" ? "d.test" : `d.old_${col}`)).join(", ")})`;
  const dropEmpty = `${cte}
    DELETE FROM ${rollup.table}
    WHERE conversions = 0 AND (${key}) IN (SELECT ${keyOf("old")} FROM changed WHERE was_counted)`;
  const add = `${cte}
    INSERT INTO ${rollup.table} (${key}, conversions, ${MONEY_COLUMNS.join(", ")})
    SELECT ${keyOf("cur")}, count(*), ${MONEY_COLUMNS.map((col) => `sum(cur_${col})`).join(", ")}
    FROM changed WHERE true GROUP BY ${keyOf("cur")}
    ON CONFLICT (${key}) DO UPDATE SET conversions = conversions + excluded.conversions,
      ${MONEY_COLUMNS.map((col) => `${col} = ${col} + excluded.${col}`).join(", ")}`;
  return [subtract, dropEmpty, add];
}

/**
 * The statements that recount the conversions `selection` picks: each roll-up moves the changed
 * ones from the rows they were counted in to the rows they belong in now, then what they are counted
 * as is remembered. Run them after the statements that wrote the conversions (and their clicks) in
 * the same batch.
 */
function recountStatements(db: D1, selection: string, binds: unknown[]): D1PreparedStatement[] {
  const cte = changedCte(selection);
  const remember = `${cte}
    INSERT INTO stats_conversions_counted (network_id, transaction_id, test, ${COUNTED.join(", ")})
    SELECT key_network_id, key_transaction_id, key_test, ${COUNTED.map((col) => `cur_${col}`).join(", ")}
    FROM changed WHERE true
    ON CONFLICT (network_id, transaction_id, test) DO UPDATE SET
      ${COUNTED.map((col) => `${col} = excluded.${col}`).join(", ")}`;
  return [
    ...rollupStatements(cte, CONVERSION_ROLLUPS.detailed),
    ...rollupStatements(cte, CONVERSION_ROLLUPS.lean),
    remember,
  ].map((sql) => db.prepare(sql).bind(...binds));
}

/** Recounts these conversions (the events consumer's, an erasure's). */
export function recountConversionsStatements(db: D1, keys: readonly StatsConversionKey[]): D1PreparedStatement[] {
  if (keys.length === 0) return [];
  return recountStatements(
    db,
    "SELECT value ->> 0 AS network_id, value ->> 1 AS transaction_id, value ->> 2 AS test FROM json_each(?1)",
    [JSON.stringify(keys)],
  );
}

/** Recounts the conversions that name these clicks (their country, device and sub1 are the click's). */
export function recountClickConversionsStatements(db: D1, clickIds: readonly string[]): D1PreparedStatement[] {
  if (clickIds.length === 0) return [];
  return recountStatements(
    db,
    `SELECT network_id, transaction_id, test FROM conversions
     WHERE click_id IS NOT NULL AND lower(trim(click_id)) IN (SELECT value FROM json_each(?1))`,
    [JSON.stringify(clickIds)],
  );
}

/** A click as the clicks roll-up counts it. */
export interface CountedClick {
  click_id: string;
  offer_id: string;
  partner_id: string;
  clicked_at: string;
  country: string | null;
  device: string | null;
  sub1: string | null;
}

/**
 * Counts the clicks not yet in D1, once each (a click twice in the batch, or already recorded by an
 * earlier delivery of its message, is not counted again). Run it before the statements that insert them.
 */
export function countNewClicksStatement(db: D1, clicks: readonly CountedClick[]): D1PreparedStatement[] {
  if (clicks.length === 0) return [];
  const rows = clicks.map((c) => [c.click_id, c.offer_id, c.partner_id, c.clicked_at, c.country, c.device, c.sub1]);
  return [
    db
      .prepare(
        `WITH seen AS (
           SELECT value ->> 0 AS click_id, min(value ->> 1) AS offer_id, min(value ->> 2) AS partner_id,
             min(value ->> 3) AS clicked_at, min(value ->> 4) AS country, min(value ->> 5) AS device,
             min(value ->> 6) AS sub1
           FROM json_each(?1) GROUP BY value ->> 0
         )
         INSERT INTO stats_clicks_hourly (hour, network_id, offer_id, campaign_id, partner_id, country, device, sub1, clicks)
         SELECT substr(s.clicked_at, 1, 13), coalesce(o.network_id, ''), s.offer_id, coalesce(o.campaign_id, ''),
           s.partner_id, coalesce(s.country, ''), coalesce(s.device, ''), coalesce(s.sub1, ''), count(*)
         FROM seen s LEFT JOIN offers o ON o.id = s.offer_id
         WHERE NOT EXISTS (SELECT 1 FROM clicks k WHERE k.click_id = s.click_id)
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
         ON CONFLICT (hour, network_id, offer_id, campaign_id, partner_id, country, device, sub1)
           DO UPDATE SET clicks = clicks + excluded.clicks`,
      )
      .bind(JSON.stringify(rows)),
  ];
}

/**
 * Moves the clicks an erasure is about to strip of what they told of the visitor (the ids in
 * `clickIds`, lower-case) to the rows without country, device and sub1. Run it before the erasure.
 */
export function eraseClickStatsStatements(
  db: D1,
  clickIds: readonly string[],
  networkId: string | null,
): D1PreparedStatement[] {
  const erased = `SELECT substr(k.clicked_at, 1, 13) AS hour, coalesce(o.network_id, '') AS network_id, k.offer_id,
      coalesce(o.campaign_id, '') AS campaign_id, k.partner_id, coalesce(k.country, '') AS country,
      coalesce(k.device, '') AS device, coalesce(k.sub1, '') AS sub1, count(*) AS n
    FROM clicks k LEFT JOIN offers o ON o.id = k.offer_id
    WHERE k.click_id IN (SELECT lower(value) FROM json_each(?1))
      AND (?2 IS NULL OR k.offer_id IN (SELECT id FROM offers WHERE network_id = ?2))
      AND (k.country IS NOT NULL OR k.device IS NOT NULL OR k.sub1 IS NOT NULL)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`;
  const key = "hour, network_id, offer_id, campaign_id, partner_id, country, device, sub1";
  const binds = [JSON.stringify(clickIds), networkId];
  return [
    db
      .prepare(
        `INSERT INTO stats_clicks_hourly (${key}, clicks)
         SELECT hour, network_id, offer_id, campaign_id, partner_id, '', '', '', n FROM (${erased}) WHERE true
         ON CONFLICT (${key}) DO UPDATE SET clicks = clicks + excluded.clicks`,
      )
      .bind(...binds),
    db
      .prepare(
        `UPDATE stats_clicks_hourly AS s SET clicks = s.clicks - e.n FROM (${erased}) AS e
         WHERE (s.hour, s.network_id, s.offer_id, s.campaign_id, s.partner_id, s.country, s.device, s.sub1)
           = (e.hour, e.network_id, e.offer_id, e.campaign_id, e.partner_id, e.country, e.device, e.sub1)`,
      )
      .bind(...binds),
    db
      .prepare(
        `DELETE FROM stats_clicks_hourly
         WHERE clicks = 0 AND (${key}) IN (SELECT ${key} FROM (${erased}))`,
      )
      .bind(...binds),
  ];
}

/**
 * Counts one delivery attempt, unless it is already recorded (the consumer's batch ran before).
 * Run it before the statement that inserts the attempt.
 */
export function countAttemptStatement(
  db: D1,
  attempt: { delivery_id: string; attempt: number; partner_id: string; started_at: string; outcome: string },
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO stats_deliveries_hourly (hour, test, network_id, partner_id, attempts, delivered, failed)
       SELECT substr(?3, 1, 13), coalesce(json_extract(d.payload, '$.test'), 0) = 1, d.network_id, ?4, 1,
         ?5 = 'delivered', ?5 IN ('failed', 'gone', 'dead')
       FROM deliveries d
       WHERE d.id = ?1 AND NOT EXISTS (SELECT 1 FROM delivery_attempts WHERE delivery_id = ?1 AND attempt = ?2)
       ON CONFLICT (hour, test, network_id, partner_id) DO UPDATE SET attempts = attempts + 1,
         delivered = delivered + excluded.delivered, failed = failed + excluded.failed`,
    )
    .bind(attempt.delivery_id, attempt.attempt, attempt.started_at, attempt.partner_id, attempt.outcome);
}

// ---------------------------------------------------------------------------------------------
// Backfill: conversions written before the roll-ups existed, a page per cron run
// ---------------------------------------------------------------------------------------------

/** Recounts the next `limit` conversions by key; returns how many, 0 once there is nothing left. */
export async function backfillStatsPage(db: D1, limit: number): Promise<number> {
  const state = await db
    .prepare("SELECT after_network_id, after_transaction_id, after_test FROM stats_backfill WHERE name = 'conversions'")
    .first<{ after_network_id: string; after_transaction_id: string; after_test: number }>();
  if (state === null) return 0;
  const { results } = await db
    .prepare(
      `SELECT network_id, transaction_id, test FROM conversions
       WHERE (network_id, transaction_id, test) > (?1, ?2, ?3)
       ORDER BY network_id, transaction_id, test LIMIT ?4`,
    )
    .bind(state.after_network_id, state.after_transaction_id, state.after_test, limit)
    .all<{ network_id: string; transaction_id: string; test: number }>();
  const keys = results.map((r) => [r.network_id, r.transaction_id, r.test] as const);
  const last = keys.at(-1);
  const advance =
    last === undefined || keys.length < limit
      ? db.prepare("DELETE FROM stats_backfill WHERE name = 'conversions'")
      : db
          .prepare(
            "UPDATE stats_backfill SET after_network_id = ?, after_transaction_id = ?, after_test = ? WHERE name = 'conversions'",
          )
          .bind(...last);
  await db.batch([...recountConversionsStatements(db, keys), advance]);
  return keys.length;
}

/** Whether conversions written before the roll-ups existed are still being counted. */
export async function statsBackfilling(db: D1): Promise<boolean> {
  return (await db.prepare("SELECT 1 FROM stats_backfill LIMIT 1").first()) !== null;
}

// ---------------------------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------------------------

/** One stats query over the roll-ups: the hours, the world, the filters and the groups. */
export interface StatsSelection {
  /** UTC hours, 'YYYY-MM-DDTHH', `since` included, `until` excluded. */
  since_hour: string;
  until_hour: string;
  test: boolean;
  filters: Partial<Record<StatsColumnDimension, string>>;
  /** The SQL expression of each group (over the roll-up's `hour` and columns), in order. */
  groups: readonly { name: string; sql: string }[];
  /** The most rows to return; the caller asks for one more than it accepts. */
  limit: number;
}

export type StatsGroupValues = Record<string, string>;

/** Per group, status and currencies: counts and exact sums (as text, so no digit is lost). */
export interface ConversionStatsSums {
  group: StatsGroupValues;
  status: string;
  currencies: Record<StatsMoney, string>;
  conversions: number;
  sums: Record<StatsMoney, StatsMoneySum>;
}

function where(selection: StatsSelection, dimensions: readonly StatsColumnDimension[], test: boolean) {
  const clauses = ["hour >= ?1", "hour < ?2"];
  const binds: unknown[] = [selection.since_hour, selection.until_hour];
  if (test) {
    clauses.push(`test = ?${binds.length + 1}`);
    binds.push(selection.test ? 1 : 0);
  }
  for (const dimension of dimensions) {
    const value = selection.filters[dimension];
    if (value === undefined) continue;
    clauses.push(`${STATS_COLUMNS[dimension]} = ?${binds.length + 1}`);
    binds.push(value);
  }
  return { sql: clauses.join(" AND "), binds };
}

function groupColumns(selection: StatsSelection): { select: string; by: string } {
  if (selection.groups.length === 0) return { select: "", by: "" };
  return {
    select: `${selection.groups.map((g) => `${g.sql} AS g_${g.name}`).join(", ")}, `,
    by: selection.groups.map((g) => `g_${g.name}`).join(", "),
  };
}

function groupOf(row: Record<string, unknown>, selection: StatsSelection): StatsGroupValues {
  return Object.fromEntries(selection.groups.map((g) => [g.name, String(row[`g_${g.name}`] ?? "")]));
}

export async function conversionStats(db: D1, selection: StatsSelection): Promise<ConversionStatsSums[]> {
  const filter = where(selection, STATS_COLUMN_DIMENSIONS, true);
  const bySub1 = selection.filters.sub1 !== undefined || selection.groups.some((g) => g.name === "sub1");
  const rollup = (bySub1 ? CONVERSION_ROLLUPS.detailed : CONVERSION_ROLLUPS.lean).table;
  const groups = groupColumns(selection);
  const by = [groups.by, "status", ...CURRENCY_COLUMNS].filter((part) => part !== "").join(", ");
  const { results } = await db
    .prepare(
      `SELECT ${groups.select}status, ${CURRENCY_COLUMNS.join(", ")}, sum(conversions) AS conversions,
         ${MONEY_COLUMNS.map((col) => `CAST(sum(${col}) AS TEXT) AS ${col}`).join(", ")}
       FROM ${rollup} WHERE ${filter.sql}
       GROUP BY ${by} LIMIT ${selection.limit}`,
    )
    .bind(...filter.binds)
    .all<Record<string, unknown>>();
  return results.map((row) => ({
    group: groupOf(row, selection),
    status: String(row.status),
    currencies: Object.fromEntries(STATS_MONEY.map((m) => [m, String(row[`${m}_currency`])])) as Record<
      StatsMoney,
      string
    >,
    conversions: Number(row.conversions),
    sums: Object.fromEntries(
      STATS_MONEY.map((m) => [
        m,
        {
          high: String(row[`${m}_high`]),
          integer: String(row[`${m}_integer`]),
          fraction: String(row[`${m}_fraction`]),
        },
      ]),
    ) as Record<StatsMoney, StatsMoneySum>,
  }));
}

export async function clickStats(
  db: D1,
  selection: StatsSelection,
): Promise<{ group: StatsGroupValues; clicks: number }[]> {
  const filter = where(selection, CLICK_DIMENSIONS, false);
  const groups = groupColumns(selection);
  const { results } = await db
    .prepare(
      `SELECT ${groups.select}sum(clicks) AS clicks FROM stats_clicks_hourly WHERE ${filter.sql}
       ${groups.by === "" ? "" : `GROUP BY ${groups.by}`} LIMIT ${selection.limit}`,
    )
    .bind(...filter.binds)
    .all<Record<string, unknown>>();
  return results.map((row) => ({ group: groupOf(row, selection), clicks: Number(row.clicks ?? 0) }));
}

export async function deliveryStats(
  db: D1,
  selection: StatsSelection,
): Promise<{ group: StatsGroupValues; attempts: number; delivered: number; failed: number }[]> {
  const filter = where(selection, DELIVERY_DIMENSIONS, true);
  const groups = groupColumns(selection);
  const { results } = await db
    .prepare(
      `SELECT ${groups.select}sum(attempts) AS attempts, sum(delivered) AS delivered, sum(failed) AS failed
       FROM stats_deliveries_hourly WHERE ${filter.sql}
       ${groups.by === "" ? "" : `GROUP BY ${groups.by}`} LIMIT ${selection.limit}`,
    )
    .bind(...filter.binds)
    .all<Record<string, unknown>>();
  return results.map((row) => ({
    group: groupOf(row, selection),
    attempts: Number(row.attempts ?? 0),
    delivered: Number(row.delivered ?? 0),
    failed: Number(row.failed ?? 0),
  }));
}
