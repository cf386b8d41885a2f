/**
 * Cron: prunes history and clicks older than HISTORY_RETENTION_DAYS (a chain only as far as its
 * conversion's object agrees, see operations/chain-retention.ts) and the inbound request log older than
 * INBOUND_LOG_RETENTION_DAYS (one D1 database holds at most 10 GB), in D1 and in the archive
 * (operations/archive.ts: the same ages, a day's objects at a time).
 */
import { configOf } from "../config";
import { logLine } from "../lib/log";
import { pruneHistory } from "../storage/d1";
import { pruneClicks } from "../storage/offers";
import { pruneInboundLog } from "../storage/requests";
import { pruneArchive } from "./archive";
import { cutChains, objectCutter } from "./chain-retention";

const DAY_MS = 86_400_000;

export async function runRetention(env: Env, nowMs: number): Promise<void> {
  const config = configOf(env);
  const before = new Date(nowMs - config.HISTORY_RETENTION_DAYS * DAY_MS).toISOString();
  // Chained events first, each conversion's object agreeing to its cut; then what has no chain.
  const cutter = objectCutter(env.CONVERSIONS);
  const chains = await cutChains(env.DB, cutter, before);
  const unchained = await pruneHistory(env.DB, before);
  const pruned = { ...unchained, events: unchained.events + chains.events, clicks: await pruneClicks(env.DB, before) };
  const logBefore = new Date(nowMs - config.INBOUND_LOG_RETENTION_DAYS * DAY_MS).toISOString();
  const log = await pruneInboundLog(env.DB, logBefore);
  // The archive's share last: R2 being down must not keep D1's retention from running or being logged.
  const archive = await pruneArchive({ db: env.DB, bucket: env.ARCHIVE, cutter, nowMs }, before, logBefore).catch(
    (error: unknown) => ({ failed: String(error) }),
  );
  logLine("info", {
    message: "retention",
    pruned,
    chains,
    before,
    inbound_log: log,
    inbound_log_before: logBefore,
    archive,
  });
}
