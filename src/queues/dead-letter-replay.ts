/**
 * Dead-letter replay: a message a consumer gave up on goes back, as it was stored, to the queue it
 * came from (a dead-letter queue's messages to its main queue), once the reason it died is fixed.
 * Only a body that is a valid message of that queue goes back: many letters are there because
 * theirs was not, and sending one again would only make another letter. Every consumer is
 * idempotent, so a replayed message that had in fact been processed changes nothing.
 *
 * A deliveries letter names a delivery that its dead-letter queue's consumer marked dead: replaying
 * it replays that delivery (as POST /v1/deliveries/{id}/replay does), with its id kept.
 */
import type { z } from "zod";
import { ClickMessageSchema } from "../domain/click";
import { REPLAYABLE_STATES } from "../domain/delivery";
import { DeliveryMessageSchema, EventMessageSchema, RequestLogMessageSchema } from "../domain/messages";
import { ProblemError } from "../errors";
import type { D1 } from "../storage/d1";
import { type DeadLetterRow, getDeadLetter, markReplayed, unmarkReplayed } from "../storage/dead-letters";
import { getDelivery, replayDelivery } from "../storage/deliveries";
import { getPartner } from "../storage/partners";
import { type QueueNames, type QueueSource, queueSourceOf } from "./queue-names";

const MESSAGE_SCHEMAS: Record<QueueSource, z.ZodType> = {
  events: EventMessageSchema,
  deliveries: DeliveryMessageSchema,
  requests: RequestLogMessageSchema,
  clicks: ClickMessageSchema,
};

/** Issues named in a reason; the rest are counted. */
const MAX_ISSUES = 5;

export type DeadLetterVerdict =
  | { replayable: true; source: QueueSource; body: unknown }
  | { replayable: false; source: QueueSource | null; reason: string };

/** Whether the letter's body can go back to its queue, and if not, why. */
export function judgeDeadLetter(names: QueueNames, letter: Pick<DeadLetterRow, "queue" | "body">): DeadLetterVerdict {
  const source = queueSourceOf(names, letter.queue);
  if (source === null) {
    return { replayable: false, source, reason: `"${letter.queue}" is not one of this hub's queues` };
  }
  let body: unknown;
  try {
    body = JSON.parse(letter.body);
  } catch {
    return { replayable: false, source, reason: "its body is not JSON" };
  }
  const parsed = MESSAGE_SCHEMAS[source].safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((issue) => `${issue.path.join(".") || "(body)"}: ${issue.message}`);
    const more = issues.length > MAX_ISSUES ? `; and ${issues.length - MAX_ISSUES} more` : "";
    return {
      replayable: false,
      source,
      reason: `its body is not a valid ${source} message (${issues.slice(0, MAX_ISSUES).join("; ")}${more})`,
    };
  }
  return { replayable: true, source, body };
}

export interface DeadLetterReplayDeps {
  db: D1;
  names: QueueNames;
  /** Where each source's messages go: the main queue's producer. */
  queues: Record<QueueSource, Pick<Queue, "send">>;
  now?: () => number;
}

const AT = "path.dead_letter_id";

/**
 * Sends the letter's body back to its queue and marks it replayed. Refused, with nothing sent, when
 * it was replayed before (unless `force`), when its body is not a valid message of its queue, or
 * (deliveries) when its delivery is gone, delivered, or its partner is not active.
 */
export async function replayDeadLetter(deps: DeadLetterReplayDeps, id: string, force: boolean): Promise<DeadLetterRow> {
  const letter = await getDeadLetter(deps.db, id);
  if (!letter) throw new ProblemError("not_found", `No dead letter "${id}".`, [{ location: AT, message: "not found" }]);
  if (letter.replayed_at !== null && !force) {
    throw new ProblemError(
      "invalid_state",
      `Dead letter "${id}" was replayed at ${letter.replayed_at}; send {"force": true} to replay it again.`,
      [{ location: AT, message: `was replayed at ${letter.replayed_at}` }],
    );
  }
  const verdict = judgeDeadLetter(deps.names, letter);
  if (!verdict.replayable) {
    throw new ProblemError("not_replayable", `Dead letter "${id}" cannot be replayed: ${verdict.reason}.`, [
      { location: AT, message: verdict.reason },
    ]);
  }
  const deliveryId = verdict.source === "deliveries" ? DeliveryMessageSchema.parse(verdict.body).delivery_id : null;
  const rearm = deliveryId !== null && (await deliveryNeedsRearming(deps.db, id, deliveryId));

  const now = new Date((deps.now ?? Date.now)()).toISOString();
  const marked = await markReplayed(deps.db, id, letter.replayed_at, now);
  if (!marked) {
    throw new ProblemError("invalid_state", `Dead letter "${id}" was replayed by another request just now.`, [
      { location: AT, message: "was replayed just now" },
    ]);
  }
  try {
    if (rearm && deliveryId !== null && !(await replayDelivery(deps.db, deliveryId, now))) {
      throw new ProblemError("invalid_state", `Delivery "${deliveryId}" changed while it was being replayed.`, [
        { location: AT, message: "its delivery changed meanwhile; try again" },
      ]);
    }
    await deps.queues[verdict.source].send(verdict.body, { contentType: "json" });
  } catch (error) {
    await unmarkReplayed(deps.db, id, now, letter.replayed_at).catch(() => undefined);
    throw error;
  }
  return marked;
}

/**
 * Whether the letter's delivery must be re-armed before its message goes back (it is failed, dead
 * or parked); throws when replaying it cannot deliver anything. A delivery still moving needs
 * only the message (an extra one is harmless: its partner's coordinator holds a delivery once however often it is handed over).
 */
async function deliveryNeedsRearming(db: D1, letterId: string, deliveryId: string): Promise<boolean> {
  const { delivery } = await getDelivery(db, deliveryId);
  if (!delivery) {
    throw new ProblemError(
      "not_replayable",
      `Dead letter "${letterId}" cannot be replayed: delivery "${deliveryId}" no longer exists.`,
      [{ location: AT, message: `its delivery ${deliveryId} no longer exists` }],
    );
  }
  if (delivery.state === "delivered") {
    throw new ProblemError(
      "invalid_state",
      `Delivery "${deliveryId}" of dead letter "${letterId}" was delivered; there is nothing to replay.`,
      [{ location: AT, message: `its delivery ${deliveryId} was delivered` }],
    );
  }
  if (!(REPLAYABLE_STATES as readonly string[]).includes(delivery.state)) return false;
  const partner = await getPartner(db, delivery.partner_id);
  if (partner?.status !== "active") {
    throw new ProblemError(
      "partner_disabled",
      `The partner of delivery "${deliveryId}" is ${partner ? "disabled: enable it first" : "deleted"}.`,
      [{ location: AT, message: "its delivery's partner is not active" }],
    );
  }
  return true;
}
