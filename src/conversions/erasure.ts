/**
 * What an erasure does to a conversion's own records (docs/privacy.md), as pure functions the
 * object applies inside one SQLite transaction: its dedupe fingerprints (which hold the material
 * fields), and the chain content of an outbox message, whose erased form the object attests.
 */
import {
  type ConversionFields,
  chainSourceOf,
  EVENT_SOURCES,
  type EventSource,
  FINGERPRINT_POSITIONAL_FIELDS,
  MATERIAL_FIELDS,
} from "../domain/conversion";
import type { ErasureTarget } from "../domain/erasure";
import type { EventMessage } from "../domain/messages";
import type { ChainContent } from "./chain";
import { fingerprint } from "./lifecycle";

/** The source a fingerprint is marked with (lifecycle.ts `fingerprint`), and the JSON after the mark. */
function splitFingerprint(print: string): { source: EventSource; text: string } {
  for (const source of EVENT_SOURCES) {
    if (source !== "s2s" && print.startsWith(`${source}:`)) return { source, text: print.slice(source.length + 1) };
  }
  return { source: "s2s", text: print };
}

/**
 * A fingerprint (lifecycle.ts `fingerprint`) with the target's value erased, or null when it holds
 * none. Read back into fields and written again, so it is what `fingerprint` makes of the erased
 * fields: a re-sent postback, whose value the object now replaces by the marker, is a duplicate.
 */
export function eraseFingerprint(print: string, target: ErasureTarget): string | null {
  const { source, text } = splitFingerprint(print);
  let parts: unknown;
  try {
    parts = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(parts)) return null;
  const fields: Record<string, unknown> = {};
  const positional = FINGERPRINT_POSITIONAL_FIELDS as readonly string[];
  positional.forEach((field, index) => {
    const value: unknown = parts[index];
    if (value === null || value === undefined) return;
    fields[field] = field === "meta" && Array.isArray(value) ? Object.fromEntries(value as [string, unknown][]) : value;
  });
  for (const pair of parts.slice(positional.length)) {
    if (!Array.isArray(pair) || typeof pair[0] !== "string") return null;
    const [field, value] = pair as [string, unknown];
    if ((MATERIAL_FIELDS as readonly string[]).includes(field)) fields[field] = value;
  }
  const value = fields[target.field];
  if (typeof value !== "string" || !target.values.includes(value)) return null;
  fields[target.field] = target.marker;
  return fingerprint(fields as ConversionFields, source);
}

/** What an outbox message's event hash covers (the object hashed exactly this when it recorded it). */
export function chainContentOf(message: EventMessage): ChainContent {
  return {
    network_id: message.network_id,
    transaction_id: message.transaction_id,
    test: message.test,
    seq: message.seq,
    event_id: message.event_id,
    verdict: message.verdict,
    received_at: message.received_at,
    event: message.event,
    prev_hash: message.prev_hash ?? null,
    source: chainSourceOf(message.source),
  };
}
