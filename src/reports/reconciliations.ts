/**
 * Reconciliation as the API and the console ask for it (docs/reconciliation.md): an upload that
 * stages the report and starts the diff in the background, and corrections applied from its
 * differences. A correction is an event with source `correction` recorded by the conversion's own
 * Durable Object, like any postback: the lifecycle decides it, the hash chain covers it, and the
 * events consumer tells the partners of a real change. A dry run asks the object what it would
 * decide (`peek`) and changes nothing.
 */

import type { Principal } from "../domain/access";
import { ALLOWED_TRANSITIONS, conversionObjectName, type RecordInput, type RecordResult } from "../domain/conversion";
import { type ConversionStatus, type Postback, PostbackSchema } from "../domain/postback";
import {
  ABANDONED_UPLOAD_MINUTES,
  CORRECTABLE_CLASSES,
  CORRECTION_CONCURRENCY,
  type CorrectionOutcome,
  type DifferenceClass,
  MISSING_IN_REPORT_STATUSES,
  type RecordedCorrection,
  type ReportMapping,
  type ReportRow,
} from "../domain/reconciliation";
import { type FieldError, ProblemError, validationFailed } from "../errors";
import { newId } from "../lib/bytes";
import { logLine } from "../lib/log";
import { type StepJobRunners, startStepJob } from "../lib/step-job";
import type { D1 } from "../storage/d1";
import { getNetwork } from "../storage/networks";
import { getPartner } from "../storage/partners";
import {
  abandonedUploads,
  deleteUpload,
  differencesByIds,
  getReconciliation,
  insertReconciliation,
  markUploaded,
  type ReconciliationRow,
  recordCorrections,
  reportRowsOf,
  type StoredDifference,
} from "../storage/reconciliations";
import { resumeStalledReconciliations } from "./reconciliation-job";
import { type ReportDelimiter, stageReport } from "./reconciliation-upload";

export interface ReconciliationRequest {
  network_id: string;
  partner_id: string | null;
  since: string;
  until: string;
  mapping: ReportMapping;
  delimiter: ReportDelimiter;
}

export interface ReconciliationDeps {
  db: D1;
  runners: StepJobRunners;
}

/**
 * Stages the report and starts its diff; answers the reconciliation, queued. A refused report (a 4xx
 * from the upload) is deleted with what it staged before the refusal leaves.
 */
export async function requestReconciliation(
  deps: ReconciliationDeps,
  request: ReconciliationRequest,
  body: ReadableStream<Uint8Array>,
  principal: Principal,
  nowMs = Date.now(),
): Promise<ReconciliationRow> {
  const [network, partner] = await Promise.all([
    getNetwork(deps.db, request.network_id),
    request.partner_id === null ? null : getPartner(deps.db, request.partner_id),
  ]);
  const errors: FieldError[] = [];
  if (!network) errors.push({ location: "query.network_id", message: "no such network" });
  if (request.partner_id !== null && !partner)
    errors.push({ location: "query.partner_id", message: "no such partner" });
  if (errors.length > 0) {
    await body.cancel().catch(() => undefined);
    throw validationFailed(errors);
  }
  const id = newId("rec", nowMs);
  const now = new Date(nowMs).toISOString();
  await insertReconciliation(deps.db, { id, ...request, created_by: principal.key_id, now });
  let rows: number;
  try {
    rows = await stageReport(deps.db, id, request.mapping, request.delimiter, body);
  } catch (error) {
    await deleteUpload(deps.db, id).catch((cleanup: unknown) =>
      // The cron deletes it later (ABANDONED_UPLOAD_MINUTES); the caller still gets the refusal.
      logLine("error", { message: "refused upload not deleted", id, error: String(cleanup) }),
    );
    throw error;
  }
  const row = await markUploaded(deps.db, id, rows, new Date().toISOString());
  await startStepJob(deps.runners, id).catch((error: unknown) =>
    logLine("error", { message: "reconciliation not started; the cron will", id, error: String(error) }),
  );
  return row;
}

/** The cron's part: unfinished uploads deleted, stalled jobs started again. */
export async function reconciliationUpkeep(deps: ReconciliationDeps, nowMs: number): Promise<void> {
  const before = new Date(nowMs - ABANDONED_UPLOAD_MINUTES * 60_000).toISOString();
  for (const id of await abandonedUploads(deps.db, before, 10)) await deleteUpload(deps.db, id);
  await resumeStalledReconciliations(deps.db, deps.runners, nowMs);
}

// --- corrections ------------------------------------------------------------------------------

/** The conversions' objects, as corrections reach them. */
export interface ConversionObjects {
  getByName(name: string): {
    record(input: RecordInput): Promise<RecordResult>;
    peek(input: RecordInput): Promise<RecordResult>;
  };
}

export interface CorrectionResult {
  difference_id: string;
  transaction_id: string;
  class: DifferenceClass;
  outcome: CorrectionOutcome;
  /** What the conversion's object decided (or would): accepted, updated, duplicate, stale, conflict. */
  verdict: string | null;
  event_id: string | null;
  reason: string | null;
  /** The event the correction records (or would). */
  event: { status: ConversionStatus; amount?: string; currency?: string; event_time?: string } | null;
}

interface Plan {
  transaction_id: string;
  differences: StoredDifference[];
  postback: Postback | null;
  refusal: string | null;
}

function refusalOf(difference: StoredDifference): string | null {
  if ((CORRECTABLE_CLASSES as readonly string[]).includes(difference.class)) return null;
  return difference.class === "payout"
    ? "a payout is the offer's payout rule applied to the conversion, not a fact a report can set: change the offer's payouts"
    : "credit follows the conversion's click (its attribution), which a report cannot move";
}

/** The event that settles these differences of one transaction, or why none can. */
function planOf(
  transactionId: string,
  differences: StoredDifference[],
  report: ReportRow | undefined,
  nowMs: number,
): Plan {
  const plan = (postback: Postback | null, refusal: string | null): Plan => ({
    transaction_id: transactionId,
    differences,
    postback,
    refusal,
  });
  const classes = new Set(differences.map((difference) => difference.class));
  const hub = differences.find((difference) => difference.hub !== null)?.hub ?? null;
  const fields: Record<string, unknown> = { transaction_id: transactionId };
  if (classes.has("missing_in_report")) {
    if (!hub) return plan(null, "the hub's side of the conversion is missing");
    const to = MISSING_IN_REPORT_STATUSES.find((status) => ALLOWED_TRANSITIONS[hub.status].includes(status));
    if (!to) return plan(null, `the conversion is ${hub.status}, which is final: nothing to correct`);
    fields.status = to;
  } else {
    if (!report) return plan(null, "the report's row is missing");
    fields.status =
      classes.has("status") || classes.has("missing_in_hub") ? report.status : (hub?.status ?? report.status);
    if (classes.has("amount") || classes.has("missing_in_hub")) {
      if (report.amount === null && hub?.amount != null) {
        return plan(null, "the report has no amount, and a correction cannot remove the hub's");
      }
      if (report.amount !== null) {
        fields.amount = report.amount;
        fields.currency = report.currency;
      }
    }
    // A conversion the hub never heard of happened when the report says, if it says.
    if (classes.has("missing_in_hub") && report.reported_at !== null && Date.parse(report.reported_at) <= nowMs) {
      fields.event_time = report.reported_at;
    }
  }
  const parsed = PostbackSchema.safeParse(fields);
  if (!parsed.success) {
    return plan(null, parsed.error.issues.map((issue) => `${issue.path.join(".")} ${issue.message}`).join("; "));
  }
  return plan(parsed.data, null);
}

function eventOf(postback: Postback): NonNullable<CorrectionResult["event"]> {
  return {
    status: postback.status,
    ...(postback.amount !== undefined ? { amount: postback.amount } : {}),
    ...(postback.currency !== undefined ? { currency: postback.currency } : {}),
    ...(postback.event_time !== undefined ? { event_time: postback.event_time } : {}),
  };
}

/** Runs `work` over `items`, at most `limit` at a time, answers in the items' order. */
async function pooled<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < items.length; index = next++) {
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** What the object's decision means for a correction. */
function outcomeOf(result: RecordResult): {
  outcome: "applied" | "unchanged" | "refused";
  verdict: string;
  event_id: string | null;
  reason: string | null;
} {
  if (!result.ok) {
    const reason = result.errors.map((error) => `${error.location}: ${error.message}`).join("; ");
    return { outcome: "refused", verdict: "conflict", event_id: null, reason };
  }
  const { status, event_id, conversion_status } = result.answer;
  // A peek's would-be event has no id yet.
  const eventId = event_id === "(not recorded)" ? null : event_id;
  switch (status) {
    case "accepted":
    case "updated":
      return { outcome: "applied", verdict: status, event_id: eventId, reason: null };
    case "duplicate":
      return { outcome: "unchanged", verdict: status, event_id: eventId, reason: "the conversion already says this" };
    case "stale":
      return {
        outcome: "refused",
        verdict: status,
        event_id: null,
        reason: `the conversion is ${conversion_status}, which comes after the corrected status: the lifecycle never moves a conversion back`,
      };
  }
}

/**
 * Applies (or, with `dryRun`, previews) the corrections of these differences, one event per
 * transaction. A difference already corrected answers its recorded outcome and is not applied
 * again; a real application is recorded with the difference (key, time, event) and in the audit log.
 */
export async function applyCorrections(
  deps: { db: D1; conversions: ConversionObjects },
  reconciliationId: string,
  differenceIds: readonly string[],
  dryRun: boolean,
  principal: Principal,
  nowMs = Date.now(),
): Promise<CorrectionResult[]> {
  const reconciliation = await getReconciliation(deps.db, reconciliationId);
  if (!reconciliation) {
    throw new ProblemError("not_found", `No reconciliation "${reconciliationId}".`, [
      { location: "path.reconciliation_id", message: "not found" },
    ]);
  }
  if (reconciliation.state !== "finished") {
    throw new ProblemError(
      "invalid_state",
      `Reconciliation "${reconciliationId}" is ${reconciliation.state}: corrections apply to a finished diff.`,
      [{ location: "path.reconciliation_id", message: `is ${reconciliation.state}` }],
    );
  }
  const unique = [...new Set(differenceIds)];
  const found = await differencesByIds(deps.db, reconciliationId, unique);
  const byId = new Map(found.map((difference) => [difference.id, difference]));
  const unknown = differenceIds
    .map((id, index) => ({ id, index }))
    .filter(({ id }) => !byId.has(id))
    .map(({ id, index }) => ({
      location: `body.difference_ids[${index}]`,
      message: `no difference "${id}" in this reconciliation`,
    }));
  if (unknown.length > 0) throw validationFailed(unknown);

  const results = new Map<string, CorrectionResult>();
  const result = (
    difference: StoredDifference,
    fields: Omit<CorrectionResult, "difference_id" | "transaction_id" | "class">,
  ) =>
    results.set(difference.id, {
      difference_id: difference.id,
      transaction_id: difference.transaction_id,
      class: difference.class,
      ...fields,
    });

  // Differences already corrected keep their outcome; those no correction can settle are refused.
  const open: StoredDifference[] = [];
  for (const difference of found) {
    const recorded = difference.correction;
    const refusal = refusalOf(difference);
    if (recorded) {
      result(difference, {
        outcome: "already_applied",
        verdict: recorded.verdict,
        event_id: recorded.event_id,
        reason: `${recorded.outcome} at ${recorded.applied_at}`,
        event: null,
      });
    } else if (refusal) {
      result(difference, { outcome: "refused", verdict: null, event_id: null, reason: refusal, event: null });
    } else open.push(difference);
  }

  const byTransaction = new Map<string, StoredDifference[]>();
  for (const difference of open) {
    byTransaction.set(difference.transaction_id, [...(byTransaction.get(difference.transaction_id) ?? []), difference]);
  }
  const reports = new Map(
    (await reportRowsOf(deps.db, reconciliationId, [...byTransaction.keys()])).map((row) => [row.transaction_id, row]),
  );
  const plans = [...byTransaction].map(([transactionId, differences]) =>
    planOf(transactionId, differences, reports.get(transactionId), nowMs),
  );

  const receivedAt = new Date(nowMs).toISOString();
  const decided = await pooled(plans, CORRECTION_CONCURRENCY, async (plan) => {
    if (plan.postback === null) {
      return { plan, outcome: "refused" as const, verdict: null, event_id: null, reason: plan.refusal };
    }
    const object = deps.conversions.getByName(
      conversionObjectName(reconciliation.network_id, plan.transaction_id, false),
    );
    const input: RecordInput = {
      network_id: reconciliation.network_id,
      transaction_id: plan.transaction_id,
      postback: plan.postback,
      test: false,
      received_at: receivedAt,
      source: "correction",
    };
    // The object's own decision first: only what it would apply is recorded (a stale correction would
    // be kept in the history for nothing).
    const preview = outcomeOf(await object.peek(input));
    if (dryRun || preview.outcome !== "applied") return { plan, ...preview };
    return { plan, ...outcomeOf(await object.record(input)) };
  });

  const kept: { difference_id: string; correction: RecordedCorrection }[] = [];
  for (const { plan, outcome, verdict, event_id: eventId, reason } of decided) {
    for (const difference of plan.differences) {
      result(difference, {
        outcome,
        verdict,
        event_id: eventId,
        reason,
        event: plan.postback ? eventOf(plan.postback) : null,
      });
      if (!dryRun && outcome !== "refused") {
        kept.push({
          difference_id: difference.id,
          correction: { outcome, verdict, event_id: eventId, reason, applied_at: receivedAt, key_id: principal.key_id },
        });
      }
    }
  }
  await recordCorrections(deps.db, reconciliationId, kept);
  return unique.flatMap((id) => {
    const answer = results.get(id);
    return answer ? [answer] : [];
  });
}
