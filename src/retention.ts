/** Cron: prunes history older than HISTORY_RETENTION_DAYS (one D1 database holds at most 10 GB). */
import { configOf } from "./config";
import { pruneHistory } from "./storage/d1";

export async function runRetention(env: Env, nowMs: number): Promise<void> {
  const days = configOf(env).HISTORY_RETENTION_DAYS;
  const before = new Date(nowMs - days * 86_400_000).toISOString();
  const pruned = await pruneHistory(env.DB, before);
  console.log(JSON.stringify({ message: "retention", pruned, before }));
}
