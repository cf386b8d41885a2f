/** GET /v1/stats: counts, rates and exact per-currency money from the hourly roll-ups (docs/reports.md#stats). */
import { createRoute, z } from "@hono/zod-openapi";
import { STATS_COLUMN_DIMENSIONS, STATS_COLUMNS, STATS_DIMENSIONS, type StatsColumn } from "../domain/stats";
import { negotiateFormat } from "../lib/export-stream";
import { queryStats, statsExportColumns } from "../reports/stats";
import { principalOf } from "./admin-auth";
import { ADMIN_PROBLEMS, type App } from "./common";
import { EXPORT_HEADERS, exportResponse, FormatQuerySchema } from "./export";

const tags = ["Reports"];

const GroupBySchema = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const names = (value ?? "")
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name !== "");
    const unknown = names.filter((name) => !(STATS_DIMENSIONS as readonly string[]).includes(name));
    if (unknown.length > 0) {
      ctx.addIssue({ code: "custom", message: `unknown ${unknown.join(", ")}; one of ${STATS_DIMENSIONS.join(", ")}` });
      return z.NEVER;
    }
    return names as (typeof STATS_DIMENSIONS)[number][];
  })
  .openapi({
    description: `Comma-separated dimensions to group by, any of ${STATS_DIMENSIONS.join(", ")}; none: one row of totals.`,
    example: "day,network",
  });

const FilterSchema = z.string().min(1).max(255).optional().openapi({ description: "Only this value ('' is refused)." });
const FILTERS = Object.fromEntries(STATS_COLUMN_DIMENSIONS.map((d) => [STATS_COLUMNS[d], FilterSchema])) as Record<
  StatsColumn,
  typeof FilterSchema
>;

const StatsQuerySchema = z.object({
  group_by: GroupBySchema,
  since: z.string().max(40).optional().openapi({
    description:
      "A real calendar date (midnight in time_zone) or an RFC 3339 time on a whole hour, in 1970-9999, included. Default: 30 days before until.",
    example: "2026-11-01",
  }),
  until: z.string().max(40).optional().openapi({
    description:
      "A real calendar date or an RFC 3339 time on a whole hour, in 1970-9999, excluded. Default: tomorrow's midnight in time_zone.",
    example: "2026-12-01",
  }),
  time_zone: z
    .string()
    .max(64)
    .default("UTC")
    .openapi({ description: "IANA name, for day and hour and for dates in since/until.", example: "Europe/Paris" }),
  test: z
    .enum(["true", "false"], { error: "must be true or false" })
    .default("false")
    .transform((value) => value === "true")
    .openapi({ description: "Test conversions (`true`) or live ones (the default)." }),
  ...FILTERS,
  format: FormatQuerySchema,
});

const MoneySchema = z.object({ currency: z.string(), amount: z.string().openapi({ example: "1234.50" }) });

const MetricsSchema = z.object({
  clicks: z.number().int().nullable().openapi({
    description:
      "Null when a dimension grouped or filtered by is not a click's (status, event_type, platform) or for test.",
  }),
  conversions: z.number().int(),
  conversion_rate: z.number().nullable().openapi({ description: "conversions / clicks; null without clicks." }),
  statuses: z.object({
    pending: z.number().int(),
    approved: z.number().int(),
    paid: z.number().int(),
    declined: z.number().int(),
    reversed: z.number().int(),
  }),
  amount: z
    .array(MoneySchema)
    .openapi({ description: "The networks' amounts, per currency (declined and reversed not summed)." }),
  revenue: z.array(MoneySchema).openapi({ description: "The offers' revenue, per currency." }),
  payout: z
    .array(MoneySchema)
    .nullable()
    .openapi({ description: "The partners' payouts, per currency; null for a network key." }),
  deliveries: z
    .object({
      attempts: z.number().int(),
      delivered: z.number().int(),
      failed: z.number().int().openapi({ description: "Attempts that ended a delivery unsent (failed, gone, dead)." }),
      success_rate: z.number().nullable().openapi({ description: "delivered / (delivered + failed)." }),
    })
    .nullable()
    .openapi({ description: "Null when grouped or filtered by more than day, hour, network and partner." }),
});

const StatsSchema = z
  .object({
    since: z.string(),
    until: z.string(),
    time_zone: z.string(),
    group_by: z.array(z.enum(STATS_DIMENSIONS)),
    test: z.boolean(),
    complete: z.boolean().openapi({
      description: "False while conversions recorded before the roll-ups existed are still being counted (the cron).",
    }),
    data: z.array(
      MetricsSchema.extend({
        group: z.record(z.string(), z.string().nullable()).openapi({
          description: "The group's value of each group_by dimension (null: none); hour as a local RFC 3339 time.",
        }),
      }),
    ),
    totals: MetricsSchema,
  })
  .openapi("Stats");

export function registerStatsRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/stats",
      operationId: "getStats",
      tags,
      summary: "Stats: counts, rates and money by any dimension",
      description:
        "From the hourly roll-ups the consumers keep, never a scan of the raw rows: grouped by any of the dimensions, filtered on them, in a time zone. Money is exact and per currency, never summed across currencies. With `format=csv` or `format=ndjson`, the groups as an attachment, one row each.",
      request: { query: StatsQuerySchema },
      responses: {
        200: {
          description: "The groups and their totals.",
          headers: EXPORT_HEADERS,
          content: {
            "application/json": { schema: StatsSchema },
            "text/csv": { schema: z.string().openapi({ description: "One row per group (docs/reports.md#stats)." }) },
            "application/x-ndjson": { schema: z.string().openapi({ description: "One group per line." }) },
          },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const query = c.req.valid("query");
      const filters = Object.fromEntries(
        STATS_COLUMN_DIMENSIONS.flatMap((d) => {
          const value = query[STATS_COLUMNS[d]];
          return value === undefined ? [] : [[d, value]];
        }),
      );
      const answer = await queryStats(
        c.env.DB,
        {
          group_by: query.group_by,
          since: query.since,
          until: query.until,
          time_zone: query.time_zone,
          test: query.test,
          filters,
          hide_payout: principalOf(c).scope === "network",
        },
        Date.now(),
      );
      c.header("vary", "Accept");
      const format = negotiateFormat(query.format, c.req.header("accept"));
      if (format === "json") return c.json(answer, 200);
      return exportResponse(c, {
        name: "stats",
        format,
        columns: statsExportColumns(answer.group_by, answer.totals),
        pages: (async function* () {
          yield answer.data;
        })(),
      });
    },
  );
}
