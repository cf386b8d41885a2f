/** Postback Hub: wiring only. HTTP to the Hono app, queue batches to their consumers, cron to retention. */
import { createApp } from "./app";
import { consumeDeadLetters, consumeEvents } from "./queues/events-consumer";
import { runRetention } from "./retention";

export { ConversionObject } from "./conversions/conversion-object";

const app = createApp();

/** Queue names differ per deploy environment; the vars name them, the switch stays exhaustive. */
function queueKind(env: Env, name: string): "events" | "events-dlq" | "unknown" {
  if (name === env.EVENTS_QUEUE_NAME) return "events";
  if (name === env.EVENTS_DLQ_NAME) return "events-dlq";
  return "unknown";
}

export default {
  fetch: app.fetch,

  async queue(batch, env) {
    const kind = queueKind(env, batch.queue);
    switch (kind) {
      case "events":
        return consumeEvents(batch, env.DB);
      case "events-dlq":
        return consumeDeadLetters(batch, env.DB);
      case "unknown":
        throw new Error(`no consumer for queue ${batch.queue}`);
      default:
        throw new Error(`unhandled queue kind ${kind satisfies never}`);
    }
  },

  async scheduled(controller, env) {
    await runRetention(env, controller.scheduledTime);
  },
} satisfies ExportedHandler<Env>;
