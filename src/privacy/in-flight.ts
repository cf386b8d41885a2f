/**
 * Erasure's second half (docs/privacy.md): an event received before an erasure ran may still be
 * on its way to D1 (a queue's copy, a retry after a D1 outage, the dead-letter queue). The events
 * consumer passes every batch through `apply` before writing it: a value whose keyed hash names an
 * erasure, of that network or of all, whose latest run began after the event was received, is
 * erased from the message, and from the conversion's object, which rewrites its own copy and
 * attests it. Costs the batch's hashes and one indexed D1 read; an object call only on a match.
 */
import type { ConversionObject } from "../conversions/conversion-object";
import { conversionObjectName } from "../domain/conversion";
import {
  ERASABLE_IDENTIFIERS,
  ERASED_PREFIX,
  type ErasureTarget,
  eraseEventMessage,
  erasureMarker,
} from "../domain/erasure";
import type { EventMessage } from "../domain/messages";
import { identifierDigest } from "../lib/identifier-hash";
import type { D1 } from "../storage/d1";
import { erasuresOf } from "../storage/erasures";

export interface InFlightErasures {
  /** The messages as D1 may hold them. */
  apply(messages: readonly EventMessage[]): Promise<EventMessage[]>;
}

export function inFlightErasures(
  db: D1,
  key: () => Promise<CryptoKey>,
  conversions: { getByName(name: string): Pick<ConversionObject, "erase"> },
): InFlightErasures {
  return {
    async apply(messages) {
      const values: { index: number; target: Omit<ErasureTarget, "erasure_id" | "marker">; digest: string }[] = [];
      for (const [index, message] of messages.entries()) {
        for (const field of ERASABLE_IDENTIFIERS) {
          const seen = new Set([message.event[field], message.conversion[field]]);
          for (const value of seen) {
            if (typeof value !== "string" || value.startsWith(ERASED_PREFIX)) continue;
            values.push({
              index,
              target: { field, values: [value] },
              digest: await identifierDigest(await key(), field, value),
            });
          }
        }
      }
      const erasures = await erasuresOf(
        db,
        values.map((value) => value.digest),
      );
      if (erasures.length === 0) return [...messages];
      const result = [...messages];
      for (const { index, target, digest } of values) {
        const message = result[index];
        if (!message) continue;
        const erasure = erasures.find(
          (row) =>
            row.kind === target.field &&
            row.identifier_hash === digest &&
            (row.network_id === null || row.network_id === message.network_id) &&
            message.received_at <= row.last_run_at,
        );
        if (!erasure) continue;
        const full: ErasureTarget = { ...target, erasure_id: erasure.id, marker: erasureMarker(erasure.id) };
        const erased = eraseEventMessage(message, full);
        if (!erased) continue;
        await conversions
          .getByName(conversionObjectName(message.network_id, message.transaction_id, message.test))
          .erase(full);
        result[index] = erased;
      }
      return result;
    },
  };
}
