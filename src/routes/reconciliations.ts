/**
 * Admin API for reconciliation (docs/reconciliation.md): upload the other side's CSV report for a
 * network and a period, read the diff as the background job finds it, and apply corrections.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { NETWORK_ID_PATTERN } from "../domain/network";
import { CONVERSION_STATUSES, type ConversionStatus } from "../domain/postback";
import {
  CORRECTABLE_CLASSES,
  CORRECTION_OUTCOMES,
  DIFFERENCE_CLASSES,
  type DifferenceClass,
  MAX_CORRECTIONS_PER_REQUEST,
  MAX_REPORT_BYTES,
  MAX_REPORT_ROWS,
  RECONCILIATION_PHASES,
  RECONCILIATION_STATES,
  REPORT_FIELDS,
  REQUIRED_REPORT_FIELDS,
  type ReportField,
  type SideTotals,
} from "../domain/reconciliation";
import { ProblemError, validationFailed } from "../errors";
import { REPORT_DELIMITER_NAMES, REPORT_DELIMITERS, reportMapping } from "../reports/reconciliation-upload";
import { applyCorrections, requestReconciliation } from "../reports/reconciliations";
import {
  getReconciliation,
  listDifferences,
  listReconciliations,
  mappingOf,
  type ReconciliationRow,
  type StoredDifference,
  totalsOf,
} from "../storage/reconciliations";
import { principalOf } from "./admin-auth";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  TimestampSchema,
} from "./common";

const tags = ["Reconciliation"];

type ColumnParameter = `${ReportField}_column`;
type StatusParameter = `${ConversionStatus}_values`;

const ColumnSchema = z.string().min(1).max(128);
const COLUMN_PARAMETERS = Object.fromEntries(
  REPORT_FIELDS.map((field) => [
    `${field}_column`,
    ColumnSchema.optional().openapi({
      description: `The report's column for ${field} (header names match case-insensitively); default \`${field}\`.${(REQUIRED_REPORT_FIELDS as readonly string[]).includes(field) ? " Required in the report." : " Read when present."}`,
    }),
  ]),
) as Record<ColumnParameter, z.ZodOptional<typeof ColumnSchema>>;

const ValuesSchema = z.string().max(1024);
const STATUS_PARAMETERS = Object.fromEntries(
  CONVERSION_STATUSES.map((status) => [
    `${status}_values`,
    ValuesSchema.optional().openapi({
      description: `Comma-separated words the report uses for ${status} (case-insensitive), besides \`${status}\` itself.`,
      example: status === "declined" ? "rejected,cancelled" : undefined,
    }),
  ]),
) as Record<StatusParameter, z.ZodOptional<typeof ValuesSchema>>;

const UploadQuery = z
  .object({
    network_id: z
      .string()
      .regex(NETWORK_ID_PATTERN, { error: "must be a network id" })
      .openapi({ description: "The network whose conversions the report is of.", example: "acme" }),
    partner_id: z.string().min(1).max(64).optional().openapi({
      description:
        "A partner's report: only conversions credited to this partner are the hub's side, and payouts are compared.",
    }),
    since: TimestampSchema.openapi({
      description: "The period's start, included, on when the hub first saw each conversion (RFC 3339).",
      example: "2026-11-01T00:00:00Z",
    }),
    until: TimestampSchema.openapi({
      description: "The period's end, excluded (RFC 3339).",
      example: "2026-12-01T00:00:00Z",
    }),
    delimiter: z
      .enum(REPORT_DELIMITER_NAMES, { error: `must be ${REPORT_DELIMITER_NAMES.join(", ")}` })
      .default("comma")
      .openapi({ description: "The report's delimiter." }),
    ...COLUMN_PARAMETERS,
    ...STATUS_PARAMETERS,
  })
  .superRefine((query, ctx) => {
    if (query.until <= query.since) ctx.addIssue({ code: "custom", path: ["until"], message: "must be after since" });
  });

const MoneySchema = z.object({ currency: z.string(), amount: z.string().openapi({ example: "1234.50" }) });

const SideSchema = z.object({
  conversions: z.number().int(),
  amount: z.array(MoneySchema).openapi({ description: "Exact sums per currency, never summed across currencies." }),
  payout: z.array(MoneySchema),
});

function sideOf(side: SideTotals): z.infer<typeof SideSchema> {
  const money = (sums: Record<string, string>) =>
    Object.entries(sums)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([currency, amount]) => ({ currency, amount }));
  return { conversions: side.conversions, amount: money(side.amount), payout: money(side.payout) };
}

const ReconciliationSchema = z
  .object({
    id: z.string().openapi({ example: "rec_01jdx3yq2w8k4m6n9p0r2s4t6v" }),
    network_id: z.string(),
    partner_id: z.string().nullable(),
    since: z.string(),
    until: z.string(),
    state: z.enum(RECONCILIATION_STATES).openapi({
      description: "queued, running (being diffed), finished, or failed (`error` says why).",
    }),
    progress: z.object({
      phase: z.enum(RECONCILIATION_PHASES).openapi({
        description: "report: comparing the report's rows; hub: looking for conversions the report lacks; done.",
      }),
      report_rows: z.number().int(),
      report_rows_done: z.number().int(),
      hub_conversions_done: z.number().int(),
    }),
    totals: z.object({
      report: SideSchema.openapi({ description: "Every row of the report." }),
      hub: SideSchema.openapi({ description: "The hub's conversions of the period (so far, while running)." }),
    }),
    differences: z
      .record(z.enum(DIFFERENCE_CLASSES), z.number().int())
      .nullable()
      .openapi({ description: "Differences by class, once finished; read them with listReconciliationDifferences." }),
    mapping: z.object({
      columns: z.record(z.string(), z.string()),
      statuses: z.record(z.string(), z.enum(CONVERSION_STATUSES)),
    }),
    error: z.string().nullable(),
    created_by: z.string().openapi({ description: "The API key that uploaded it." }),
    created_at: z.string(),
    updated_at: z.string(),
    finished_at: z.string().nullable(),
  })
  .openapi("Reconciliation");

function toReconciliation(row: ReconciliationRow): z.infer<typeof ReconciliationSchema> {
  const totals = totalsOf(row);
  const counts = row.difference_counts === null ? null : (JSON.parse(row.difference_counts) as Record<string, number>);
  return {
    id: row.id,
    network_id: row.network_id,
    partner_id: row.partner_id,
    since: row.since,
    until: row.until,
    state: row.state === "uploading" ? "queued" : row.state,
    progress: {
      phase: row.phase,
      report_rows: row.report_rows,
      report_rows_done: row.report_rows_done,
      hub_conversions_done: row.hub_conversions_done,
    },
    totals: { report: sideOf(totals.report), hub: sideOf(totals.hub) },
    differences:
      counts === null
        ? null
        : (Object.fromEntries(DIFFERENCE_CLASSES.map((name) => [name, counts[name] ?? 0])) as Record<
            DifferenceClass,
            number
          >),
    mapping: mappingOf(row),
    error: row.error,
    created_by: row.created_by,
    created_at: row.created_at,
    updated_at: row.updated_at,
    finished_at: row.finished_at,
  };
}

const SideOfConversion = z.object({
  status: z.enum(CONVERSION_STATUSES),
  amount: z.string().nullable(),
  currency: z.string().nullable(),
  payout: z.string().nullable(),
  payout_currency: z.string().nullable(),
});

const DifferenceSchema = z
  .object({
    id: z.string().openapi({ example: "amount:ord_8812" }),
    transaction_id: z.string(),
    class: z.enum(DIFFERENCE_CLASSES).openapi({
      description:
        "missing_in_hub, missing_in_report, status, amount (amount or currency), payout (a partner's report), credit (a partner's report naming a conversion the hub credits to someone else).",
    }),
    correctable: z
      .boolean()
      .openapi({ description: `Whether a correction can settle it (${CORRECTABLE_CLASSES.join(", ")}).` }),
    line: z.number().int().nullable().openapi({ description: "The report's line, for a row of the report." }),
    hub: SideOfConversion.extend({
      attributed_partner_id: z.string().nullable(),
      first_seen_at: z.string(),
    })
      .nullable()
      .openapi({ description: "The hub's conversion when the job compared it." }),
    report: SideOfConversion.extend({ reported_at: z.string().nullable() }).nullable(),
    correction: z
      .object({
        outcome: z.enum(["applied", "unchanged"]),
        verdict: z.string().nullable(),
        event_id: z.string().nullable(),
        applied_at: z.string(),
        key_id: z.string(),
      })
      .nullable()
      .openapi({ description: "What applying its correction did; null while not applied." }),
  })
  .openapi("ReconciliationDifference");

function toDifference(difference: StoredDifference): z.infer<typeof DifferenceSchema> {
  const correction = difference.correction;
  return {
    id: difference.id,
    transaction_id: difference.transaction_id,
    class: difference.class,
    correctable: (CORRECTABLE_CLASSES as readonly string[]).includes(difference.class),
    line: difference.line,
    hub: difference.hub && {
      status: difference.hub.status,
      amount: difference.hub.amount,
      currency: difference.hub.currency,
      payout: difference.hub.payout,
      payout_currency: difference.hub.payout_currency,
      attributed_partner_id: difference.hub.attributed_partner_id,
      first_seen_at: difference.hub.first_seen_at,
    },
    report: difference.report && {
      status: difference.report.status,
      amount: difference.report.amount,
      currency: difference.report.currency,
      payout: difference.report.payout,
      payout_currency: difference.report.payout_currency,
      reported_at: difference.report.reported_at,
    },
    correction: correction && {
      outcome: correction.outcome,
      verdict: correction.verdict,
      event_id: correction.event_id,
      applied_at: correction.applied_at,
      key_id: correction.key_id,
    },
  };
}

const Params = z.object({
  reconciliation_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "reconciliation_id", in: "path" }, example: "rec_01jdx3yq2w8k4m6n9p0r2s4t6v" }),
});

const ListQuery = PaginationQuerySchema.extend({
  network_id: z.string().max(64).optional().openapi({ description: "Only this network's reconciliations." }),
});

const DifferencesQuery = PaginationQuerySchema.extend({
  class: z.enum(DIFFERENCE_CLASSES, { error: `must be one of ${DIFFERENCE_CLASSES.join(", ")}` }).optional(),
});

const CorrectionsRequest = z
  .strictObject({
    difference_ids: z
      .array(z.string().min(1).max(400))
      .min(1, { error: "must name at least one difference" })
      .max(MAX_CORRECTIONS_PER_REQUEST, {
        error: `must name at most ${MAX_CORRECTIONS_PER_REQUEST} differences a request`,
      })
      .openapi({
        description: "The differences to settle (their ids); one event per transaction.",
        example: ["amount:ord_8812"],
      }),
    dry_run: z
      .boolean()
      .default(false)
      .openapi({ description: "Ask each conversion's object what it would decide; record nothing." }),
  })
  .openapi("CorrectionsRequest");

const CorrectionResultSchema = z
  .object({
    difference_id: z.string(),
    transaction_id: z.string(),
    class: z.enum(DIFFERENCE_CLASSES),
    outcome: z.enum(CORRECTION_OUTCOMES).openapi({
      description:
        "applied (recorded, or in a dry run would be: partners hear of it like any change), unchanged (the conversion already says it), refused (`reason` says why), already_applied (by an earlier request).",
    }),
    verdict: z
      .string()
      .nullable()
      .openapi({ description: "The conversion object's decision: accepted, updated, duplicate, stale, conflict." }),
    event_id: z.string().nullable(),
    reason: z.string().nullable(),
    event: z
      .object({
        status: z.enum(CONVERSION_STATUSES),
        amount: z.string().optional(),
        currency: z.string().optional(),
        event_time: z.string().optional(),
      })
      .nullable()
      .openapi({ description: "The event the correction records (or would)." }),
  })
  .openapi("CorrectionResult");

const CorrectionsAnswer = z
  .object({
    dry_run: z.boolean(),
    results: z.array(CorrectionResultSchema),
    summary: z.record(z.enum(CORRECTION_OUTCOMES), z.number().int()),
  })
  .openapi("Corrections");

const CSV_TYPES = /^(text\/csv|application\/csv|text\/plain)\b/i;

export function registerReconciliationRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/reconciliations",
      operationId: "createReconciliation",
      tags,
      summary: "Reconcile a report with the hub",
      description: `Upload the other side's report as CSV (a header row, then one row per transaction: id, status, amount, currency, optionally payout, payout currency and date; name their columns with \`<field>_column\` and their status words with \`<status>_values\`). The body is read as it arrives and each row is checked; a report with a bad row, a repeated transaction or more than ${MAX_REPORT_ROWS} rows (${MAX_REPORT_BYTES / (1024 * 1024)} MiB) is refused whole and nothing of it is kept. The diff runs in the background: poll \`Location\`.`,
      request: {
        query: UploadQuery,
        body: {
          required: true,
          content: {
            "text/csv": {
              schema: z
                .string()
                .openapi({ example: "transaction_id,status,amount,currency\r\nord_8812,approved,29.99,USD\r\n" }),
            },
          },
        },
      },
      responses: {
        202: {
          description: "The reconciliation, queued; its diff runs in the background.",
          headers: { Location: { description: "/v1/reconciliations/{id}", schema: { type: "string" as const } } },
          content: { "application/json": { schema: ReconciliationSchema } },
        },
        413: problem("The report is too large (bytes or rows)."),
        415: problem("The body is not CSV (Content-Type text/csv)."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const query = c.req.valid("query");
      const body = c.req.raw.body;
      if (!CSV_TYPES.test(c.req.header("content-type") ?? "")) {
        throw new ProblemError("unsupported_media_type", "Send the report as the body, with Content-Type: text/csv.", [
          { location: "header.content-type", message: "must be text/csv" },
        ]);
      }
      if (body === null) throw validationFailed([{ location: "body", message: "is empty: send the report as CSV" }]);
      const row = await requestReconciliation(
        { db: c.env.DB, runners: c.env.RECONCILIATION_JOBS },
        {
          network_id: query.network_id,
          partner_id: query.partner_id ?? null,
          since: query.since,
          until: query.until,
          mapping: reportMapping((name) => query[name as keyof typeof query] as string | undefined, "query"),
          delimiter: REPORT_DELIMITERS[query.delimiter],
        },
        body,
        principalOf(c),
      );
      c.header("Location", `/v1/reconciliations/${row.id}`);
      return c.json(toReconciliation(row), 202);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/reconciliations",
      operationId: "listReconciliations",
      tags,
      summary: "List reconciliations",
      description: "Newest first, optionally of one network, paginated with a cursor.",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of reconciliations.",
          content: { "application/json": { schema: listOf(ReconciliationSchema, "ReconciliationList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, network_id } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listReconciliations(c.env.DB, network_id, limit + 1, after);
      return c.json(
        page(rows, limit, toReconciliation, (row) => [row.created_at, row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/reconciliations/{reconciliation_id}",
      operationId: "getReconciliation",
      tags,
      summary: "Get a reconciliation",
      request: { params: Params },
      responses: {
        200: { description: "The reconciliation.", content: { "application/json": { schema: ReconciliationSchema } } },
        404: problem("No such reconciliation."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => c.json(toReconciliation(await found(c.env.DB, c.req.valid("param").reconciliation_id)), 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/reconciliations/{reconciliation_id}/differences",
      operationId: "listReconciliationDifferences",
      tags,
      summary: "List a reconciliation's differences",
      description: "In id order (class, then transaction), optionally of one class, paginated with a cursor.",
      request: { params: Params, query: DifferencesQuery },
      responses: {
        200: {
          description: "A page of differences.",
          content: { "application/json": { schema: listOf(DifferenceSchema, "ReconciliationDifferenceList") } },
        },
        404: problem("No such reconciliation."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { reconciliation_id } = c.req.valid("param");
      const { limit, cursor, class: differenceClass } = c.req.valid("query");
      await found(c.env.DB, reconciliation_id);
      const after = decodeCursor(cursor, 1)?.[0] ?? null;
      const rows = await listDifferences(c.env.DB, reconciliation_id, differenceClass, after, limit + 1);
      return c.json(
        page(rows, limit, toDifference, (row) => [row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/reconciliations/{reconciliation_id}/corrections",
      operationId: "applyReconciliationCorrections",
      tags,
      summary: "Apply corrections (or dry-run them)",
      description: `Each transaction's chosen differences become one event with source \`correction\`, decided by the conversion's Durable Object like any postback (the lifecycle, the hash chain; partners notified of a real change). missing_in_hub records the report's conversion; status and amount set the report's; missing_in_report declines (or reverses) the conversion. Payout and credit differences are refused: they follow the offer and the click. At most ${MAX_CORRECTIONS_PER_REQUEST} a request; a difference corrected before answers already_applied.`,
      request: {
        params: Params,
        body: { required: true, content: { "application/json": { schema: CorrectionsRequest } } },
      },
      responses: {
        200: {
          description: "What each correction did (or would do).",
          content: { "application/json": { schema: CorrectionsAnswer } },
        },
        404: problem("No such reconciliation."),
        409: problem("The reconciliation is not finished."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { reconciliation_id } = c.req.valid("param");
      const { difference_ids, dry_run } = c.req.valid("json");
      const results = await applyCorrections(
        { db: c.env.DB, conversions: c.env.CONVERSIONS },
        reconciliation_id,
        difference_ids,
        dry_run,
        principalOf(c),
      );
      const summary = Object.fromEntries(
        CORRECTION_OUTCOMES.map((outcome) => [outcome, results.filter((result) => result.outcome === outcome).length]),
      ) as Record<(typeof CORRECTION_OUTCOMES)[number], number>;
      return c.json({ dry_run, results, summary }, 200);
    },
  );
}

async function found(db: D1Database, id: string): Promise<ReconciliationRow> {
  const row = await getReconciliation(db, id);
  if (!row || row.state === "uploading") {
    throw new ProblemError("not_found", `No reconciliation "${id}".`, [
      { location: "path.reconciliation_id", message: "not found" },
    ]);
  }
  return row;
}
