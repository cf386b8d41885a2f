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
 * A conversion's fields after an erasure, for an event decided later: once a field of a conversion
 * was erased, any value it brings for that field is replaced by the marker (one transaction is one
 * person's conversion). So a network that re-sends an erased postback gets `duplicate`, and a
 * status update applies without bringing the value back.
 */
export function keepErased(fields: ConversionFields, erased: Readonly<Partial<Record<ErasableIdentifier, string>>>) {
  let kept = fields;
  for (const field of ERASABLE_IDENTIFIERS) {
    const marker = erased[field];
    if (marker !== undefined && kept[field] !== undefined && kept[field] !== marker)
      kept = { ...kept, [field]: marker };
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
