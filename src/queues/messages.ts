/** Queue message bodies, versioned zod schemas shared by producers and consumers. */
import { z } from "zod";
import { CONVERSION_STATUSES, PLATFORMS } from "../ingest/postback-schema";

const ConversionFieldsSchema = z.object({
  status: z.enum(CONVERSION_STATUSES),
  amount: z.string().optional(),
  currency: z.string().optional(),
  event_type: z.string().optional(),
  campaign_id: z.string().optional(),
  click_id: z.string().optional(),
  user_id: z.string().optional(),
  device_id: z.string().optional(),
  platform: z.enum(PLATFORMS).optional(),
  meta: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});

/** One recorded event, sent by a conversion's outbox to the EVENTS queue. */
export const EventMessageSchema = z.object({
  v: z.literal(1),
  event_id: z.string(),
  network_id: z.string(),
  transaction_id: z.string(),
  /** Position of the event in its conversion's history, from 1. */
  seq: z.number().int().positive(),
  verdict: z.enum(["accepted", "updated", "stale"]),
  /** The conversion's status before this event; null for the first one. */
  previous_status: z.enum(CONVERSION_STATUSES).nullable().default(null),
  /** A test postback: decided by the transaction's test object (whose receipt this selects), kept
   * in its own D1 row, delivered only to partners that take test traffic. */
  test: z.boolean().default(false),
  received_at: z.string(),
  /** The event as the network sent it (after validation). */
  event: ConversionFieldsSchema.extend({ event_time: z.string().optional() }),
  /** The conversion after this event; for a stale event, unchanged. */
  conversion: ConversionFieldsSchema.extend({
    event_time: z.string(),
    first_seen_at: z.string(),
    /** Monotonic across the object's whole life, so D1 applies snapshots in order. */
    version: z.number().int().positive(),
  }),
  /** The event's link in its conversion's hash chain (conversions/chain.ts); absent in messages sent before it. */
  hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  /** The previous event's hash; null for the first event of the chain. */
  prev_hash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .nullable()
    .optional(),
});

export type EventMessage = z.infer<typeof EventMessageSchema>;

/** One delivery to make, sent to the DELIVERIES queue; everything else is read from D1. */
export const DeliveryMessageSchema = z.object({
  v: z.literal(1),
  delivery_id: z.string(),
});

export type DeliveryMessage = z.infer<typeof DeliveryMessageSchema>;
