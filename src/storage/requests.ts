/** SQL for the inbound request log: written by the requests consumer, read by the admin and network APIs. */
import type { InboundRecord, UnloggedCount } from "../domain/messages";
import type { D1 } from "./d1";

export interface InboundRequestRow {
  request_id: string;
  network_id: string;
  received_at: string;
  route: string;
  method: string;
  auth_method: string | null;
  credential_id: string | null;
  client_ip: string | null;
  transaction_id: string | null;
  test: number | null;
  status: number;
  verdict: string;
  errors: string;
  items: number | null;
  body_bytes: number;
  body_sha256: string | null;
  excerpt: string;
}

const RECORD_COLUMNS = [
  "request_id",
  "network_id",
  "received_at",
  "route",
  "method",
  "auth_method",
  "credential_id",
  "client_ip",
  "transaction_id",
  "test",
  "status",
  "verdict",
  "errors",
  "items",
  "body_bytes",
  "body_sha256",
  "excerpt",
] as const satisfies readonly (keyof InboundRequestRow)[];

/**
 * Every record of a queue message in one statement (D1 binds at most 100 parameters, so a
 * multi-row VALUES would need many): the records travel as one JSON array and json_each unpacks
 * it. Keyed by request id, so a redelivered message writes nothing twice.
 */
export function insertInboundRequestsStatement(db: D1, records: readonly InboundRecord[]): D1PreparedStatement {
  const rows = records.map((record) => ({
    ...record,
    test: record.test === null ? null : record.test ? 1 : 0,
    errors: JSON.stringify(record.errors),
    excerpt: JSON.stringify(record.excerpt),
  }));
  const values = RECORD_COLUMNS.map((column) => `value ->> '$.${column}'`).join(", ");
  return db
    .prepare(
      `INSERT INTO inbound_requests (${RECORD_COLUMNS.join(", ")})
       SELECT ${values} FROM json_each(?) WHERE true
       ON CONFLICT (request_id) DO NOTHING`,
    )
    .bind(JSON.stringify(rows));
}

/** Running totals per isolate: the largest report wins, so duplicates and reordering change nothing. */
export function upsertUnloggedCountsStatement(db: D1, counts: readonly UnloggedCount[]): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO inbound_request_counts (network_id, minute, isolate_id, unlogged)
       SELECT value ->> '$.network_id', value ->> '$.minute', value ->> '$.isolate_id', value ->> '$.unlogged'
       FROM json_each(?) WHERE true
       ON CONFLICT (network_id, minute, isolate_id) DO UPDATE SET unlogged = max(unlogged, excluded.unlogged)`,
    )
    .bind(JSON.stringify(counts));
}

export interface InboundRequestFilter {
  network_id: string;
  verdict?: string | undefined;
  status?: number | undefined;
  since?: string | undefined;
  until?: string | undefined;
  transaction_id?: string | undefined;
  /** Only the requests answered with an error (status 400 or above). */
  rejected?: boolean | undefined;
}

/** Newest first; `after` is the (received_at, request_id) of the last row of the previous page. */
export async function listInboundRequests(
  db: D1,
  filter: InboundRequestFilter,
  limit: number,
  after: [string, string] | null,
): Promise<InboundRequestRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM inbound_requests
       WHERE network_id = ?1
         AND (?2 IS NULL OR verdict = ?2) AND (?3 IS NULL OR status = ?3)
         AND (?4 IS NULL OR received_at >= ?4) AND (?5 IS NULL OR received_at < ?5)
         AND (?6 IS NULL OR transaction_id = ?6)
         AND (?7 IS NULL OR (received_at, request_id) < (?7, ?8))
         AND (?10 IS NULL OR (status >= 400) = ?10)
       ORDER BY received_at DESC, request_id DESC LIMIT ?9`,
    )
    .bind(
      filter.network_id,
      filter.verdict ?? null,
      filter.status ?? null,
      filter.since ?? null,
      filter.until ?? null,
      filter.transaction_id ?? null,
      after?.[0] ?? null,
      after?.[1] ?? null,
      limit,
      filter.rejected === undefined ? null : filter.rejected ? 1 : 0,
    )
    .all<InboundRequestRow>();
  return results;
}

export async function getInboundRequest(db: D1, requestId: string): Promise<InboundRequestRow | null> {
  return db.prepare("SELECT * FROM inbound_requests WHERE request_id = ?").bind(requestId).first<InboundRequestRow>();
}

export interface UnloggedRow {
  network_id: string;
  minute: string;
  unlogged: number;
}

/** Per network and minute, summed over isolates; newest minute first. */
export async function listUnlogged(
  db: D1,
  filter: { network_id?: string | undefined; since?: string | undefined; until?: string | undefined },
  limit: number,
  after: [string, string] | null,
): Promise<UnloggedRow[]> {
  const { results } = await db
    .prepare(
      `SELECT network_id, minute, sum(unlogged) AS unlogged FROM inbound_request_counts
       WHERE (?1 IS NULL OR network_id = ?1)
         AND (?2 IS NULL OR minute >= ?2) AND (?3 IS NULL OR minute < ?3)
         AND (?4 IS NULL OR (minute, network_id) < (?4, ?5))
       GROUP BY minute, network_id
       ORDER BY minute DESC, network_id DESC LIMIT ?6`,
    )
    .bind(
      filter.network_id ?? null,
      filter.since ?? null,
      filter.until ?? null,
      after?.[0] ?? null,
      after?.[1] ?? null,
      limit,
    )
    .all<UnloggedRow>();
  return results;
}

/** Retention: the log and its counts older than `before`. */
/**
 * The networks the inbound log holds records of, one index probe each (a skip scan of
 * inbound_requests_by_network): with `network_id IN (SELECT network_id FROM logged)`, a query by time
 * across networks walks that index per network, so the log needs no index by time alone (migration
 * 0022 dropped inbound_requests_by_received: one row written less per record).
 */
export const LOGGED_NETWORKS = `WITH RECURSIVE logged(network_id) AS (
  SELECT (SELECT min(network_id) FROM inbound_requests)
  UNION ALL
  SELECT (SELECT min(r.network_id) FROM inbound_requests AS r WHERE r.network_id > logged.network_id)
  FROM logged WHERE logged.network_id IS NOT NULL
)`;

export async function pruneInboundLog(db: D1, before: string): Promise<{ requests: number; counts: number }> {
  const [requests, counts] = await db.batch([
    db
      .prepare(
        `${LOGGED_NETWORKS}
         DELETE FROM inbound_requests WHERE network_id IN (SELECT network_id FROM logged) AND received_at < ?1`,
      )
      .bind(before),
    db.prepare("DELETE FROM inbound_request_counts WHERE minute < ?").bind(before),
  ]);
  return { requests: requests?.meta.changes ?? 0, counts: counts?.meta.changes ?? 0 };
}
