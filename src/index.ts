/** Postback Hub: wiring only. HTTP to the Hono app, queue batches to their consumers, crons to operations. */
import { alertTarget, resendDueAlerts } from "./alerts/alerts";
import { evaluateAlertRules } from "./alerts/rules";
import { createApp } from "./app";
import { configOf } from "./config";
import { STATS_BACKFILL_PAGE } from "./domain/stats";
import { hmacKey } from "./lib/keys";
import { logLine } from "./lib/log";
import { archiveOldRows } from "./operations/archive";
import { resumeStalledReplays } from "./operations/replays";
import { runRetention } from "./operations/retention";
import { requeueStrandedDeliveries } from "./operations/sweep";
import { inFlightErasures } from "./privacy/in-flight";
import { consumeClickDeadLetters, consumeClicks } from "./queues/clicks-consumer";
import type { Coordinators } from "./queues/coordinator-handover";
import { consumeDeliveries, consumeDeliveryDeadLetters } from "./queues/delivery-consumer";
import { consumeDeadLetters, consumeEvents } from "./queues/events-consumer";
import { outboxReceipts } from "./queues/outbox-receipts";
import { queueKind } from "./queues/queue-names";
import { consumeRequestLog, consumeRequestLogDeadLetters } from "./queues/requests-consumer";
import { reconciliationUpkeep } from "./reports/reconciliations";
import { markAttempts } from "./storage/attempt-marks";
import { backfillStatsPage } from "./storage/stats";

export { ConversionObject } from "./conversions/conversion-object";
export { PartnerCoordinator } from "./coordinator/partner-coordinator";
export { ReplayJobObject } from "./operations/replay-object";
export { ReconciliationJobObject } from "./reports/reconciliation-object";

const app = createApp();

const RETENTION_CRON = "17 3 * * *";

async function consumeBatch(batch: MessageBatch, env: Env): Promise<void> {
  const kind = queueKind(env, batch.queue);
  const config = configOf(env);
  const coordinators: Coordinators = {
    submit: (partnerId, items) => env.COORDINATORS.getByName(partnerId).submit(partnerId, items),
  };
  const eventsDeps = () => ({
    db: env.DB,
    coordinators,
    deliveries: env.DELIVERIES,
    receipts: outboxReceipts(env.CONVERSIONS),
    clickKey: () => hmacKey(config.ENCRYPTION_KEY, "click-id v1"),
    erasures: inFlightErasures(env.DB, () => hmacKey(config.ENCRYPTION_KEY, "identifier-hash v1"), env.CONVERSIONS),
  });
  switch (kind) {
    case "events":
      return consumeEvents(batch, eventsDeps());
    case "events-dlq":
      return consumeDeadLetters(batch, eventsDeps());
    case "deliveries":
      return consumeDeliveries(batch, { db: env.DB, coordinators });
    case "deliveries-dlq":
      return consumeDeliveryDeadLetters(batch, env.DB);
    case "requests":
      return consumeRequestLog(batch, env.DB);
    case "requests-dlq":
      return consumeRequestLogDeadLetters(batch, env.DB);
    case "clicks":
      return consumeClicks(batch, env.DB, () => hmacKey(config.ENCRYPTION_KEY, "identifier-hash v1"));
    case "clicks-dlq":
      return consumeClickDeadLetters(batch, env.DB, () => hmacKey(config.ENCRYPTION_KEY, "identifier-hash v1"));
    case "unknown":
      throw new Error(`no consumer for queue ${batch.queue}`);
    default:
      throw new Error(`unhandled queue kind ${kind satisfies never}`);
  }
}

function batchLine(batch: MessageBatch, startedAtMs: number, outcome: "ok" | "retried") {
  return {
    message: "queue batch",
    queue: batch.queue,
    messages: batch.messages.length,
    outcome,
    duration_ms: Date.now() - startedAtMs,
  };
}

export default {
  fetch: app.fetch,

  /** One log line per batch (docs/troubleshooting.md, "Logs"): the queue, its size, how it ended. */
  async queue(batch, env) {
    const startedAtMs = Date.now();
    try {
      await consumeBatch(batch, env);
      logLine("info", batchLine(batch, startedAtMs, "ok"));
    } catch (error) {
      logLine("error", { ...batchLine(batch, startedAtMs, "retried"), error: String(error) });
      throw error;
    }
  },

  async scheduled(controller, env) {
    if (controller.cron === RETENTION_CRON) {
      // Archive before prune: the archive leaves alone what retention is about to delete.
      await archiveOldRows(env, controller.scheduledTime);
      await runRetention(env, controller.scheduledTime);
    } else {
      await markAttempts(env.DB);
      await evaluateAlertRules({ db: env.DB, target: alertTarget(configOf(env)) }, controller.scheduledTime);
      await resendDueAlerts(env.DB, alertTarget(configOf(env)), controller.scheduledTime);
      await requeueStrandedDeliveries(
        env.DB,
        env.DELIVERIES,
        controller.scheduledTime,
        configOf(env).DELIVERY_SWEEP_AFTER_SECONDS * 1000,
      );
      await resumeStalledReplays(env.DB, env.REPLAY_JOBS, controller.scheduledTime);
      await reconciliationUpkeep({ db: env.DB, runners: env.RECONCILIATION_JOBS }, controller.scheduledTime);
      // Conversions recorded before the stats roll-ups existed: counted a page per minute.
      await backfillStatsPage(env.DB, STATS_BACKFILL_PAGE);
      // A bounded step of the archive, so a busy day's rows leave D1 within the day.
      await archiveOldRows(env, controller.scheduledTime);
    }
  },
} satisfies ExportedHandler<Env>;
