/**
 * Cron: prunes history older than HISTORY_RETENTION_DAYS and the inbound request log older than
 * INBOUND_LOG_RETENTION_DAYS (one D1 database holds at most 10 GB).
 */
import { configOf } from "./config";
import { pruneHistory } from "./storage/d1";
import { pruneInboundLog } from "./storage/requests";

const DAY_MS = 86_400_000;

export async function runRetention(env: Env, nowMs: number): Promise<void> {
  const config = configOf(env);
  const before = new Date(nowMs - config.HISTORY_RETENTION_DAYS * DAY_MS).toISOString();
  const pruned = await pruneHistory(env.DB, before);
  const logBefore = new Date(nowMs - config.INBOUND_LOG_RETENTION_DAYS * DAY_MS).toISOString();
  const log = await pruneInboundLog(env.DB, logBefore);
  console.log(
    JSON.stringify({ message: "retention", pruned, before, inbound_log: log, inbound_log_before: logBefore }),
  );
}
