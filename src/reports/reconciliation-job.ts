/**
 * The reconciliation job (docs/reconciliation.md): after the upload staged the report, the job's
 * Durable Object (reconciliation-object.ts) runs steps until both sides are walked. A step takes a
 * chunk: report rows in line order, compared with the hub's conversions of those transactions
 * (whenever first seen); then the hub's conversions of the period, in (first_seen_at, transaction)
 * order, looking for those the report does not name. Each step writes its differences and moves
 * the job's cursor in one transaction, guarded by where it began (storage/reconciliations.ts), so
 * a step that dies or runs twice leaves the same result.
 */
import { RECONCILIATION_CHUNK, RECONCILIATION_STEPS_PER_RUN } from "../domain/reconciliation";
import { resumeStalledJobs, type StepJobRunners, type StepOutcome } from "../lib/step-job";
import type { D1 } from "../storage/d1";
import {
  beginHubPhase,
  finishReconciliation,
  getReconciliation,
  hubConversionsByTransaction,
  hubConversionsOfPeriod,
  type ReconciliationRow,
  recordHubStep,
  recordReportStep,
  reportedAmong,
  reportRowsAfter,
  stalledReconciliations,
  totalsOf,
} from "../storage/reconciliations";
import { addToTotals, compareReportRows, missingInReport } from "./reconciliation-diff";

export interface ReconciliationStepDeps {
  db: D1;
  now?: () => number;
  /** Rows or conversions per step; RECONCILIATION_CHUNK unless a test wants smaller steps. */
  chunk?: number;
}

/** One step of the job. Safe to run again after it died anywhere, and a no-op on an ended job. */
export async function runReconciliationStep(deps: ReconciliationStepDeps, id: string): Promise<StepOutcome> {
  const iso = () => new Date((deps.now ?? Date.now)()).toISOString();
  const chunk = deps.chunk ?? RECONCILIATION_CHUNK;
  const job = await getReconciliation(deps.db, id);
  if (!job || (job.state !== "queued" && job.state !== "running")) return "ended";
  if (job.phase === "report") return reportStep(deps.db, job, chunk, iso);
  if (job.phase === "hub") return hubStep(deps.db, job, chunk, iso);
  return "ended";
}

async function reportStep(db: D1, job: ReconciliationRow, chunk: number, iso: () => string): Promise<StepOutcome> {
  const rows = await reportRowsAfter(db, job.id, job.cursor_line, chunk);
  if (rows.length === 0) {
    await beginHubPhase(db, job.id, iso());
    return "more";
  }
  const hub = await hubConversionsByTransaction(
    db,
    job.network_id,
    rows.map((row) => row.transaction_id),
  );
  const byTransaction = new Map(hub.map((conversion) => [conversion.transaction_id, conversion]));
  const totals = totalsOf(job);
  await recordReportStep(db, {
    id: job.id,
    fromLine: job.cursor_line,
    toLine: rows[rows.length - 1]?.line ?? job.cursor_line,
    rows: rows.length,
    differences: compareReportRows(rows, byTransaction, job.partner_id),
    totals: { ...totals, report: addToTotals(totals.report, rows) },
    now: iso(),
  });
  return "more";
}

async function hubStep(db: D1, job: ReconciliationRow, chunk: number, iso: () => string): Promise<StepOutcome> {
  const from =
    job.cursor_first_seen_at !== null && job.cursor_transaction_id !== null
      ? { first_seen_at: job.cursor_first_seen_at, transaction_id: job.cursor_transaction_id }
      : null;
  const conversions = await hubConversionsOfPeriod(db, job, from, chunk);
  const last = conversions[conversions.length - 1];
  if (!last) {
    await finishReconciliation(db, job.id, iso());
    return "finished";
  }
  const reported = await reportedAmong(
    db,
    job.id,
    conversions.map((conversion) => conversion.transaction_id),
  );
  const totals = totalsOf(job);
  await recordHubStep(db, {
    id: job.id,
    from,
    to: { first_seen_at: last.first_seen_at, transaction_id: last.transaction_id },
    conversions: conversions.length,
    differences: missingInReport(conversions, reported),
    totals: { ...totals, hub: addToTotals(totals.hub, conversions) },
    now: iso(),
  });
  return "more";
}

/** A run of the job's runner: a few steps back to back, then `more` if it is not done. */
export async function runReconciliationSteps(
  deps: ReconciliationStepDeps,
  id: string,
  steps = RECONCILIATION_STEPS_PER_RUN,
): Promise<StepOutcome> {
  for (let step = 0; step < steps; step++) {
    const outcome = await runReconciliationStep(deps, id);
    if (outcome !== "more") return outcome;
  }
  return "more";
}

/** The cron's safety net for reconciliations (lib/step-job.ts). */
export function resumeStalledReconciliations(db: D1, runners: StepJobRunners, nowMs: number): Promise<string[]> {
  return resumeStalledJobs(
    (before, limit) => stalledReconciliations(db, before, limit),
    runners,
    nowMs,
    "reconciliation",
  );
}
