/**
 * Receipts from the events consumer to the conversions' outboxes: once D1 holds an event, its
 * object can drop the outbox row and stop re-sending it. A receipt that fails costs one more,
 * harmless, re-send (the consumer is idempotent), so failures are logged and never retried here.
 */
import type { ConversionObject } from "../conversions/conversion-object";
import { conversionObjectName } from "../domain/conversion";
import type { EventMessage } from "../domain/messages";
import { logLine } from "../lib/log";

export interface OutboxReceipts {
  confirm(events: readonly EventMessage[]): Promise<void>;
}

export function outboxReceipts(conversions: DurableObjectNamespace<ConversionObject>): OutboxReceipts {
  return {
    async confirm(events) {
      const byObject = new Map<string, string[]>();
      for (const event of events) {
        const name = conversionObjectName(event.network_id, event.transaction_id, event.test);
        const ids = byObject.get(name) ?? [];
        ids.push(event.event_id);
        byObject.set(name, ids);
      }
      const results = await Promise.allSettled(
        [...byObject].map(([name, ids]) => conversions.getByName(name).confirm(ids)),
      );
      const failed = results.filter((result) => result.status === "rejected");
      if (failed.length > 0) {
        logLine("warn", {
          message: "outbox receipts failed; those objects will re-send their events, harmlessly",
          failed: failed.length,
          objects: results.length,
          error: String(failed[0]?.reason),
        });
      }
    },
  };
}
