/** Hands messages to the Worker's queue handler as one batch of `queue`, and expects it acked. */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect } from "vitest";
import worker from "../../src/index";

let messageCounter = 0;

export async function deliverAcked(queue: string, bodies: unknown[]): Promise<void> {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `queued-${++messageCounter}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  const handler: ExportedHandler<Env> = worker;
  await handler.queue?.(batch, env, ctx);
  const result = await getQueueResult(batch, ctx);
  expect(result.ackAll, `batch on ${queue} not acked`).toBe(true);
}
