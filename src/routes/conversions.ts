/** Admin read API for conversions: one with its full history, or a filtered, paginated list. */

import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { EVENT_SOURCES } from "../domain/conversion";
import { CONVERSION_STATUSES, normalizeIdentifier, PLATFORMS } from "../domain/postback";
import { ProblemError } from "../errors";
import { keysetPages, mapPages } from "../lib/export-stream";
import {
  CONVERSION_COLUMNS,
  ConversionSchema,
  conversionKey,
  MoneySchema,
  money,
  seesPayouts as principalSeesPayouts,
  toConversion,
  withoutPayout,
} from "../reports/conversion-export";
import { exportPageRows } from "../reports/export-file";
import { getConversionWithArchive } from "../storage/archive";
import { type ConversionEventRow, type ConversionListKey, type ConversionRow, listConversions } from "../storage/d1";
import { principalOf } from "./admin-auth";
import {
  ADMIN_PROBLEMS,
  type App,
  type AppEnv,
  decodeCursor,
  invalidCursor,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  TimestampSchema,
} from "./common";
import { EXPORT_HEADERS, exportContent, exportResponse, FormatQuerySchema, listFormat } from "./export";

const ConversionEventSchema = z
  .object({
    event_id: z.string(),
    seq: z.number().int(),
    verdict: z.enum(["accepted", "updated", "stale"]),
    status: z.enum(CONVERSION_STATUSES),
    event_time: z.string().nullable(),
    received_at: z.string(),
    test: z.boolean().openapi({ description: "A test postback." }),
    event: z
      .record(z.string(), z.unknown())
      .openapi({ description: "The event as the network sent it, after validation." }),
    source: z.enum(EVENT_SOURCES),
    payout: MoneySchema.nullable().openapi({ description: "The credited partner's payout as of this event." }),
    hash: z.string().nullable().openapi({
      description:
        "The event's link in the conversion's hash chain (see the proof route); null for events recorded before the chain existed.",
    }),
    prev_hash: z.string().nullable().openapi({ description: "The previous event's hash; null for the chain's first." }),
  })
  .openapi("ConversionEvent");

const ConversionDetailSchema = ConversionSchema.extend({ events: z.array(ConversionEventSchema) }).openapi(
  "ConversionDetail",
);

/** `?test=true|false`, as a boolean (undefined when absent). */
function testFlag(description: string) {
  return z
    .enum(["true", "false"], { error: "must be true or false" })
    .optional()
    .transform((value) => (value === undefined ? undefined : value === "true"))
    .openapi({ description });
}

export const ConversionKeyParams = z.object({
  network_id: z.string().openapi({ param: { name: "network_id", in: "path" }, example: "acme" }),
  // As ingest names it (NFC), so an id typed in another Unicode form finds its conversion.
  transaction_id: z
    .string()
    .transform(normalizeIdentifier)
    .openapi({ param: { name: "transaction_id", in: "path" }, example: "ord_8812" }),
});

export const WorldQuery = z.object({
  test: testFlag(
    "`true` for the transaction's test conversion (recorded from test postbacks, apart from the live one); the live one by default.",
  ),
});

const ListQuery = PaginationQuerySchema.extend({
  network_id: z.string().max(63).optional(),
  status: z.enum(CONVERSION_STATUSES).optional(),
  campaign_id: z.string().max(128).optional(),
  platform: z.enum(PLATFORMS).optional(),
  since: TimestampSchema.optional().openapi({ description: "First seen at or after (RFC 3339)." }),
  until: TimestampSchema.optional().openapi({ description: "First seen before (RFC 3339)." }),
  test: testFlag("Only test conversions (`true`) or only live ones (`false`); both when absent."),
  transaction_id: z.string().min(1).max(128).transform(normalizeIdentifier).optional(),
  click_id: z.string().min(1).max(256).optional(),
  partner_id: z.string().max(64).optional().openapi({ description: "The partner credited with it (attribution)." }),
  format: FormatQuerySchema,
});

const tags = ["Conversions"];

function toEvent(row: ConversionEventRow): z.infer<typeof ConversionEventSchema> {
  return {
    event_id: row.event_id,
    seq: row.seq,
    verdict: row.verdict as z.infer<typeof ConversionEventSchema>["verdict"],
    status: row.status as z.infer<typeof ConversionEventSchema>["status"],
    event_time: row.event_time,
    received_at: row.received_at,
    test: row.test === 1,
    event: JSON.parse(row.payload) as Record<string, unknown>,
    source: row.source as z.infer<typeof ConversionEventSchema>["source"],
    payout: money(row.payout, row.payout_currency),
    hash: row.hash,
    prev_hash: row.prev_hash,
  };
}

export function registerConversionRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/conversions/{network_id}/{transaction_id}",
      operationId: "getConversion",
      tags,
      summary: "Get a conversion and its history",
      description:
        "The conversion's current state and every recorded event with its verdict, oldest first: those D1 holds and those the archive moved to R2 (docs/archive.md).",
      request: { params: ConversionKeyParams, query: WorldQuery },
      responses: {
        200: { description: "The conversion.", content: { "application/json": { schema: ConversionDetailSchema } } },
        404: problem(
          "No such conversion (yet: it reaches D1 moments after the postback is answered); the detail says when the transaction exists in the other world (test or live).",
        ),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id, transaction_id } = c.req.valid("param");
      const test = c.req.valid("query").test ?? false;
      const { conversion, events, otherWorld, click } = await getConversionWithArchive(
        c.env.DB,
        c.env.ARCHIVE,
        network_id,
        transaction_id,
        test,
      );
      if (!conversion) throw conversionNotFound(network_id, transaction_id, test, otherWorld);
      const detail = { ...toConversion(conversion, click), events: events.map(toEvent) };
      return c.json(
        seesPayouts(c) ? detail : { ...withoutPayout(detail), events: detail.events.map(withoutPayout) },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/conversions",
      operationId: "listConversions",
      tags,
      summary: "List conversions",
      description:
        "Newest first by first_seen_at, filtered and paginated with a cursor. With `format=csv` or `format=ndjson` (or `Accept: text/csv` / `application/x-ndjson`), every matching conversion instead, streamed as an attachment: the same filters, `cursor` to start after a JSON page, no `limit` (docs/reports.md#exports).",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of conversions, or the export of every matching one.",
          headers: EXPORT_HEADERS,
          content: {
            "application/json": { schema: listOf(ConversionSchema, "ConversionList") },
            ...exportContent("conversion", CONVERSION_COLUMNS),
          },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, format: query, ...filter } = c.req.valid("query");
      const format = listFormat(c, query);
      const after = listCursor(cursor);
      const toItem = seesPayouts(c)
        ? (row: ConversionRow) => toConversion(row)
        : (row: ConversionRow) => withoutPayout(toConversion(row));
      if (format !== "json") {
        const rows = keysetPages(
          (start: ConversionListKey | null, size) => listConversions(c.env.DB, filter, size, start),
          conversionKey,
          exportPageRows,
          after,
        );
        return exportResponse(c, {
          name: "conversions",
          format,
          columns: CONVERSION_COLUMNS,
          pages: mapPages(rows, toItem),
        });
      }
      const rows = await listConversions(c.env.DB, filter, limit + 1, after);
      return c.json(page(rows, limit, toItem, conversionKey), 200);
    },
  );
}

/** Whether the request's key reads payouts (reports/conversion-export.ts). */
function seesPayouts(c: Context<AppEnv>): boolean {
  return principalSeesPayouts(principalOf(c));
}

function listCursor(cursor: string | undefined): ConversionListKey | null {
  const key = decodeCursor(cursor, 4);
  if (key === null) return null;
  const [firstSeenAt = "", networkId = "", transactionId = "", test] = key;
  if (test !== "0" && test !== "1") throw invalidCursor();
  return [firstSeenAt, networkId, transactionId, test];
}

export function conversionNotFound(
  networkId: string,
  transactionId: string,
  test: boolean,
  otherWorld: boolean,
): ProblemError {
  const world = test ? "test" : "live";
  const hint = !otherWorld
    ? ""
    : test
      ? " Only a live conversion has this transaction id: ask without ?test=true."
      : " Only a test conversion has this transaction id: ask with ?test=true.";
  return new ProblemError(
    "not_found",
    `No ${world} conversion "${transactionId}" from network "${networkId}".${hint}`,
    [
      {
        location: "path.transaction_id",
        message: otherWorld
          ? `not found among ${world} conversions; a ${test ? "live" : "test"} one exists`
          : "not found",
      },
    ],
  );
}
