/**
 * A delivery as the API's list shows it and as its exports write it (docs/reports.md#exports): its
 * schema, the row shaped into it, the CSV columns and the list's sort key. One definition for the
 * API's routes (routes/deliveries.ts) and the console's downloads (console/pages/deliveries.tsx).
 */
import { z } from "@hono/zod-openapi";
import { DELIVERY_STATES } from "../domain/delivery";
import { type ExportColumn, scalarCell } from "../lib/export-stream";
import { type DeliveryRow, payloadOf } from "../storage/deliveries";

export const DeliverySchema = z
  .object({
    id: z.string().openapi({ description: "Stable per (event, partner): the webhook-id of every attempt." }),
    event_id: z.string(),
    partner_id: z.string(),
    network_id: z.string(),
    transaction_id: z.string(),
    state: z.enum(DELIVERY_STATES),
    attempts: z.number().int(),
    last_status: z.number().int().nullable().openapi({ description: "HTTP status of the last attempt." }),
    last_error: z.string().nullable(),
    next_attempt_at: z.string().nullable(),
    conversion_status: z.string().openapi({ description: "The status this delivery notifies." }),
    created_at: z.string(),
    updated_at: z.string(),
    delivered_at: z.string().nullable(),
  })
  .openapi("Delivery");

export type Delivery = z.infer<typeof DeliverySchema>;

/** An export's CSV columns: the list item's fields, in its order (all of them scalars). */
export const DELIVERY_COLUMNS: readonly ExportColumn<Delivery>[] = (
  Object.keys(DeliverySchema.shape) as (keyof Delivery)[]
).map((name) => ({ name, value: (item: Delivery) => scalarCell(name, item[name]) }));

export function toDelivery(row: DeliveryRow): z.infer<typeof DeliverySchema> {
  return {
    id: row.id,
    event_id: row.event_id,
    partner_id: row.partner_id,
    network_id: row.network_id,
    transaction_id: row.transaction_id,
    state: row.state,
    attempts: row.attempts,
    last_status: row.last_status,
    last_error: row.last_error,
    next_attempt_at: row.next_attempt_at,
    conversion_status: payloadOf(row).conversion.status,
    created_at: row.created_at,
    updated_at: row.updated_at,
    delivered_at: row.delivered_at,
  };
}

/** The list's sort key of a row (created_at descending, then id): a keyset page's start. */
export function deliveryKey(row: DeliveryRow): [string, string] {
  return [row.created_at, row.id];
}
