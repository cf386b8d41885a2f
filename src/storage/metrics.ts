/**
 * SQL for GET /metrics (migrations 0016 and 0022, domain/metrics.ts). Every counting statement runs in the
 * batch that records what it counts, before that record's insert, and counts only what is not yet
 * recorded (NOT EXISTS on the record's key): a message delivered twice, or by two isolates, adds
 * once. The exception is a partner coordinator's attempt counts, added at most once a second
 * from what it recorded (addAttemptCountsStatement). Gauges read an index each, never a table scan.
 */
import type { InboundRecord, UnloggedCount } from "../domain/messages";
import { attemptIncrements, METRICS } from "../domain/metrics";
import type { D1 } from "./d1";

const ADD = `ON CONFLICT (name, labels) DO UPDATE SET value = value + excluded.value`;

/** An attempt's counters as `metric_attempt_counters` keeps them: `[name, ...labels]` (JSON) to value. */
export function attemptCounts(
  attempt: { attempt: number; partner_id: string; outcome: string; latency_ms: number | null },
  state: string,
): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const increment of attemptIncrements({ ...attempt, state })) {
    const key = JSON.stringify([increment.name, ...increment.labels]);
    counts[key] = (counts[key] ?? 0) + increment.value;
  }
  return counts;
}

/**
 * A partner coordinator's counts of the attempts it recorded since its last write (their sum): one
 * row written per write, at most once a second, where one per attempt was the delivery stage's
 * fourth-largest D1 cost (issue 16). The attempts were recorded, once each, before they were counted.
 */
export function addAttemptCountsStatement(
  db: D1,
  partnerId: string,
  counts: Readonly<Record<string, number>>,
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO metric_attempt_counters (partner_id, counts)
       SELECT ?1, json(?2) WHERE true
       ON CONFLICT (partner_id) DO UPDATE SET counts = (
         SELECT json_group_object(key, total) FROM (
           SELECT key, sum(value) AS total FROM (
             SELECT key, value FROM json_each(metric_attempt_counters.counts)
             UNION ALL SELECT key, value FROM json_each(excluded.counts)
           ) GROUP BY key
         )
       )`,
    )
    .bind(partnerId, JSON.stringify(counts));
}

/** Postbacks by network and verdict, for the records of a batch not yet in the inbound log. */
export function countInboundRecordsStatement(db: D1, records: readonly InboundRecord[]): D1PreparedStatement {
  const rows = records.map((record) => [record.request_id, record.network_id, record.verdict]);
  return db
    .prepare(
      `WITH fresh AS (SELECT value ->> 0 AS request_id, min(value ->> 1) AS network_id, min(value ->> 2) AS verdict
                      FROM json_each(?1) GROUP BY value ->> 0)
       INSERT INTO metric_counters (name, labels, value)
       SELECT ?2, json_array(f.network_id, f.verdict), count(*) FROM fresh AS f
       WHERE NOT EXISTS (SELECT 1 FROM inbound_requests AS r WHERE r.request_id = f.request_id)
       GROUP BY 2 ${ADD}`,
    )
    .bind(JSON.stringify(rows), METRICS.postbacks.name);
}

/**
 * Unlogged postbacks: each isolate reports a running total for its minute (the largest is kept), so
 * what a report adds is how far it goes past what is kept (never below zero, never twice).
 */
export function countUnloggedStatement(db: D1, counts: readonly UnloggedCount[]): D1PreparedStatement {
  const rows = counts.map((count) => [count.network_id, count.minute, count.isolate_id, count.unlogged]);
  return db
    .prepare(
      `WITH reported AS (SELECT value ->> 0 AS network_id, value ->> 1 AS minute, value ->> 2 AS isolate_id,
                           max(value ->> 3) AS unlogged
                         FROM json_each(?1) GROUP BY 1, 2, 3)
       INSERT INTO metric_counters (name, labels, value)
       SELECT ?2, json_array(r.network_id),
         sum(max(0, r.unlogged - coalesce((SELECT k.unlogged FROM inbound_request_counts AS k
           WHERE k.network_id = r.network_id AND k.minute = r.minute AND k.isolate_id = r.isolate_id), 0)))
       FROM reported AS r WHERE true
       GROUP BY 2 ${ADD}`,
    )
    .bind(JSON.stringify(rows), METRICS.postbacksUnlogged.name);
}

/** Clicks by offer, for the clicks of a batch not yet recorded. */
export function countClicksStatement(
  db: D1,
  clicks: readonly { click_id: string; offer_id: string }[],
): D1PreparedStatement {
  return db
    .prepare(
      `WITH fresh AS (SELECT value ->> 0 AS click_id, min(value ->> 1) AS offer_id FROM json_each(?1) GROUP BY value ->> 0)
       INSERT INTO metric_counters (name, labels, value)
       SELECT ?2, json_array(f.offer_id), count(*) FROM fresh AS f
       WHERE NOT EXISTS (SELECT 1 FROM clicks AS k WHERE k.click_id = f.click_id)
       GROUP BY 2 ${ADD}`,
    )
    .bind(JSON.stringify(clicks.map((click) => [click.click_id, click.offer_id])), METRICS.clicks.name);
}

/** The hourly row of outbox resends the alert rule reads (not a metric of its own: /metrics shows the total). */
export const OUTBOX_RESENDS_HOURLY = "outbox_resends_hourly";

/** `count` events an object sent again, unconfirmed: the total, and the hour's row the alert rule reads. */
export function countOutboxResendsStatements(db: D1, count: number, nowMs: number): D1PreparedStatement[] {
  const statement = `INSERT INTO metric_counters (name, labels, value) VALUES (?, ?, ?) ${ADD}`;
  return [
    db.prepare(statement).bind(METRICS.outboxResends.name, "[]", count),
    db
      .prepare(statement)
      .bind(OUTBOX_RESENDS_HOURLY, JSON.stringify([new Date(nowMs).toISOString().slice(0, 13)]), count),
  ];
}

/** Outbox resends counted in the hours from `sinceHour` on. */
export async function outboxResendsSince(db: D1, sinceHour: string): Promise<number> {
  const row = await db
    .prepare("SELECT coalesce(sum(value), 0) AS n FROM metric_counters WHERE name = ? AND labels >= json_array(?)")
    .bind(OUTBOX_RESENDS_HOURLY, sinceHour)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** The total of `outbox_unconfirmed` (migration 0021), kept as one row so a scrape does not add the table up. */
export const OUTBOX_UNCONFIRMED_TOTAL = "outbox_unconfirmed_events";

/** What one object's alarm says of its outbox: how many events D1 has not confirmed past their deadline. */
export interface UnconfirmedReport {
  object_id: string;
  network_id: string;
  transaction_id: string;
  /** 0: none any more (the object's row goes). */
  events: number;
  oldest_at: string | null;
}

/**
 * The object's row, and the total moved by what the row changes (computed from the row D1 holds,
 * so a report applied twice, or after a lost answer, moves it once). One batch: both or neither.
 */
export function reportUnconfirmedStatements(db: D1, report: UnconfirmedReport, now: string): D1PreparedStatement[] {
  const events = report.oldest_at === null ? 0 : report.events;
  const total = db
    .prepare(
      `INSERT INTO metric_counters (name, labels, value)
       VALUES (?1, '[]', ?2 - coalesce((SELECT events FROM outbox_unconfirmed WHERE object_id = ?3), 0)) ${ADD}`,
    )
    .bind(OUTBOX_UNCONFIRMED_TOTAL, events, report.object_id);
  if (events === 0 || report.oldest_at === null) {
    return [total, db.prepare("DELETE FROM outbox_unconfirmed WHERE object_id = ?").bind(report.object_id)];
  }
  return [
    total,
    db
      .prepare(
        `INSERT INTO outbox_unconfirmed (object_id, network_id, transaction_id, events, oldest_at, reported_at)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (object_id) DO UPDATE SET events = excluded.events, oldest_at = excluded.oldest_at,
           reported_at = excluded.reported_at`,
      )
      .bind(report.object_id, report.network_id, report.transaction_id, report.events, report.oldest_at, now),
  ];
}

function unconfirmedStatement(db: D1): D1PreparedStatement {
  return db
    .prepare(
      `SELECT coalesce((SELECT value FROM metric_counters WHERE name = ? AND labels = '[]'), 0) AS events,
         (SELECT min(oldest_at) FROM outbox_unconfirmed) AS oldest_at`,
    )
    .bind(OUTBOX_UNCONFIRMED_TOTAL);
}

/** The outbox events unconfirmed past their deadline, as the objects last reported them (the gauge). */
export async function outboxUnconfirmed(db: D1): Promise<{ events: number; oldest_at: string | null }> {
  return (
    (await unconfirmedStatement(db).first<{ events: number; oldest_at: string | null }>()) ?? {
      events: 0,
      oldest_at: null,
    }
  );
}

export interface CounterRow {
  name: string;
  labels: string[];
  value: number;
}

/**
 * Every counter row (one per metric and label set: networks × verdicts, partners × outcomes and
 * buckets…): `metric_counters`, and each partner's attempt counters unfolded from its one row. A
 * counter found in both (attempts counted before migration 0022 stay in `metric_counters`) is their sum.
 */
export async function counterRows(db: D1): Promise<CounterRow[]> {
  const [flat, attempts] = await db.batch([
    db.prepare("SELECT name, labels, value FROM metric_counters"),
    db.prepare("SELECT counts FROM metric_attempt_counters"),
  ]);
  const rows = new Map<string, CounterRow>();
  const add = (name: string, labels: string[], value: number) => {
    const key = JSON.stringify([name, ...labels]);
    const existing = rows.get(key);
    if (existing) existing.value += value;
    else rows.set(key, { name, labels, value });
  };
  for (const row of (flat?.results ?? []) as { name: string; labels: string; value: number }[]) {
    add(row.name, JSON.parse(row.labels) as string[], row.value);
  }
  for (const row of (attempts?.results ?? []) as { counts: string }[]) {
    for (const [key, value] of Object.entries(JSON.parse(row.counts) as Record<string, number>)) {
      const [name = "", ...labels] = JSON.parse(key) as string[];
      add(name, labels, value);
    }
  }
  const order = (row: CounterRow) => JSON.stringify(row.labels);
  return [...rows.values()].sort((a, b) =>
    a.name === b.name ? (order(a) < order(b) ? -1 : order(a) > order(b) ? 1 : 0) : a.name < b.name ? -1 : 1,
  );
}

export interface Gauges {
  backlog: { pending: number; retrying: number; oldest_created_at: string | null };
  dead_letters: { queue: string; open: number }[];
  partners: { id: string; state: "active" | "paused" | "disabled" }[];
  outbox_unconfirmed: { events: number; oldest_at: string | null };
}

/**
 * The gauges, each from an index: the waiting deliveries, the open dead letters, the partners, the
 * outbox events unconfirmed (one row and the oldest of an index).
 */
export async function gauges(db: D1): Promise<Gauges> {
  const [backlog, deadLetters, partners, unconfirmed] = await db.batch([
    db.prepare(
      `SELECT coalesce(sum(state = 'pending'), 0) AS pending, coalesce(sum(state = 'retrying'), 0) AS retrying,
         min(created_at) AS oldest_created_at
       FROM deliveries WHERE state IN ('pending', 'retrying')`,
    ),
    db.prepare(
      "SELECT queue, count(*) AS open FROM dead_letters WHERE replayed_at IS NULL GROUP BY queue ORDER BY queue",
    ),
    db.prepare(
      `SELECT id, CASE WHEN status = 'disabled' THEN 'disabled' WHEN paused_reason IS NOT NULL THEN 'paused'
         ELSE 'active' END AS state
       FROM partners ORDER BY id`,
    ),
    unconfirmedStatement(db),
  ]);
  const first = (backlog?.results[0] ?? null) as Gauges["backlog"] | null;
  return {
    backlog: first ?? { pending: 0, retrying: 0, oldest_created_at: null },
    dead_letters: (deadLetters?.results ?? []) as Gauges["dead_letters"],
    partners: (partners?.results ?? []) as Gauges["partners"],
    outbox_unconfirmed: (unconfirmed?.results[0] ?? { events: 0, oldest_at: null }) as Gauges["outbox_unconfirmed"],
  };
}
