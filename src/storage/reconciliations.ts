/**
 * SQL for reconciliations (migration 0014, docs/reconciliation.md): the reconciliation, the report's
 * staged rows, the differences the job found and the corrections applied from them.
 *
 * A step of the job writes its chunk's differences and moves the job's cursor in one batch (one
 * transaction). The cursor's move is guarded by where the step began, and differences are keyed by
 * class and transaction, so a step that runs twice (two runners, a retry after a crash) writes the
 * same rows and adds its chunk to the totals once.
 */
import { CONVERSION_STATUSES } from "../domain/postback";
import {
  type Difference,
  type DifferenceClass,
  type HubConversion,
  type ReconciliationPhase,
  type ReconciliationState,
  type RecordedCorrection,
  RecordedCorrectionSchema,
  type ReportMapping,
  ReportMappingSchema,
  type ReportRow,
  type Totals,
} from "../domain/reconciliation";
import type { D1 } from "./d1";

export interface ReconciliationRow {
  id: string;
  network_id: string;
  partner_id: string | null;
  since: string;
  until: string;
  mapping: string;
  state: ReconciliationState;
  phase: ReconciliationPhase;
  report_rows: number;
  report_rows_done: number;
  cursor_line: number;
  cursor_first_seen_at: string | null;
  cursor_transaction_id: string | null;
  hub_conversions_done: number;
  totals: string;
  difference_counts: string | null;
  error: string | null;
  created_by: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

export function mappingOf(row: ReconciliationRow): ReportMapping {
  return ReportMappingSchema.parse(JSON.parse(row.mapping));
}

export function totalsOf(row: ReconciliationRow): Totals {
  const parsed = JSON.parse(row.totals) as Partial<Totals>;
  const empty = { conversions: 0, amount: {}, payout: {} };
  return { report: parsed.report ?? empty, hub: parsed.hub ?? empty };
}

export async function insertReconciliation(
  db: D1,
  row: {
    id: string;
    network_id: string;
    partner_id: string | null;
    since: string;
    until: string;
    mapping: ReportMapping;
    created_by: string;
    now: string;
  },
): Promise<void> {
  await db
    .prepare(
      `INSERT INTO reconciliations (id, network_id, partner_id, since, until, mapping, state, created_by, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?, ?, ?)`,
    )
    .bind(
      row.id,
      row.network_id,
      row.partner_id,
      row.since,
      row.until,
      JSON.stringify(row.mapping),
      row.created_by,
      row.now,
      row.now,
    )
    .run();
}

/**
 * One statement staging up to a few hundred rows, bound as one JSON array (D1 binds at most 100
 * values). A transaction staged before is skipped, not staged twice: the upload finds it with
 * `stagedLines` and refuses the report.
 */
export function stageRowsStatement(db: D1, reconciliationId: string, rows: readonly ReportRow[]): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO reconciliation_rows
         (reconciliation_id, line, transaction_id, status, amount, currency, payout, payout_currency, reported_at)
       SELECT ?1, r.value ->> '$.line', r.value ->> '$.transaction_id', r.value ->> '$.status', r.value ->> '$.amount',
              r.value ->> '$.currency', r.value ->> '$.payout', r.value ->> '$.payout_currency', r.value ->> '$.reported_at'
       FROM json_each(?2) AS r WHERE true
       ON CONFLICT (reconciliation_id, transaction_id) DO NOTHING`,
    )
    .bind(reconciliationId, JSON.stringify(rows));
}

/** The lines these transactions were staged from. */
export async function stagedLines(
  db: D1,
  reconciliationId: string,
  transactionIds: readonly string[],
): Promise<Map<string, number>> {
  const { results } = await db
    .prepare(
      `SELECT transaction_id, line FROM reconciliation_rows
       WHERE reconciliation_id = ? AND transaction_id IN (SELECT value FROM json_each(?))`,
    )
    .bind(reconciliationId, JSON.stringify(transactionIds))
    .all<{ transaction_id: string; line: number }>();
  return new Map(results.map((row) => [row.transaction_id, row.line]));
}

/** The upload is complete: the job may run. */
export async function markUploaded(db: D1, id: string, rows: number, now: string): Promise<ReconciliationRow> {
  const row = await db
    .prepare(
      `UPDATE reconciliations SET state = 'queued', report_rows = ?, updated_at = ?
       WHERE id = ? AND state = 'uploading' RETURNING *`,
    )
    .bind(rows, now, id)
    .first<ReconciliationRow>();
  if (!row) throw new Error(`reconciliation ${id} is not uploading`);
  return row;
}

const DELETE_ROWS_PER_STATEMENT = 5000;

/**
 * Removes a reconciliation that never finished uploading, with what it staged, a few thousand rows
 * a statement (a refused report leaves nothing behind).
 */
export async function deleteUpload(db: D1, id: string): Promise<void> {
  for (;;) {
    const { meta } = await db
      .prepare(
        `DELETE FROM reconciliation_rows WHERE reconciliation_id = ?1 AND line IN
           (SELECT line FROM reconciliation_rows WHERE reconciliation_id = ?1 LIMIT ?2)`,
      )
      .bind(id, DELETE_ROWS_PER_STATEMENT)
      .run();
    if (meta.changes < DELETE_ROWS_PER_STATEMENT) break;
  }
  await db.batch([
    db.prepare("DELETE FROM reconciliation_differences WHERE reconciliation_id = ?").bind(id),
    db.prepare("DELETE FROM reconciliations WHERE id = ? AND state = 'uploading'").bind(id),
  ]);
}

/** Uploads whose Worker died before finishing them: the cron deletes them. */
export async function abandonedUploads(db: D1, before: string, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare("SELECT id FROM reconciliations WHERE state = 'uploading' AND updated_at < ? ORDER BY updated_at LIMIT ?")
    .bind(before, limit)
    .all<{ id: string }>();
  return results.map((row) => row.id);
}

/** Jobs that should be moving but have not for a while: the cron starts their runners again. */
export async function stalledReconciliations(db: D1, before: string, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare(
      `SELECT id FROM reconciliations WHERE state IN ('queued', 'running') AND updated_at < ?
       ORDER BY updated_at LIMIT ?`,
    )
    .bind(before, limit)
    .all<{ id: string }>();
  return results.map((row) => row.id);
}

export async function getReconciliation(db: D1, id: string): Promise<ReconciliationRow | null> {
  return db.prepare("SELECT * FROM reconciliations WHERE id = ?").bind(id).first<ReconciliationRow>();
}

/** Newest first; `after` is the sort key of the last row of the previous page. */
export async function listReconciliations(
  db: D1,
  networkId: string | undefined,
  limit: number,
  after: [string, string] | null,
): Promise<ReconciliationRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM reconciliations
       WHERE state != 'uploading' AND (?1 IS NULL OR network_id = ?1) AND (?2 IS NULL OR (created_at, id) < (?2, ?3))
       ORDER BY created_at DESC, id DESC LIMIT ?4`,
    )
    .bind(networkId ?? null, after?.[0] ?? null, after?.[1] ?? null, limit)
    .all<ReconciliationRow>();
  return results;
}

interface StagedRow {
  line: number;
  transaction_id: string;
  status: string;
  amount: string | null;
  currency: string | null;
  payout: string | null;
  payout_currency: string | null;
  reported_at: string | null;
}

function reportRowOf(row: StagedRow): ReportRow {
  const status = CONVERSION_STATUSES.find((known) => known === row.status);
  if (!status) throw new Error(`staged row ${row.line} has an unknown status ${row.status}`);
  return { ...row, status };
}

/** The report's rows after `line`, in the report's order. */
export async function reportRowsAfter(db: D1, id: string, line: number, limit: number): Promise<ReportRow[]> {
  const { results } = await db
    .prepare(
      `SELECT line, transaction_id, status, amount, currency, payout, payout_currency, reported_at
       FROM reconciliation_rows WHERE reconciliation_id = ? AND line > ? ORDER BY line LIMIT ?`,
    )
    .bind(id, line, limit)
    .all<StagedRow>();
  return results.map(reportRowOf);
}

/** A staged row by its transaction (what a correction records). */
export async function reportRowsOf(db: D1, id: string, transactionIds: readonly string[]): Promise<ReportRow[]> {
  const { results } = await db
    .prepare(
      `SELECT line, transaction_id, status, amount, currency, payout, payout_currency, reported_at
       FROM reconciliation_rows
       WHERE reconciliation_id = ? AND transaction_id IN (SELECT value FROM json_each(?))`,
    )
    .bind(id, JSON.stringify(transactionIds))
    .all<StagedRow>();
  return results.map(reportRowOf);
}

interface HubRow extends Omit<HubConversion, "status"> {
  status: string;
}

function hubConversionOf(row: HubRow): HubConversion {
  const status = CONVERSION_STATUSES.find((known) => known === row.status);
  if (!status) throw new Error(`conversion ${row.transaction_id} has an unknown status ${row.status}`);
  return { ...row, status };
}

const HUB_COLUMNS = `transaction_id, status, amount, currency, payout, payout_currency, attributed_partner_id, first_seen_at`;

/** The network's live conversions with these transaction ids, whenever first seen. */
export async function hubConversionsByTransaction(
  db: D1,
  networkId: string,
  transactionIds: readonly string[],
): Promise<HubConversion[]> {
  const { results } = await db
    .prepare(
      `SELECT ${HUB_COLUMNS} FROM conversions
       WHERE network_id = ? AND test = 0 AND transaction_id IN (SELECT value FROM json_each(?))`,
    )
    .bind(networkId, JSON.stringify(transactionIds))
    .all<HubRow>();
  return results.map(hubConversionOf);
}

/**
 * The reconciliation's side of the hub, a page at a time: the network's live conversions first seen
 * in the period (credited to the partner, for a partner's report), in (first_seen_at, transaction_id) order.
 */
export async function hubConversionsOfPeriod(
  db: D1,
  reconciliation: Pick<ReconciliationRow, "network_id" | "partner_id" | "since" | "until">,
  after: { first_seen_at: string; transaction_id: string } | null,
  limit: number,
): Promise<HubConversion[]> {
  const { results } = await db
    .prepare(
      // By first_seen_at across networks (conversions_by_first_seen, from the page's cursor on):
      // one walk of the period's conversions in all, where an index by network cost a row written
      // for every conversion (migration 0022 dropped conversions_by_network).
      `SELECT ${HUB_COLUMNS} FROM conversions INDEXED BY conversions_by_first_seen
       WHERE network_id = ?1 AND test = 0 AND first_seen_at >= max(?2, coalesce(?5, ?2)) AND first_seen_at < ?3
         AND (?4 IS NULL OR attributed_partner_id = ?4)
         AND (?5 IS NULL OR (first_seen_at, transaction_id) > (?5, ?6))
       ORDER BY first_seen_at, transaction_id LIMIT ?7`,
    )
    .bind(
      reconciliation.network_id,
      reconciliation.since,
      reconciliation.until,
      reconciliation.partner_id,
      after?.first_seen_at ?? null,
      after?.transaction_id ?? null,
      limit,
    )
    .all<HubRow>();
  return results.map(hubConversionOf);
}

/** Which of these transactions the report names. */
export async function reportedAmong(db: D1, id: string, transactionIds: readonly string[]): Promise<Set<string>> {
  const { results } = await db
    .prepare(
      `SELECT transaction_id FROM reconciliation_rows
       WHERE reconciliation_id = ? AND transaction_id IN (SELECT value FROM json_each(?))`,
    )
    .bind(id, JSON.stringify(transactionIds))
    .all<{ transaction_id: string }>();
  return new Set(results.map((row) => row.transaction_id));
}

/**
 * A step's differences, written only while the job is where the step began (`guard`, over the
 * reconciliation's row r): a step that lost the race to another runner read D1 before that runner
 * moved on, and its differences may be out of date, so it writes none.
 */
function insertDifferencesStatement(
  db: D1,
  id: string,
  differences: readonly Difference[],
  guard: string,
  guardValues: readonly (string | number | null)[],
): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO reconciliation_differences (reconciliation_id, id, transaction_id, class, line, hub, report)
       SELECT ?1, d.value ->> '$.id', d.value ->> '$.transaction_id', d.value ->> '$.class', d.value ->> '$.line',
              d.value -> '$.hub', d.value -> '$.report'
       FROM json_each(?2) AS d
       WHERE EXISTS (SELECT 1 FROM reconciliations AS r WHERE r.id = ?1 AND ${guard})
       ON CONFLICT (reconciliation_id, id) DO NOTHING`,
    )
    .bind(id, JSON.stringify(differences), ...guardValues);
}

/**
 * One step over the report's rows: from `fromLine` to `toLine`, its differences and the totals with
 * its rows added. Applied only if the job is still where the step began.
 */
export async function recordReportStep(
  db: D1,
  step: {
    id: string;
    fromLine: number;
    toLine: number;
    rows: number;
    differences: readonly Difference[];
    totals: Totals;
    now: string;
  },
): Promise<void> {
  await db.batch([
    // First, while the guard still holds: the update below moves the cursor it checks.
    insertDifferencesStatement(
      db,
      step.id,
      step.differences,
      "r.phase = 'report' AND r.cursor_line = ?3 AND r.state IN ('queued', 'running')",
      [step.fromLine],
    ),
    db
      .prepare(
        `UPDATE reconciliations SET state = 'running', cursor_line = ?, report_rows_done = report_rows_done + ?,
           totals = ?, updated_at = ?
         WHERE id = ? AND phase = 'report' AND cursor_line = ? AND state IN ('queued', 'running')`,
      )
      .bind(step.toLine, step.rows, JSON.stringify(step.totals), step.now, step.id, step.fromLine),
  ]);
}

/** The report is done: the job walks the hub's conversions of the period next. */
export async function beginHubPhase(db: D1, id: string, now: string): Promise<void> {
  await db
    .prepare(
      `UPDATE reconciliations SET phase = 'hub', state = 'running', updated_at = ?
       WHERE id = ? AND phase = 'report' AND state IN ('queued', 'running')`,
    )
    .bind(now, id)
    .run();
}

/** One step over the hub's conversions of the period, like `recordReportStep`. */
export async function recordHubStep(
  db: D1,
  step: {
    id: string;
    from: { first_seen_at: string; transaction_id: string } | null;
    to: { first_seen_at: string; transaction_id: string };
    conversions: number;
    differences: readonly Difference[];
    totals: Totals;
    now: string;
  },
): Promise<void> {
  await db.batch([
    insertDifferencesStatement(
      db,
      step.id,
      step.differences,
      "r.phase = 'hub' AND r.state = 'running' AND r.cursor_first_seen_at IS ?3 AND r.cursor_transaction_id IS ?4",
      [step.from?.first_seen_at ?? null, step.from?.transaction_id ?? null],
    ),
    db
      .prepare(
        `UPDATE reconciliations SET cursor_first_seen_at = ?, cursor_transaction_id = ?,
           hub_conversions_done = hub_conversions_done + ?, totals = ?, updated_at = ?
         WHERE id = ? AND phase = 'hub' AND state = 'running'
           AND cursor_first_seen_at IS ? AND cursor_transaction_id IS ?`,
      )
      .bind(
        step.to.first_seen_at,
        step.to.transaction_id,
        step.conversions,
        JSON.stringify(step.totals),
        step.now,
        step.id,
        step.from?.first_seen_at ?? null,
        step.from?.transaction_id ?? null,
      ),
  ]);
}

/** Both sides walked: the differences are counted by class and the reconciliation is finished. */
export async function finishReconciliation(db: D1, id: string, now: string): Promise<void> {
  await db
    .prepare(
      `UPDATE reconciliations SET state = 'finished', phase = 'done', updated_at = ?1, finished_at = ?1, error = NULL,
         difference_counts = (SELECT json_group_object(class, n) FROM
           (SELECT class, count(*) AS n FROM reconciliation_differences WHERE reconciliation_id = ?2 GROUP BY class))
       WHERE id = ?2 AND phase = 'hub' AND state = 'running'`,
    )
    .bind(now, id)
    .run();
}

/** A step failed: recorded for the reader; `failed` ends the job. */
export async function recordReconciliationError(
  db: D1,
  id: string,
  error: string,
  failed: boolean,
  now: string,
): Promise<void> {
  await db
    .prepare(
      `UPDATE reconciliations SET error = ?, updated_at = ?,
         state = CASE WHEN ? THEN 'failed' ELSE state END
       WHERE id = ? AND state IN ('queued', 'running')`,
    )
    .bind(error, now, failed ? 1 : 0, id)
    .run();
}

interface DifferenceRow {
  id: string;
  transaction_id: string;
  class: DifferenceClass;
  line: number | null;
  hub: string | null;
  report: string | null;
  correction: string | null;
}

export interface StoredDifference extends Difference {
  correction: RecordedCorrection | null;
}

function differenceOf(row: DifferenceRow): StoredDifference {
  return {
    id: row.id,
    transaction_id: row.transaction_id,
    class: row.class,
    line: row.line,
    hub: row.hub === null ? null : (JSON.parse(row.hub) as HubConversion),
    report: row.report === null ? null : (JSON.parse(row.report) as ReportRow),
    correction: row.correction === null ? null : RecordedCorrectionSchema.parse(JSON.parse(row.correction)),
  };
}

/** A page of differences in id order (class, then transaction), optionally of one class. */
export async function listDifferences(
  db: D1,
  id: string,
  differenceClass: DifferenceClass | undefined,
  after: string | null,
  limit: number,
): Promise<StoredDifference[]> {
  const { results } = await db
    .prepare(
      `SELECT id, transaction_id, class, line, hub, report, correction FROM reconciliation_differences
       WHERE reconciliation_id = ?1 AND (?2 IS NULL OR class = ?2) AND (?3 IS NULL OR id > ?3)
       ORDER BY id LIMIT ?4`,
    )
    .bind(id, differenceClass ?? null, after, limit)
    .all<DifferenceRow>();
  return results.map(differenceOf);
}

/** These differences of the reconciliation (those that exist). */
export async function differencesByIds(db: D1, id: string, ids: readonly string[]): Promise<StoredDifference[]> {
  const { results } = await db
    .prepare(
      `SELECT id, transaction_id, class, line, hub, report, correction FROM reconciliation_differences
       WHERE reconciliation_id = ? AND id IN (SELECT value FROM json_each(?))`,
    )
    .bind(id, JSON.stringify(ids))
    .all<DifferenceRow>();
  return results.map(differenceOf);
}

/** What applying corrections did, kept with each difference; one that holds an outcome keeps it. */
export async function recordCorrections(
  db: D1,
  id: string,
  corrections: readonly { difference_id: string; correction: RecordedCorrection }[],
): Promise<void> {
  if (corrections.length === 0) return;
  await db
    .prepare(
      `UPDATE reconciliation_differences SET correction = c.value -> '$.correction'
       FROM json_each(?2) AS c
       WHERE reconciliation_differences.reconciliation_id = ?1
         AND reconciliation_differences.id = c.value ->> '$.difference_id'
         AND reconciliation_differences.correction IS NULL`,
    )
    .bind(id, JSON.stringify(corrections))
    .run();
}
