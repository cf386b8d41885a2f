/**
 * The conversion lifecycle and the decision rules of DESIGN.md, as pure functions over plain data.
 * The Durable Object feeds them its stored state; nothing here touches storage or a clock.
 */
import type { FieldError } from "../errors";
import type { ConversionStatus, Postback } from "../ingest/postback-schema";

export const ALLOWED_TRANSITIONS: Readonly<Record<ConversionStatus, readonly ConversionStatus[]>> = {
  pending: ["approved", "declined", "paid"],
  approved: ["paid", "declined", "reversed"],
  paid: ["reversed"],
  declined: [],
  reversed: [],
};

export type Verdict = "accepted" | "duplicate" | "updated" | "stale" | "conflict";
export type RecordedVerdict = "accepted" | "updated" | "stale";

/** The fields that make two events the same event. `event_time` is not one: a re-sent postback
 * with a fresh timestamp is still the same conversion news. */
export const MATERIAL_FIELDS = [
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
] as const;

export type MaterialField = (typeof MATERIAL_FIELDS)[number];
export type ConversionFields = Pick<Postback, MaterialField>;

export interface ConversionState {
  status: ConversionStatus;
  /** The effective time of the applied event: its `event_time`, else when the hub received it. */
  event_time: string;
  fields: ConversionFields;
}

export type Decision =
  | { verdict: "accepted" | "updated" | "stale" }
  /** `recorded`: the same event was recorded before; `current`: it only repeats the current state. */
  | { verdict: "duplicate"; of: "recorded" | "current" }
  | { verdict: "conflict"; errors: FieldError[] };

export function canTransition(from: ConversionStatus, to: ConversionStatus): boolean {
  return ALLOWED_TRANSITIONS[from].includes(to);
}

export function materialFields(postback: Postback): ConversionFields {
  const fields: Record<string, unknown> = {};
  for (const key of MATERIAL_FIELDS) {
    if (postback[key] !== undefined) fields[key] = postback[key];
  }
  return fields as ConversionFields;
}

/** `29.90`, `29.9` and `029.9` are the same amount. */
export function normalizeDecimal(value: string): string {
  const [whole = "0", fraction = ""] = value.split(".");
  const integer = whole.replace(/^0+(?=\d)/, "");
  const trimmed = fraction.replace(/0+$/, "");
  return trimmed ? `${integer}.${trimmed}` : integer;
}

/** A canonical string of the material fields: equal strings mean the same event. */
export function fingerprint(fields: ConversionFields): string {
  const canonical: unknown[] = [];
  for (const key of MATERIAL_FIELDS) {
    const value = fields[key];
    if (value === undefined) canonical.push(null);
    else if (key === "amount" && typeof value === "string") canonical.push(normalizeDecimal(value));
    else if (key === "meta" && typeof value === "object") canonical.push(sortedEntries(value));
    else canonical.push(value);
  }
  return JSON.stringify(canonical);
}

function sortedEntries(record: Record<string, unknown>): [string, unknown][] {
  return Object.entries(record).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Decides an incoming event against the stored state. `isKnown` answers whether an event with the
 * same fingerprint is already recorded (the duplicate check covers the whole history, so a late
 * retry of an old event replays that event's answer).
 *
 * Events are partial: a status update often carries only `transaction_id` and `status`. The fields
 * an event leaves out keep their recorded values (see `merge`), so an event that repeats the
 * current status and only fields that already hold those values is a duplicate, not a conflict.
 */
export function decide(
  state: ConversionState | null,
  incoming: { fields: ConversionFields; event_time: string },
  isKnown: (fingerprint: string) => boolean,
): Decision {
  if (isKnown(fingerprint(incoming.fields))) return { verdict: "duplicate", of: "recorded" };
  if (state === null) return { verdict: "accepted" };
  const to = incoming.fields.status;
  if (to === state.status) {
    const errors = differences(state.fields, incoming.fields);
    if (errors.length === 0) return { verdict: "duplicate", of: "current" };
    if (incoming.event_time < state.event_time) return { verdict: "stale" };
    return { verdict: "conflict", errors };
  }
  if (incoming.event_time < state.event_time) return { verdict: "stale" };
  if (!canTransition(state.status, to)) {
    const allowed = ALLOWED_TRANSITIONS[state.status];
    return {
      verdict: "conflict",
      errors: [
        {
          location: "body.status",
          message: `cannot move from ${state.status} to ${to}; ${
            allowed.length ? `allowed next statuses: ${allowed.join(", ")}` : `${state.status} is final`
          }`,
        },
      ],
    };
  }
  return { verdict: "updated" };
}

/** The conversion after an applied event: the event's fields over the recorded ones (meta by key). */
export function merge(recorded: ConversionFields, incoming: ConversionFields): ConversionFields {
  const merged: ConversionFields = { ...recorded, ...incoming };
  if (recorded.meta && incoming.meta) merged.meta = { ...recorded.meta, ...incoming.meta };
  return merged;
}

/** The fields `incoming` carries whose values differ from `recorded`, each named by its body location. */
export function differences(recorded: ConversionFields, incoming: ConversionFields): FieldError[] {
  const errors: FieldError[] = [];
  for (const key of MATERIAL_FIELDS) {
    const now = incoming[key];
    if (key === "meta" || now === undefined) continue;
    const was = recorded[key];
    const same =
      key === "amount" && typeof was === "string" && typeof now === "string"
        ? normalizeDecimal(was) === normalizeDecimal(now)
        : was === now;
    if (!same) errors.push({ location: `body.${key}`, message: describeChange(was, now) });
  }
  const recordedMeta: Record<string, unknown> = recorded.meta ?? {};
  for (const [key, value] of Object.entries(incoming.meta ?? {}).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (recordedMeta[key] !== value) {
      errors.push({ location: `body.meta.${key}`, message: describeChange(recordedMeta[key], value) });
    }
  }
  return errors;
}

function describeChange(recorded: unknown, incoming: unknown): string {
  const show = (value: unknown) => (value === undefined ? "absent" : JSON.stringify(value));
  return `is ${show(incoming)} here but ${show(recorded)} in the recorded conversion with the same status`;
}
