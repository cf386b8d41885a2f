/**
 * Erasure (docs/privacy.md): what a request to erase one person's identifier is, what a conversion's
 * object is asked to do and answers, and the one rule every store applies to a value: when it is
 * one of the forms the identifier may be stored in (as sent, or as its keyed hash), it becomes the
 * erasure's marker, `erased:<erasure id>`. Pure: the object, the events consumer and the erasure
 * route all rewrite with these functions, so what D1 holds is exactly what the object attested.
 */
import type { IdentifierKind } from "../lib/identifier-hash";
import type { ConversionFields } from "./conversion";
import type { EventMessage } from "./messages";

export const ERASABLE_IDENTIFIERS = ["user_id", "device_id", "click_id"] as const satisfies readonly IdentifierKind[];
export type ErasableIdentifier = (typeof ERASABLE_IDENTIFIERS)[number];

export const ERASED_PREFIX = "erased:";

/** What an erased value becomes: it says that it was erased, and by which erasure (GET /v1/erasures/{id}). */
export function erasureMarker(erasureId: string): string {
  return `${ERASED_PREFIX}${erasureId}`;
}

/** What one conversion's object (or one stored row) is asked to erase. */
export interface ErasureTarget {
  erasure_id: string;
  field: ErasableIdentifier;
  /** The forms the value may be stored in: as it was sent and as its keyed hash. Never empty. */
  values: string[];
  /** `erasure_id`'s marker. */
  marker: string;
}

/** Whether `value` is one the target erases. */
export function isErased(target: ErasureTarget, value: unknown): boolean {
  return typeof value === "string" && target.values.includes(value);
}

/** `fields` with the target's field erased, or null when it does not hold one of the target's values. */
export function eraseFields<T extends Partial<Record<ErasableIdentifier, unknown>>>(
  fields: T,
  target: ErasureTarget,
): T | null {
  if (!isErased(target, fields[target.field])) return null;
  return { ...fields, [target.field]: target.marker };
}

/** An EVENTS message with the target's value erased from its event and its conversion snapshot; null when it holds none. */
export function eraseEventMessage(message: EventMessage, target: ErasureTarget): EventMessage | null {
  const event = eraseFields(message.event, target);
  const conversion = eraseFields(message.conversion, target);
  if (!event && !conversion) return null;
  return { ...message, event: event ?? message.event, conversion: conversion ?? message.conversion };
}

/**
 * A conversion's fields after an erasure, for an event decided later: once an erasure erased a
 * field of a conversion, what a later event brings for it is recorded as the marker (one
 * transaction is one person's conversion), so a network that re-sends an erased postback gets
 * `duplicate`, and a status update applies without bringing the value back. Only while the state
 * holds the marker for the field (or nothing): a state that holds a value no erasure named is
 * judged as it is.
 */
export function keepErased(
  fields: ConversionFields,
  state: ConversionFields | null,
  erased: Readonly<Partial<Record<ErasableIdentifier, string>>>,
): ConversionFields {
  let kept = fields;
  for (const field of ERASABLE_IDENTIFIERS) {
    const marker = erased[field];
    const current = state?.[field];
    if (marker === undefined || kept[field] === undefined) continue;
    if (current !== undefined && !current.startsWith(ERASED_PREFIX)) continue;
    kept = { ...kept, [field]: current ?? marker };
  }
  return kept;
}

/** The object's answer to `erase`. */
export interface ObjectErasure {
  /** The object holds the conversion. */
  held: boolean;
  /** Its state held the value. */
  state: boolean;
  /** Events of its history (their dedupe fingerprints) that held the value. */
  fingerprints: number;
  /** Outbox rows that held the value, rewritten before they reach D1. */
  outbox: number;
  /** Of those, rows the queue already had a copy of: the events consumer erases such copies when they arrive. */
  in_flight: number;
  /** D1's chain as checked against the object before the erasure (null when D1's rows were not given). */
  chain: "verified" | "broken" | "unchained" | null;
  /** Events whose erased content the object recorded the hash of, so that the proof still verifies them. */
  attested: number;
  /** D1's events of the conversion that held the value, with their erased payloads: what D1 must hold now. */
  rewrites: { event_id: string; payload: string }[];
}

/** What one run of an erasure did, and, in its record, what all runs did. */
export interface ErasureCounts {
  /** Rows rewritten, per D1 table. */
  d1: {
    conversions: number;
    conversion_events: number;
    deliveries: number;
    delivery_attempts: number;
    inbound_requests: number;
    dead_letters: number;
    clicks: number;
  };
  /** The conversions' Durable Objects. */
  objects: {
    /** Objects asked to erase. */
    touched: number;
    /** Of those, objects that held their conversion. */
    held: number;
    states: number;
    fingerprints: number;
    outbox: number;
    in_flight: number;
    /** Rewritten events whose erased content the object attested (the proof verifies them). */
    attested: number;
    /** Conversions whose chain in D1 did not verify before the erasure: their rewritten events cannot be attested. */
    unverified_chains: number;
  };
}

export function noCounts(): ErasureCounts {
  return {
    d1: {
      conversions: 0,
      conversion_events: 0,
      deliveries: 0,
      delivery_attempts: 0,
      inbound_requests: 0,
      dead_letters: 0,
      clicks: 0,
    },
    objects: {
      touched: 0,
      held: 0,
      states: 0,
      fingerprints: 0,
      outbox: 0,
      in_flight: 0,
      attested: 0,
      unverified_chains: 0,
    },
  };
}

/** `a` + `b`, part by part (missing parts of an older record count as 0). */
export function addCounts(a: ErasureCounts, b: ErasureCounts): ErasureCounts {
  const sum = noCounts();
  for (const group of ["d1", "objects"] as const) {
    const target = sum[group] as Record<string, number>;
    for (const key of Object.keys(target)) {
      target[key] =
        ((a[group] as Record<string, number> | undefined)?.[key] ?? 0) +
        ((b[group] as Record<string, number> | undefined)?.[key] ?? 0);
    }
  }
  return sum;
}

/** The text inside a JSON string literal for `value`. */
function inJsonString(value: string): string {
  return JSON.stringify(value).slice(1, -1);
}

/** A parameter value as URLSearchParams writes it (the inbound log's query and form excerpts). */
function asParam(value: string): string {
  return new URLSearchParams([["", value]]).toString().slice(1);
}

/**
 * Where a value stands in a text column, delimited so that only the whole value is replaced (an
 * erased `1` must not touch `31`), each with its replacement:
 * - `json`: a JSON string in a JSON column (an event message kept as a dead letter, a detail);
 * - `nested`: a JSON string inside a JSON string (the inbound log's body excerpt and messages,
 *   a dead-lettered inbound record);
 * - `param`: a URL-encoded parameter value (the inbound log's query and form excerpts), followed
 *   by the next parameter or the end of the string.
 */
export function textReplacements(target: ErasureTarget, forms: readonly ("json" | "nested" | "param")[]) {
  const pairs: [from: string, to: string][] = [];
  for (const value of target.values) {
    for (const form of forms) {
      if (form === "json") pairs.push([`"${inJsonString(value)}"`, `"${inJsonString(target.marker)}"`]);
      if (form === "nested") {
        pairs.push([
          `\\"${inJsonString(inJsonString(value))}\\"`,
          `\\"${inJsonString(inJsonString(target.marker))}\\"`,
        ]);
      }
      if (form === "param") {
        for (const end of ["&", '"']) pairs.push([`=${asParam(value)}${end}`, `=${asParam(target.marker)}${end}`]);
      }
    }
  }
  return pairs.filter(([from], index) => pairs.findIndex(([other]) => other === from) === index);
}

/**
 * A free-text column (a delivery attempt's error or the partner's answer): the value as it is, and
 * as a URL carries it. Undelimited, so only applied to the attempts of the erased conversions.
 */
export function freeTextReplacements(target: ErasureTarget): [from: string, to: string][] {
  const pairs: [string, string][] = [];
  for (const value of target.values) {
    for (const encode of [(v: string) => v, encodeURIComponent, asParam]) pairs.push([encode(value), target.marker]);
  }
  return pairs.filter(([from], index) => pairs.findIndex(([other]) => other === from) === index);
}
