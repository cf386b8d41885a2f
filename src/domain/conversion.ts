/**
 * A conversion as every part of the hub sees it: its statuses and allowed transitions, its fields
 * (derived from the postback's schema, never listed again), and the contract of the Durable Object
 * that decides it (the names, what `record` takes and answers). The lifecycle's rules themselves
 * are in conversions/lifecycle.ts; the object in conversions/conversion-object.ts.
 */
import { z } from "@hono/zod-openapi";
import type { FieldError } from "../errors";
import { CONVERSION_STATUSES, type ConversionStatus, type Postback, PostbackFieldsSchema } from "./postback";

export const ALLOWED_TRANSITIONS: Readonly<Record<ConversionStatus, readonly ConversionStatus[]>> = {
  pending: ["approved", "declined", "paid"],
  approved: ["paid", "declined", "reversed"],
  paid: ["reversed"],
  declined: [],
  reversed: [],
};

export type Verdict = "accepted" | "duplicate" | "updated" | "stale" | "conflict";
export const RECORDED_VERDICTS = ["accepted", "updated", "stale"] as const;
export type RecordedVerdict = (typeof RECORDED_VERDICTS)[number];

/**
 * Fields of a postback that are not what the conversion *is*: its key, when it happened (a
 * re-sent postback with a fresh `event_time` is still the same news), and which world it is in.
 */
const NOT_MATERIAL = ["transaction_id", "event_time", "test"] as const;

export type MaterialField = Exclude<keyof typeof PostbackFieldsSchema.shape, (typeof NOT_MATERIAL)[number]>;

/** The fields that make two events the same event, in the schema's order (the fingerprint's order). */
export const MATERIAL_FIELDS = Object.keys(PostbackFieldsSchema.shape).filter(
  (field) => !(NOT_MATERIAL as readonly string[]).includes(field),
) as MaterialField[];

export type ConversionFields = Pick<Postback, MaterialField>;

/**
 * The material fields of the first stored fingerprints, which keep their positions in it; a field
 * added since joins by name (conversions/lifecycle.ts `fingerprint`). Never edit this list.
 */
export const FINGERPRINT_POSITIONAL_FIELDS = [
  "status",
  "amount",
  "currency",
  "event_type",
  "campaign_id",
  "click_id",
  "user_id",
  "device_id",
  "platform",
  "meta",
] as const satisfies readonly MaterialField[];

/**
 * Where an event came from: `s2s`, a network's authenticated postback; `pixel`, a browser pixel
 * (authenticated only by a click id and the page's origin), which a postback confirms or corrects
 * and which never changes what a postback recorded; `correction`, an operator's correction applied
 * from a reconciliation (docs/reconciliation.md), which may also correct the amount or currency of
 * the current status, a postback may not.
 */
export const EVENT_SOURCES = ["s2s", "pixel", "correction"] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

/** A stored source back into a source (anything unknown, or absent, was a network's postback). */
export function eventSourceOf(value: unknown): EventSource {
  return (EVENT_SOURCES as readonly unknown[]).includes(value) ? (value as EventSource) : "s2s";
}

/**
 * The source as an event's chain hash covers it: absent for a network's postback, so that every
 * hash from before other sources existed stays what it was.
 */
export function chainSourceOf(source: EventSource | string | undefined): Exclude<EventSource, "s2s"> | undefined {
  const known = eventSourceOf(source);
  return known === "s2s" ? undefined : known;
}

export interface ConversionState {
  status: ConversionStatus;
  /** The effective time of the applied event: its `event_time`, else when the hub received it. */
  event_time: string;
  /** Whether `event_time` came from the network (true) or is the hub's receipt time (false). */
  event_time_supplied: boolean;
  fields: ConversionFields;
  /** Where the applied event came from: a pixel's state is the network's to confirm or correct. */
  source: EventSource;
}

/** A D1 row's columns back into fields: a column per material field, NULL when absent. */
export function fieldsFromColumns(row: Readonly<Record<MaterialField, unknown>>): ConversionFields {
  const fields: Record<string, unknown> = {};
  for (const field of MATERIAL_FIELDS) {
    const value = row[field];
    if (value !== null && value !== undefined) fields[field] = value;
  }
  return fields as ConversionFields;
}

// --- the conversion object's contract -----------------------------------------------------------

/** Test objects' names start with this; a live name starts with a network id, which never has `~`. */
export const TEST_OBJECT_PREFIX = "~test:";

/**
 * The object's name: one object per network, transaction id and world (live or test), so that a
 * test postback can never block, change or hide a live conversion. Network ids never contain ':'
 * and never start with '~', so a name splits back unambiguously and no live name can collide with
 * a test one. Live names are what they were before test objects existed.
 */
export function conversionObjectName(networkId: string, transactionId: string, test: boolean): string {
  return `${test ? TEST_OBJECT_PREFIX : ""}${networkId}:${transactionId}`;
}

/** What `record` (and `peek`) take: one validated postback, and where it came from. */
export interface RecordInput {
  network_id: string;
  transaction_id: string;
  postback: Postback;
  /** A test postback: decided by the transaction's test object, delivered only to partners that take test traffic. */
  test?: boolean;
  /** When the edge received the request (ISO 8601). */
  received_at: string;
  /** `pixel` for the browser pixel route; a network's postback when absent. */
  source?: EventSource;
}

/** The answer a network gets; replayed as-is (with `status: "duplicate"`) for a duplicate. */
export const IngestAnswerSchema = z
  .object({
    status: z.enum(["accepted", "duplicate", "updated", "stale"]).openapi({
      description:
        "accepted: a new conversion; duplicate: already recorded (the original answer, replayed); updated: a status change; stale: older than the recorded state, kept in history only.",
    }),
    event_id: z.string().openapi({ example: "evt_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
    network_id: z.string(),
    transaction_id: z.string(),
    conversion_status: z.enum(CONVERSION_STATUSES),
  })
  .openapi("IngestAnswer");

export type IngestAnswer = z.infer<typeof IngestAnswerSchema>;

export type RecordResult =
  | {
      ok: true;
      answer: IngestAnswer;
      /**
       * Until when (epoch ms) every repeat of this event's content gets this answer, as a duplicate:
       * the event is recorded, and the object keeps its history until its dedupe window ends. Absent
       * when a repeat might be answered otherwise. The edge may cache it (ingest/answer-cache.ts).
       */
      final_until_ms?: number;
    }
  | { ok: false; conversion_status: ConversionStatus; errors: FieldError[] };

/** One conversion's key in maps and stores: network, transaction, test or live (test and live never share state). */
export function conversionKeyOf(networkId: string, transactionId: string, test: boolean): string {
  return `${networkId}\u0000${transactionId}\u0000${test}`;
}
