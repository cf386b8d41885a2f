/** Admin read API for conversions: one with its full history, or a filtered, paginated list. */

import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ATTRIBUTION_VERDICTS } from "../attribution/attribute";
import type { Click } from "../domain/click";
import { EVENT_SOURCES } from "../domain/conversion";
import { SUB_ID_NAMES } from "../domain/offer";
import { CONVERSION_STATUSES, normalizeIdentifier, PLATFORMS } from "../domain/postback";
import { ProblemError } from "../errors";
import { type ExportColumn, keysetPages, mapPages, scalarCell } from "../lib/export-stream";
import {
  type ConversionEventRow,
  type ConversionListKey,
  type ConversionRow,
  getConversion,
  listConversions,
} from "../storage/d1";
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
import { EXPORT_HEADERS, exportContent, exportPageRows, exportResponse, FormatQuerySchema, listFormat } from "./export";

const MetaSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

const MoneySchema = z.object({ amount: z.string().openapi({ example: "2.50" }), currency: z.string() });

const ClickDetailSchema = z
  .object({
    ...Object.fromEntries(SUB_ID_NAMES.map((name) => [name, z.string().nullable()])),
    country: z.string().nullable(),
    device: z.string().nullable().openapi({ description: "desktop, mobile, tablet, tv…" }),
    os: z.string().nullable(),
    browser: z.string().nullable(),
    referrer: z.string().nullable().openapi({ description: "The referring page's origin." }),
  })
  .openapi("ClickDetail");

const AttributionSchema = z
  .object({
    verdict: z.enum(ATTRIBUTION_VERDICTS),
    detail: z.string(),
    offer_id: z.string().nullable(),
    partner_id: z.string().nullable().openapi({ description: "The partner credited (click or direct)." }),
    clicked_at: z.string().nullable(),
    payout: MoneySchema.nullable().openapi({
      description:
        "The credited partner's payout as of the latest event; null for a network key (the operator's business).",
    }),
    revenue: MoneySchema.nullable(),
    click: ClickDetailSchema.nullable().openapi({
      description: "The click's details, once its record is in D1 (the id alone attributes it before).",
    }),
  })
  .openapi("Attribution");

const ConversionSchema = z
  .object({
    network_id: z.string(),
    transaction_id: z.string(),
    status: z.enum(CONVERSION_STATUSES),
    amount: z.string().nullable(),
    currency: z.string().nullable(),
    event_type: z.string().nullable(),
    event_time: z
      .string()
      .openapi({ description: "Event time of the applied state (received time when the network sent none)." }),
    event_time_supplied: z.boolean().openapi({
      description:
        "Whether event_time came from the network (true) or is the time the hub received the event (false). Staleness is judged only between supplied times.",
    }),
    campaign_id: z.string().nullable(),
    click_id: z.string().nullable(),
    user_id: z.string().nullable(),
    device_id: z.string().nullable(),
    platform: z.enum(PLATFORMS).nullable(),
    meta: MetaSchema.nullable(),
    first_seen_at: z.string().openapi({ description: "When the hub accepted the first event." }),
    updated_at: z.string().openapi({ description: "When the hub received the event that set the current state." }),
    test: z.boolean().openapi({ description: "Recorded from test postbacks (delivered only to test partners)." }),
    partner_id: z.string().nullable().openapi({ description: "The partner the network named, as sent." }),
    source: z.enum(EVENT_SOURCES).openapi({
      description: "s2s: set by the network's postback; pixel: by a browser pixel not yet confirmed by one.",
    }),
    attribution: AttributionSchema.nullable().openapi({
      description: "Whose conversion it is and what it pays (docs/attribution.md); null until attributed.",
    }),
  })
  .openapi("Conversion");

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

type Conversion = z.infer<typeof ConversionSchema>;

/**
 * An export's CSV columns (docs/reports.md#exports): the list item's fields in its order, flat. meta
 * is its JSON text; attribution is spread into its own columns, money as amount and currency. They
 * read the item the JSON list shows, so what a key may not see (a network key's payout) is empty
 * here for the same reason it is null there.
 */
const ATTRIBUTION_COLUMNS: ExportColumn<Conversion>[] = [
  { name: "attribution_verdict", value: (item) => item.attribution?.verdict ?? null },
  { name: "attribution_detail", value: (item) => item.attribution?.detail ?? null },
  { name: "offer_id", value: (item) => item.attribution?.offer_id ?? null },
  { name: "attributed_partner_id", value: (item) => item.attribution?.partner_id ?? null },
  { name: "clicked_at", value: (item) => item.attribution?.clicked_at ?? null },
  { name: "payout", value: (item) => item.attribution?.payout?.amount ?? null },
  { name: "payout_currency", value: (item) => item.attribution?.payout?.currency ?? null },
  { name: "revenue", value: (item) => item.attribution?.revenue?.amount ?? null },
  { name: "revenue_currency", value: (item) => item.attribution?.revenue?.currency ?? null },
];

export const CONVERSION_COLUMNS: readonly ExportColumn<Conversion>[] = (
  Object.keys(ConversionSchema.shape) as (keyof Conversion)[]
).flatMap((name): ExportColumn<Conversion>[] => {
  if (name === "attribution") return ATTRIBUTION_COLUMNS;
  if (name === "meta") return [{ name, value: (item) => (item.meta === null ? null : JSON.stringify(item.meta)) }];
  return [{ name, value: (item) => scalarCell(name, item[name]) }];
});

const tags = ["Conversions"];

function money(amount: string | null, currency: string | null) {
  return amount !== null && currency !== null ? { amount, currency } : null;
}

function toAttribution(row: ConversionRow, click: Click | null): z.infer<typeof AttributionSchema> | null {
  if (row.attribution === null) return null;
  return {
    verdict: row.attribution as z.infer<typeof AttributionSchema>["verdict"],
    detail: row.attribution_detail ?? "",
    offer_id: row.offer_id,
    partner_id: row.attributed_partner_id,
    clicked_at: row.clicked_at,
    payout: money(row.payout, row.payout_currency),
    revenue: money(row.revenue, row.revenue_currency),
    click: click && {
      ...Object.fromEntries(SUB_ID_NAMES.map((name) => [name, click[name]])),
      country: click.country,
      device: click.device,
      os: click.os,
      browser: click.browser,
      referrer: click.referrer,
    },
  };
}

function toConversion(row: ConversionRow, click: Click | null = null): z.infer<typeof ConversionSchema> {
  return {
    network_id: row.network_id,
    transaction_id: row.transaction_id,
    status: row.status as z.infer<typeof ConversionSchema>["status"],
    amount: row.amount,
    currency: row.currency,
    event_type: row.event_type,
    event_time: row.event_time,
    event_time_supplied: row.event_time_supplied === 1,
    campaign_id: row.campaign_id,
    click_id: row.click_id,
    user_id: row.user_id,
    device_id: row.device_id,
    platform: row.platform as z.infer<typeof ConversionSchema>["platform"],
    meta: row.meta ? (JSON.parse(row.meta) as z.infer<typeof MetaSchema>) : null,
    first_seen_at: row.first_seen_at,
    updated_at: row.updated_at,
    test: row.test === 1,
    partner_id: row.partner_id,
    source: row.source as z.infer<typeof ConversionSchema>["source"],
    attribution: toAttribution(row, click),
  };
}

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
      description: "The conversion's current state and every recorded event with its verdict, oldest first.",
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
      const { conversion, events, otherWorld, click } = await getConversion(c.env.DB, network_id, transaction_id, test);
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

/**
 * What the hub pays the credited partner is the operator's business, not the network's: with the
 * revenue beside it, it is the operator's margin. A network's own key (its portal) reads its
 * conversions without it (null), as explain already answers a network.
 */
function seesPayouts(c: Context<AppEnv>): boolean {
  return principalOf(c).scope !== "network";
}

function withoutPayout<T extends { payout?: unknown; attribution?: { payout: unknown } | null }>(item: T): T {
  if ("attribution" in item) {
    return { ...item, attribution: item.attribution ? { ...item.attribution, payout: null } : item.attribution };
  }
  return { ...item, payout: null };
}

function conversionKey(row: ConversionRow): ConversionListKey {
  return [row.first_seen_at, row.network_id, row.transaction_id, row.test === 1 ? "1" : "0"];
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
