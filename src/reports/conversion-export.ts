/**
 * A conversion as the API's list shows it and as its exports write it (docs/reports.md#exports):
 * its schema, the row shaped into it, the CSV columns, the list's sort key, and what a network key
 * may not see. One definition for the API's routes (routes/conversions.ts) and the console's
 * downloads (console/pages/conversions.tsx), so that both files are the same file.
 */
import { z } from "@hono/zod-openapi";
import { ATTRIBUTION_VERDICTS } from "../attribution/attribute";
import type { Principal } from "../domain/access";
import type { Click } from "../domain/click";
import { EVENT_SOURCES } from "../domain/conversion";
import { SUB_ID_NAMES } from "../domain/offer";
import { CONVERSION_STATUSES, PLATFORMS } from "../domain/postback";
import { type ExportColumn, scalarCell } from "../lib/export-stream";
import type { ConversionListKey, ConversionRow } from "../storage/d1";

export const MetaSchema = z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]));

export const MoneySchema = z.object({ amount: z.string().openapi({ example: "2.50" }), currency: z.string() });

export const ClickDetailSchema = z
  .object({
    ...Object.fromEntries(SUB_ID_NAMES.map((name) => [name, z.string().nullable()])),
    country: z.string().nullable(),
    device: z.string().nullable().openapi({ description: "desktop, mobile, tablet, tv…" }),
    os: z.string().nullable(),
    browser: z.string().nullable(),
    referrer: z.string().nullable().openapi({ description: "The referring page's origin." }),
  })
  .openapi("ClickDetail");

export const AttributionSchema = z
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

export const ConversionSchema = z
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

export type Conversion = z.infer<typeof ConversionSchema>;

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

export function money(amount: string | null, currency: string | null) {
  return amount !== null && currency !== null ? { amount, currency } : null;
}

export function toAttribution(row: ConversionRow, click: Click | null): z.infer<typeof AttributionSchema> | null {
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

export function toConversion(row: ConversionRow, click: Click | null = null): z.infer<typeof ConversionSchema> {
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

/**
 * What the hub pays the credited partner is the operator's business, not the network's: with the
 * revenue beside it, it is the operator's margin. A network's own key (its portal) reads its
 * conversions without it (null), as explain already answers a network.
 */
export function seesPayouts(principal: Principal): boolean {
  return principal.scope !== "network";
}

export function withoutPayout<T extends { payout?: unknown; attribution?: { payout: unknown } | null }>(item: T): T {
  if ("attribution" in item) {
    return { ...item, attribution: item.attribution ? { ...item.attribution, payout: null } : item.attribution };
  }
  return { ...item, payout: null };
}

/** The list's sort key of a row (first_seen_at descending, then its identity): a keyset page's start. */
export function conversionKey(row: ConversionRow): ConversionListKey {
  return [row.first_seen_at, row.network_id, row.transaction_id, row.test === 1 ? "1" : "0"];
}
