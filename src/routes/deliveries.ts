/** Admin API for deliveries: the delivery log (every attempt) and replay of one delivery. */
import { createRoute, z } from "@hono/zod-openapi";
import { DELIVERY_STATES } from "../domain/delivery";
import { normalizeIdentifier } from "../domain/postback";
import { keysetPages, mapPages } from "../lib/export-stream";
import { deliveryNotFound, replayOneDelivery } from "../operations/deliveries";
import { DELIVERY_COLUMNS, DeliverySchema, deliveryKey, toDelivery } from "../reports/delivery-export";
import { exportPageRows } from "../reports/export-file";
import { type AttemptRow, getDelivery, listDeliveries } from "../storage/deliveries";
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
import { EXPORT_HEADERS, exportContent, exportResponse, FormatQuerySchema, listFormat } from "./export";

const tags = ["Deliveries"];

const AttemptSchema = z
  .object({
    attempt: z.number().int(),
    started_at: z.string(),
    http_status: z.number().int().nullable(),
    error_class: z.enum(["timeout", "network", "render", "blocked"]).nullable().openapi({
      description:
        "Why there was no HTTP status: no answer in time, a network error, a request that could not be rendered for this conversion, or a partner URL blocked right before sending (not https, or not a public host).",
    }),
    error: z.string().nullable(),
    latency_ms: z.number().int(),
    response_excerpt: z.string().nullable(),
    outcome: z.enum(["delivered", "retry", "gone", "failed", "dead"]),
  })
  .openapi("DeliveryAttempt");

export const DeliveryDetailSchema = DeliverySchema.extend({ attempts_log: z.array(AttemptSchema) }).openapi(
  "DeliveryDetail",
);

const ListQuery = PaginationQuerySchema.extend({
  partner_id: z.string().max(64).optional(),
  state: z.enum(DELIVERY_STATES).optional(),
  event_id: z.string().max(64).optional(),
  since: TimestampSchema.optional().openapi({ description: "Created at or after (RFC 3339)." }),
  until: TimestampSchema.optional().openapi({ description: "Created before (RFC 3339)." }),
  network_id: z.string().max(63).optional().openapi({ description: "Only deliveries of this network's conversions." }),
  transaction_id: z
    .string()
    .min(1)
    .max(128)
    .transform(normalizeIdentifier)
    .optional()
    .openapi({ description: "Only deliveries of this transaction's conversion (with network_id)." }),
  format: FormatQuerySchema,
});

const Params = z.object({
  delivery_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "delivery_id", in: "path" } }),
});

export function toAttempt(row: AttemptRow): z.infer<typeof AttemptSchema> {
  return {
    attempt: row.attempt,
    started_at: row.started_at,
    http_status: row.http_status,
    error_class: row.error_class as z.infer<typeof AttemptSchema>["error_class"],
    error: row.error,
    latency_ms: row.latency_ms,
    response_excerpt: row.response_excerpt,
    outcome: row.outcome,
  };
}

export function registerDeliveryRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/deliveries",
      operationId: "listDeliveries",
      tags,
      summary: "List deliveries",
      description:
        "Newest first by created_at, filtered and paginated with a cursor. With `format=csv` or `format=ndjson` (or `Accept: text/csv` / `application/x-ndjson`), every matching delivery instead, streamed as an attachment: the same filters, `cursor` to start after a JSON page, no `limit` (docs/reports.md#exports).",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of deliveries, or the export of every matching one.",
          headers: EXPORT_HEADERS,
          content: {
            "application/json": { schema: listOf(DeliverySchema, "DeliveryList") },
            ...exportContent("delivery", DELIVERY_COLUMNS),
          },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, format: query, ...filter } = c.req.valid("query");
      const format = listFormat(c, query);
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      if (format !== "json") {
        const rows = keysetPages(
          (start: [string, string] | null, size) => listDeliveries(c.env.DB, filter, size, start),
          deliveryKey,
          exportPageRows,
          after,
        );
        return exportResponse(c, {
          name: "deliveries",
          format,
          columns: DELIVERY_COLUMNS,
          pages: mapPages(rows, toDelivery),
        });
      }
      const rows = await listDeliveries(c.env.DB, filter, limit + 1, after);
      return c.json(page(rows, limit, toDelivery, deliveryKey), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/deliveries/{delivery_id}",
      operationId: "getDelivery",
      tags,
      summary: "Get a delivery and every attempt",
      request: { params: Params },
      responses: {
        200: { description: "The delivery.", content: { "application/json": { schema: DeliveryDetailSchema } } },
        404: problem("No such delivery."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { delivery_id } = c.req.valid("param");
      const { delivery, attempts } = await getDelivery(c.env.DB, delivery_id);
      if (!delivery) throw deliveryNotFound(delivery_id);
      return c.json({ ...toDelivery(delivery), attempts_log: attempts.map(toAttempt) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/deliveries/{delivery_id}/replay",
      operationId: "replayDelivery",
      tags,
      summary: "Replay a failed, dead or parked delivery",
      description: "Sends it again from the start of the partner's retry schedule, with the same delivery id.",
      request: { params: Params },
      responses: {
        202: { description: "Queued again.", content: { "application/json": { schema: DeliverySchema } } },
        404: problem("No such delivery."),
        409: problem("The delivery is not failed, dead or parked, or its partner is disabled."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { delivery_id } = c.req.valid("param");
      const replayed = await replayOneDelivery({ db: c.env.DB, deliveries: c.env.DELIVERIES }, delivery_id);
      return c.json(toDelivery(replayed), 202);
    },
  );
}
