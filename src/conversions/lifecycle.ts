/**
 * The conversion lifecycle and the decision rules of docs/architecture.md and docs/conversion-records.md, as pure functions over plain data.
 * The Durable Object feeds them its stored state; nothing here touches storage or a clock.
 */
import {
  ALLOWED_TRANSITIONS,
  type ConversionFields,
  type ConversionState,
  type EventSource,
  FINGERPRINT_POSITIONAL_FIELDS,
  MATERIAL_FIELDS,
} from "../domain/conversion";
import type { ConversionStatus, Postback } from "../domain/postback";
import type { FieldError } from "../errors";

/** An event to decide: its fields, its `event_time` only when the network sent one, and where it came from. */
export interface IncomingEvent {
  fields: ConversionFields;
  event_time?: string | undefined;
  /** A network's postback when absent. */
  source?: EventSource | undefined;
}

export type Decision =
  | { verdict: "accepted" | "updated" | "stale" }
  /** `recorded`: the same event was recorded before; `current`: it only repeats the current state. */
  | { verdict: "duplicate"; of: "recorded" | "current" }
  | { verdict: "conflict"; errors: FieldError[] };

export function canTransition(from: ConversionStatus, to: ConversionStatus): boolean {
  return ALLOWED_TRANSITIONS[from].includes(to);
}

/**
 * Whether `earlier` can only come before `later`: `later` is reachable from `earlier` through the
 * allowed transitions. The table has no cycle, so a status never both precedes and follows another.
 */
export function precedes(earlier: ConversionStatus, later: ConversionStatus): boolean {
  const seen = new Set<ConversionStatus>();
  const next = [...ALLOWED_TRANSITIONS[earlier]];
  for (let status = next.pop(); status !== undefined; status = next.pop()) {
    if (status === later) return true;
    if (seen.has(status)) continue;
    seen.add(status);
    next.push(...ALLOWED_TRANSITIONS[status]);
  }
  return false;
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

/**
 * A canonical string of the material fields: equal strings mean the same event. The fields the
 * first fingerprints were built from keep their positions (absent ones as null); a field added
 * later joins by name and only when present, so that no fingerprint already stored changes. An
 * event a pixel reported is never the same event as the network's own postback with the same
 * fields (that postback confirms it), so its fingerprint is marked.
 */
export function fingerprint(fields: ConversionFields, source: EventSource = "s2s"): string {
  const canonical: unknown[] = [];
  for (const key of MATERIAL_FIELDS) {
    const value = fields[key];
    const positional = (FINGERPRINT_POSITIONAL_FIELDS as readonly string[]).includes(key);
    if (value === undefined) {
      if (positional) canonical.push(null);
      continue;
    }
    const canonicalValue =
      key === "amount" && typeof value === "string"
        ? normalizeDecimal(value)
        : key === "meta" && typeof value === "object"
          ? sortedEntries(value)
          : value;
    canonical.push(positional ? canonicalValue : [key, canonicalValue]);
  }
  const text = JSON.stringify(canonical);
  return source === "s2s" ? text : `${source}:${text}`;
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
 *
 * Whose clock: staleness is judged only between two times the network supplied. A receipt time
 * says when the hub heard of an event, not when it happened, so when either the current state's
 * time or the incoming event's was inferred, arrival order decides, within what the lifecycle
 * allows:
 *
 * | both times supplied                | either time inferred                                  |
 * |------------------------------------|-------------------------------------------------------|
 * | older than the state → stale       | allowed transition → updated                          |
 * | else allowed transition → updated  | status that can only come before the current → stale  |
 * | else → conflict                    | else → conflict                                       |
 *
 * and for the same status with other fields: stale when both times are supplied and the event's
 * is older, a conflict otherwise.
 *
 * A pixel is the browser's word, a postback the network's: a postback on a conversion a pixel set
 * confirms or corrects it (updated, whatever the pixel said), and a pixel never changes what a
 * postback set (stale: kept in the history, not applied). Between pixels the rules above apply.
 *
 * An operator's correction (source `correction`, from a reconciliation) counts as the network's
 * word: it follows the transitions like a postback, and it may also change the amount or currency
 * of the current status (updated), where a postback's different amount is a conflict.
 */
export function decide(
  state: ConversionState | null,
  incoming: IncomingEvent,
  isKnown: (fingerprint: string) => boolean,
): Decision {
  const source = incoming.source ?? "s2s";
  // A correction says what the conversion is now, not an event that happened: judged against the
  // current state only. (An amount corrected to 12, back to 10, then to 12 again is a change each
  // time; a network's retried postback of an old event is not.)
  if (source !== "correction" && isKnown(fingerprint(incoming.fields, source))) {
    return { verdict: "duplicate", of: "recorded" };
  }
  if (state === null) return { verdict: "accepted" };
  if (state.source === "pixel" && source !== "pixel") return { verdict: "updated" };
  if (state.source !== "pixel" && source === "pixel") return { verdict: "stale" };
  // A pixel never moves a pixel conversion to another click: with an allowed status change its click
  // id would be merged over the recorded one, and whoever fired it would take the conversion over.
  const click = incoming.fields.click_id;
  if (source === "pixel" && click !== undefined && click.toLowerCase() !== state.fields.click_id?.toLowerCase()) {
    return {
      verdict: "conflict",
      errors: [{ location: "body.click_id", message: "a pixel cannot change the click of a recorded conversion" }],
    };
  }
  const to = incoming.fields.status;
  // null: one of the two times is the hub's receipt time, and the clocks cannot be compared.
  const older =
    state.event_time_supplied && incoming.event_time !== undefined ? incoming.event_time < state.event_time : null;
  if (to === state.status) {
    const errors = differences(state.fields, incoming.fields);
    if (errors.length === 0) return { verdict: "duplicate", of: "current" };
    if (older === true) return { verdict: "stale" };
    if (source === "correction") return { verdict: "updated" };
    return { verdict: "conflict", errors };
  }
  if (older === true) return { verdict: "stale" };
  if (older === null && !canTransition(state.status, to) && precedes(to, state.status)) {
    return { verdict: "stale" };
  }
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
