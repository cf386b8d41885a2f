/**
 * Reconciliation (docs/reconciliation.md): the other side's report of a network's conversions in a
 * period, read from CSV with a column and status mapping, diffed against the hub's record, and the
 * corrections an operator may apply from the differences. The shapes here are shared by the upload,
 * the background job (reports/reconciliation-job.ts), storage and the routes.
 */
import { z } from "zod";
import { CONVERSION_STATUSES, type ConversionStatus } from "./postback";

/** The report's fields the hub reads, each from a column the caller names (its default is the field's name). */
export const REPORT_FIELDS = [
  "transaction_id",
  "status",
  "amount",
  "currency",
  "payout",
  "payout_currency",
  "date",
] as const;
export type ReportField = (typeof REPORT_FIELDS)[number];
/** Columns a report must have; the others are read when present. */
export const REQUIRED_REPORT_FIELDS = [
  "transaction_id",
  "status",
  "amount",
  "currency",
] as const satisfies readonly ReportField[];

/**
 * The kinds of difference. `amount` covers a different amount or currency; `credit`: a partner's
 * report names a conversion the hub credits to someone else (or no one).
 */
export const DIFFERENCE_CLASSES = [
  "missing_in_hub",
  "missing_in_report",
  "status",
  "amount",
  "payout",
  "credit",
] as const;
export type DifferenceClass = (typeof DIFFERENCE_CLASSES)[number];

/**
 * The classes a correction can settle, by recording what the report says through the conversion's
 * Durable Object. A payout is the offer's rule applied to the conversion, and credit is its click's:
 * neither is a fact about the conversion the operator can set from a report (change the offer).
 */
export const CORRECTABLE_CLASSES = [
  "missing_in_hub",
  "missing_in_report",
  "status",
  "amount",
] as const satisfies readonly DifferenceClass[];

/** What a conversion missing from the report is moved to, the first of these its status allows. */
export const MISSING_IN_REPORT_STATUSES = ["declined", "reversed"] as const satisfies readonly ConversionStatus[];

export const RECONCILIATION_STATES = ["uploading", "queued", "running", "finished", "failed"] as const;
export type ReconciliationState = (typeof RECONCILIATION_STATES)[number];
export const RECONCILIATION_PHASES = ["report", "hub", "done"] as const;
export type ReconciliationPhase = (typeof RECONCILIATION_PHASES)[number];

/** Limits of one upload: beyond them the report is refused (413), whole. */
export const MAX_REPORT_ROWS = 200_000;
export const MAX_REPORT_BYTES = 64 * 1024 * 1024;
/** A cell longer than this is no transaction id, status or amount: the report is refused. */
export const MAX_REPORT_CELL_CHARS = 4096;
/** Rows checked at upload before the first error stops it; the answer lists at most this many. */
export const MAX_REPORT_ERRORS = 20;
/** Rows per staging statement (one bound JSON array), statements per D1 batch. */
export const STAGE_ROWS_PER_STATEMENT = 500;
export const STAGE_STATEMENTS_PER_BATCH = 8;
/** Report rows or hub conversions compared per step; steps per alarm of the job's runner. */
export const RECONCILIATION_CHUNK = 1000;
export const RECONCILIATION_STEPS_PER_RUN = 10;
/** Corrections one request may apply (or dry-run). */
export const MAX_CORRECTIONS_PER_REQUEST = 500;
/** Conversions' Durable Objects called at once while applying corrections. */
export const CORRECTION_CONCURRENCY = 8;
/** An upload that never finished (its Worker died) is removed by the cron after this long. */
export const ABANDONED_UPLOAD_MINUTES = 60;

/** How the report is read: the column of each field, and the report's words for each status. */
export const ReportMappingSchema = z.object({
  columns: z.partialRecord(z.enum(REPORT_FIELDS), z.string()),
  /** Lowercased report words → the hub's status; the hub's own names always count too. */
  statuses: z.record(z.string(), z.enum(CONVERSION_STATUSES)),
});
export type ReportMapping = z.infer<typeof ReportMappingSchema>;

/** One report row as staged: validated, identifiers normalized like a postback's, money exact. */
export interface ReportRow {
  line: number;
  transaction_id: string;
  status: ConversionStatus;
  amount: string | null;
  currency: string | null;
  payout: string | null;
  payout_currency: string | null;
  reported_at: string | null;
}

/** The hub's side of one conversion, as the job compares it. */
export interface HubConversion {
  transaction_id: string;
  status: ConversionStatus;
  amount: string | null;
  currency: string | null;
  payout: string | null;
  payout_currency: string | null;
  attributed_partner_id: string | null;
  first_seen_at: string;
}

/** One difference, as stored and answered. */
export interface Difference {
  id: string;
  transaction_id: string;
  class: DifferenceClass;
  /** The report's line, for a difference about a row of the report. */
  line: number | null;
  hub: HubConversion | null;
  report: ReportRow | null;
}

/** A difference's id: its class and transaction, so that a step that runs twice writes the same rows. */
export function differenceId(differenceClass: DifferenceClass, transactionId: string): string {
  return `${differenceClass}:${transactionId}`;
}

/** Counts and exact sums, per currency, on one side. */
export interface SideTotals {
  conversions: number;
  /** Currency → exact decimal sum. */
  amount: Record<string, string>;
  payout: Record<string, string>;
}

export interface Totals {
  report: SideTotals;
  hub: SideTotals;
}

export function emptyTotals(): Totals {
  return {
    report: { conversions: 0, amount: {}, payout: {} },
    hub: { conversions: 0, amount: {}, payout: {} },
  };
}

/** What applying a correction did (or, in a dry run, would do) to its conversion. */
export const CORRECTION_OUTCOMES = [
  /** Recorded: the conversion's object accepted or updated it; partners hear of it like any change. */
  "applied",
  /** Nothing to record: the conversion already says what the report says. */
  "unchanged",
  /** Refused by the lifecycle (a transition it forbids), or by nature (payout, credit). */
  "refused",
  /** Applied by an earlier request; its outcome is kept. */
  "already_applied",
] as const;
export type CorrectionOutcome = (typeof CORRECTION_OUTCOMES)[number];

/** A correction as recorded with its difference, once applied (a refusal is answered, never kept: it may be tried again). */
export const RecordedCorrectionSchema = z.object({
  outcome: z.enum(["applied", "unchanged"]),
  /** The verdict of the conversion's object: accepted, updated, duplicate, stale or conflict. */
  verdict: z.string().nullable(),
  event_id: z.string().nullable(),
  reason: z.string().nullable(),
  applied_at: z.string(),
  /** The API key that applied it. */
  key_id: z.string(),
});
export type RecordedCorrection = z.infer<typeof RecordedCorrectionSchema>;
