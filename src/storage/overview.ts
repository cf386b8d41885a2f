/**
 * The console overview's numbers, read from raw rows (issue 14 brings hourly roll-ups): postbacks by
 * verdict from the inbound request log, delivery attempts by outcome and latency from
 * delivery_attempts, the backlog from deliveries, and paused partners and silent networks.
 * Buckets are `bucket_seconds` wide, keyed by their start in Unix seconds (D1 binds a JS number as a
 * REAL, hence the casts: the division must be an integer one).
 */
import { attemptsSince } from "./attempt-marks";
import type { D1 } from "./d1";
import { LOGGED_NETWORKS } from "./requests";

/** The verdicts of a postback request the overview tells apart; everything answered ≥ 400 is `rejected`. */
export const POSTBACK_VERDICTS = ["accepted", "duplicate", "updated", "stale", "rejected"] as const;
export type PostbackVerdict = (typeof POSTBACK_VERDICTS)[number];

export const ATTEMPT_OUTCOMES = ["delivered", "retry", "failed", "dead", "gone"] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

export interface BucketCount<S extends string> {
  bucket: number;
  series: S;
  n: number;
}

/**
 * Postback requests (GET and POST postbacks, batches) received since `since`, per bucket and verdict.
 * A batch counts once, as rejected when refused whole; its accepted items are not broken out in the log.
 */
export async function postbacksByVerdict(
  db: D1,
  since: string,
  bucketSeconds: number,
): Promise<BucketCount<PostbackVerdict>[]> {
  const { results } = await db
    .prepare(
      `${LOGGED_NETWORKS}
       SELECT (CAST(strftime('%s', received_at) AS INTEGER) / CAST(?2 AS INTEGER)) * CAST(?2 AS INTEGER) AS bucket,
         CASE WHEN status >= 400 THEN 'rejected' ELSE verdict END AS series, count(*) AS n
       FROM inbound_requests
       WHERE network_id IN (SELECT network_id FROM logged) AND received_at >= ?1 AND route IN ('postback', 'batch')
         AND (status >= 400 OR verdict IN ('accepted', 'duplicate', 'updated', 'stale'))
       GROUP BY bucket, series ORDER BY bucket`,
    )
    .bind(since, bucketSeconds)
    .all<BucketCount<PostbackVerdict>>();
  return results;
}

/** Delivery attempts started since `since`, per bucket and outcome. */
export async function attemptsByOutcome(
  db: D1,
  since: string,
  bucketSeconds: number,
): Promise<BucketCount<AttemptOutcome>[]> {
  const { results } = await db
    .prepare(
      `SELECT (CAST(strftime('%s', started_at) AS INTEGER) / CAST(?2 AS INTEGER)) * CAST(?2 AS INTEGER) AS bucket,
         outcome AS series, count(*) AS n
       FROM delivery_attempts a WHERE ${attemptsSince("a", "?1")}
       GROUP BY bucket, series ORDER BY bucket`,
    )
    .bind(since, bucketSeconds)
    .all<BucketCount<AttemptOutcome>>();
  return results;
}

export interface PartnerDeliveryStats {
  partner_id: string;
  attempts: number;
  delivered: number;
  /** Nearest-rank percentiles of the attempts' latency. */
  p50_ms: number;
  p95_ms: number;
}

/** Per partner, the attempts since `since`: how many, how many delivered, and their p50 and p95 latency. */
export async function partnerDeliveryStats(db: D1, since: string): Promise<PartnerDeliveryStats[]> {
  const { results } = await db
    .prepare(
      `WITH ranked AS (
         SELECT partner_id, latency_ms, outcome,
           ROW_NUMBER() OVER (PARTITION BY partner_id ORDER BY latency_ms) AS rank,
           COUNT(*) OVER (PARTITION BY partner_id) AS total
         FROM delivery_attempts a WHERE ${attemptsSince("a", "?1")}
       )
       SELECT partner_id, max(total) AS attempts, sum(outcome = 'delivered') AS delivered,
         min(CASE WHEN rank >= (total * 50 + 99) / 100 THEN latency_ms END) AS p50_ms,
         min(CASE WHEN rank >= (total * 95 + 99) / 100 THEN latency_ms END) AS p95_ms
       FROM ranked GROUP BY partner_id ORDER BY partner_id`,
    )
    .bind(since)
    .all<PartnerDeliveryStats>();
  return results;
}

export interface Backlog {
  pending: number;
  retrying: number;
  oldest_created_at: string | null;
}

/** Deliveries waiting to be sent (pending) or sent again (retrying), and when the oldest was created. */
export async function deliveryBacklog(db: D1): Promise<Backlog> {
  const row = await db
    .prepare(
      `SELECT coalesce(sum(state = 'pending'), 0) AS pending, coalesce(sum(state = 'retrying'), 0) AS retrying,
         min(created_at) AS oldest_created_at
       FROM deliveries WHERE state IN ('pending', 'retrying')`,
    )
    .first<Backlog>();
  return row ?? { pending: 0, retrying: 0, oldest_created_at: null };
}

export interface HeldPartner {
  id: string;
  name: string;
  status: "active" | "disabled";
  disabled_reason: string | null;
  paused_reason: string | null;
  paused_at: string | null;
}

/** Partners that are disabled, or paused by their breaker. */
export async function heldPartners(db: D1): Promise<HeldPartner[]> {
  const { results } = await db
    .prepare(
      `SELECT id, name, status, disabled_reason, paused_reason, paused_at FROM partners
       WHERE status = 'disabled' OR paused_reason IS NOT NULL ORDER BY id`,
    )
    .all<HeldPartner>();
  return results;
}

export interface SilentNetwork {
  id: string;
  name: string;
  last_accepted_at: string;
}

/**
 * Active networks whose latest accepted (or updating) postback in the inbound log is older than
 * `before`: they sent before, and went quiet. A network never heard from is not listed; nor is one
 * whose last postback has left the log's retention (INBOUND_LOG_RETENTION_DAYS).
 */
export async function silentNetworks(db: D1, before: string): Promise<SilentNetwork[]> {
  const { results } = await db
    .prepare(
      `SELECT id, name, last_accepted_at FROM (
         SELECT n.id, n.name,
           (SELECT max(r.received_at) FROM inbound_requests r
             WHERE r.network_id = n.id AND r.verdict IN ('accepted', 'updated')) AS last_accepted_at
         FROM networks n WHERE n.status = 'active'
       ) WHERE last_accepted_at IS NOT NULL AND last_accepted_at < ?1 ORDER BY last_accepted_at`,
    )
    .bind(before)
    .all<SilentNetwork>();
  return results;
}
