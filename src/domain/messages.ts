/** Queue message bodies, versioned zod schemas shared by producers and consumers. */
import { z } from "zod";
import { type ConversionFields, EVENT_SOURCES, MATERIAL_FIELDS, type MaterialField } from "./conversion";
import { CONVERSION_STATUSES, PLATFORMS } from "./postback";

/**
 * How a conversion field reads back from a message: loosely, since it was validated when it
 * arrived, so that a validation rule added later never refuses a message written before it (an
 * outbox may hold one for days). A new text field needs nothing here.
 */
function storedField(field: MaterialField): z.ZodType {
  switch (field) {
    case "status":
      return z.enum(CONVERSION_STATUSES);
    case "platform":
      return z.enum(PLATFORMS).optional();
    case "meta":
      return z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional();
    default:
      return z.string().optional();
  }
}

const ConversionFieldsSchema = z.object(
  Object.fromEntries(MATERIAL_FIELDS.map((field) => [field, storedField(field)])),
) as unknown as z.ZodType<ConversionFields>;

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
  /** Where the event came from: a browser pixel, or a network's postback (s2s, also when absent). */
  source: z.enum(EVENT_SOURCES).optional(),
  /** Where the event that set the state before this one came from; null or absent for the first event. */
  previous_source: z.enum(EVENT_SOURCES).nullable().optional(),
  /** A test postback: decided by the transaction's test object (whose receipt this selects), kept
   * in its own D1 row, delivered only to partners that take test traffic. */
  test: z.boolean().default(false),
  received_at: z.string(),
  /** The event as the network sent it (after validation). */
  event: z.intersection(ConversionFieldsSchema, z.object({ event_time: z.string().optional() })),
  /** The conversion after this event; for a stale event, unchanged. */
  conversion: z.intersection(
    ConversionFieldsSchema,
    z.object({
      event_time: z.string(),
      first_seen_at: z.string(),
      /** Monotonic across the object's whole life, so D1 applies snapshots in order. */
      version: z.number().int().positive(),
      /** Where the event that set this state came from (s2s when absent). */
      source: z.enum(EVENT_SOURCES).optional(),
    }),
  ),
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

export const INBOUND_ROUTES = ["postback", "batch", "explain", "requests", "apple"] as const;

const FieldErrorSchema = z.object({ location: z.string(), message: z.string() });

/** One request to a postback route of a known network, with its verdict (the inbound log). */
export const InboundRecordSchema = z.object({
  request_id: z.string().min(1).max(128),
  network_id: z.string(),
  received_at: z.string(),
  route: z.enum(INBOUND_ROUTES),
  method: z.string(),
  auth_method: z.string().nullable(),
  credential_id: z.string().nullable(),
  client_ip: z.string().nullable(),
  transaction_id: z.string().nullable(),
  test: z.boolean().nullable(),
  status: z.number().int(),
  /** The decision (accepted, duplicate, …, batch, explained, listed) or the problem code. */
  verdict: z.string(),
  errors: z.array(FieldErrorSchema),
  items: z.number().int().nullable(),
  body_bytes: z.number().int().nonnegative(),
  body_sha256: z.string().nullable(),
  excerpt: z.object({
    query: z.string().nullable(),
    headers: z.record(z.string(), z.string()),
    body: z.string().nullable(),
  }),
});

export type InboundRecord = z.infer<typeof InboundRecordSchema>;

/** An isolate's running total of requests it did not log one by one, for a network and minute. */
export const UnloggedCountSchema = z.object({
  /** '' for requests to networks the hub does not know. */
  network_id: z.string(),
  minute: z.string(),
  isolate_id: z.string(),
  unlogged: z.number().int().nonnegative(),
});

export type UnloggedCount = z.infer<typeof UnloggedCountSchema>;

/** A batch of inbound log entries, sent to the REQUEST_LOG queue after the answers. */
export const RequestLogMessageSchema = z.object({
  v: z.literal(1),
  records: z.array(InboundRecordSchema).default([]),
  counts: z.array(UnloggedCountSchema).default([]),
});

export type RequestLogMessage = z.infer<typeof RequestLogMessageSchema>;
