/** Cron: prunes event history older than HISTORY_RETENTION_DAYS (D1 holds at most 10 GB). */
import { configOf } from "./config";
import { pruneEvents } from "./storage/d1";

export async function runRetention(env: Env, nowMs: number): Promise<void> {
  const days = configOf(env).HISTORY_RETENTION_DAYS;
  const before = new Date(nowMs - days * 86_400_000).toISOString();
  const pruned = await pruneEvents(env.DB, before);
  console.log(JSON.stringify({ message: "retention", pruned_events: pruned, before }));
}
