/**
 * Sends items to a queue many to a message, after the answer: the request that finds no flush
 * scheduled in its isolate runs one (in its waitUntil, until nothing is left); the others only add
 * to what it sends. A queue operation per message, not per item, and no send before any answer.
 */
import { chunksBySize } from "./chunks";
import { logLine } from "./log";

export interface PackedSenderOptions<T, M> {
  /** How long items wait to be packed together. */
  flushEveryMs: number;
  itemsPerMessage: number;
  /** Under the queue's 128 KB message limit, with room for the envelope. */
  messageBytes: number;
  /** Items kept for a later flush when the queue refuses them; beyond that they are dropped, logged. */
  maxWaiting: number;
  message: (items: T[]) => M;
  /** Names what is lost in the log line of a refused send. */
  what: string;
}

/** The UTF-8 size one sendBatch stays under (the queue takes 256 KB a batch). */
const SEND_BYTES = 200_000;

export class PackedSender<T, M> {
  #waiting: T[] = [];
  #scheduled: Promise<void> | null = null;

  constructor(readonly options: PackedSenderOptions<T, M>) {}

  add(item: T): void {
    this.#waiting.push(item);
  }

  async scheduleFlush(queue: Pick<Queue<M>, "sendBatch">): Promise<void> {
    if (this.#scheduled) return;
    this.#scheduled = (async () => {
      while (this.#waiting.length > 0) {
        await new Promise((resolve) => setTimeout(resolve, this.options.flushEveryMs));
        if (!(await this.flush(queue))) break;
      }
    })().finally(() => {
      this.#scheduled = null;
    });
    await this.#scheduled;
  }

  /** Sends everything waiting; a refused send keeps it for the next flush, up to maxWaiting. */
  async flush(queue: Pick<Queue<M>, "sendBatch">): Promise<boolean> {
    const items = this.#waiting;
    this.#waiting = [];
    if (items.length === 0) return true;
    const messages = chunksBySize(items, this.options.itemsPerMessage, this.options.messageBytes).map(
      this.options.message,
    );
    let sent = 0;
    try {
      for (const batch of chunksBySize(messages, 100, SEND_BYTES)) {
        await queue.sendBatch(batch.map((body) => ({ body, contentType: "json" as const })));
        sent += batch.length;
      }
    } catch (error) {
      const unsent = chunksBySize(items, this.options.itemsPerMessage, this.options.messageBytes).slice(sent).flat();
      const room = Math.max(0, this.options.maxWaiting - this.#waiting.length);
      this.#waiting = [...unsent.slice(0, room), ...this.#waiting];
      logLine("warn", {
        message: `${this.options.what} send failed; kept for the next flush`,
        kept: Math.min(room, unsent.length),
        dropped: Math.max(0, unsent.length - room),
        error: String(error),
      });
      return false;
    }
    return true;
  }
}
