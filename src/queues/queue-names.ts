/**
 * The hub's queues by what they carry. Their names differ per deploy environment (the *_QUEUE_NAME
 * and *_DLQ_NAME vars), so the queue handler and dead-letter replay both ask here what a name is.
 */

/** What each queue carries: conversions' events, partner deliveries, the inbound log, clicks. */
export const QUEUE_SOURCES = ["events", "deliveries", "requests", "clicks"] as const;
export type QueueSource = (typeof QUEUE_SOURCES)[number];

/** A queue, or its dead-letter queue, or a name the hub does not know. */
export type QueueKind = QueueSource | `${QueueSource}-dlq` | "unknown";

export type QueueNames = Pick<
  Env,
  | "EVENTS_QUEUE_NAME"
  | "EVENTS_DLQ_NAME"
  | "DELIVERIES_QUEUE_NAME"
  | "DELIVERIES_DLQ_NAME"
  | "REQUESTS_QUEUE_NAME"
  | "REQUESTS_DLQ_NAME"
  | "CLICKS_QUEUE_NAME"
  | "CLICKS_DLQ_NAME"
>;

/** A source's queue and its dead-letter queue, by name. */
export function queueNamesOf(names: QueueNames, source: QueueSource): { queue: string; dlq: string } {
  switch (source) {
    case "events":
      return { queue: names.EVENTS_QUEUE_NAME, dlq: names.EVENTS_DLQ_NAME };
    case "deliveries":
      return { queue: names.DELIVERIES_QUEUE_NAME, dlq: names.DELIVERIES_DLQ_NAME };
    case "requests":
      return { queue: names.REQUESTS_QUEUE_NAME, dlq: names.REQUESTS_DLQ_NAME };
    case "clicks":
      return { queue: names.CLICKS_QUEUE_NAME, dlq: names.CLICKS_DLQ_NAME };
    default:
      throw new Error(`unhandled queue source ${source satisfies never}`);
  }
}

export function queueKind(names: QueueNames, name: string): QueueKind {
  for (const source of QUEUE_SOURCES) {
    const { queue, dlq } = queueNamesOf(names, source);
    if (name === queue) return source;
    if (name === dlq) return `${source}-dlq`;
  }
  return "unknown";
}

/** What a queue carries, its dead-letter queue's too (a DLQ's messages belong to its main queue); null when unknown. */
export function queueSourceOf(names: QueueNames, name: string): QueueSource | null {
  const kind = queueKind(names, name);
  if (kind === "unknown") return null;
  return kind.endsWith("-dlq") ? (kind.slice(0, -"-dlq".length) as QueueSource) : (kind as QueueSource);
}
