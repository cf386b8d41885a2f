// (3) Ingest of new conversions: every request a fresh transaction, against two cost floors run by
// bench/floor/ (a new Durable Object and one row; the same plus the outbox's queue hop).
import { postbackBody } from "../lib/hub.mjs";
import { loadExpecting } from "../lib/load.mjs";
import { log, SETTINGS } from "../lib/settings.mjs";
import { signedPostback } from "../lib/sign.mjs";
import { batchSummary, medianOf } from "../lib/stats.mjs";
import { fmt } from "../lib/table.mjs";
import { sleep } from "../lib/wrangler.mjs";

/** Accepted postbacks kept for (4) to re-send. */
const KEEP_ACCEPTED_PER_ROUND = 5000;

export const floorPool = () =>
  Array.from({ length: 1000 }, (_, i) => ({
    method: "POST",
    path: "/ingest",
    headers: { "content-type": "application/json" },
    body: postbackBody(`floor-${i}`),
  }));

/** The same floor plus the outbox's queue hop (bench/floor/index.js): explains (3), not its goal. */
export const queuedFloorPool = (floor) => floor.map((request) => ({ ...request, path: "/ingest-queued" }));

/** SETTINGS.NEW_POOL distinct signed postbacks for round `round`. */
export const newConversionsPool = (networks, round) =>
  Array.from({ length: SETTINGS.NEW_POOL }, (_, i) =>
    signedPostback(networks[i % networks.length], postbackBody(`new-r${round}-${i}`)),
  );

/**
 * Rounds of health, floor, floor with the queue hop, then new conversions; answers
 * `report.scenarios.ingest_new` and the postbacks it got accepted.
 */
export async function runIngestNew({ hub, floor, queue, pools }) {
  queue.take();
  const accepted = [];
  const rounds = [];
  for (let r = 1; r <= SETTINGS.ROUNDS; r++) {
    const health = await loadExpecting("health", hub.baseUrl, pools.health, 200);
    const floorRun = await loadExpecting("floor", floor.baseUrl, pools.floor, 200);
    const queuedFloorRun = await loadExpecting("floor with a queue hop", floor.baseUrl, pools.queuedFloor, 200);
    const pool = pools.newConversions(r);
    const ingest = await loadExpecting("ingest new", hub.baseUrl, pool, 200);
    if (ingest.wrapped) log(`(3) round ${r}: the pool of ${SETTINGS.NEW_POOL} ran out; some requests were duplicates`);
    accepted.push(...pool.slice(0, Math.min(ingest.total, KEEP_ACCEPTED_PER_ROUND)));
    rounds.push({
      health,
      floor: floorRun,
      floor_queued: queuedFloorRun,
      ingest,
      ratio_health: ingest.rps / health.rps,
      ratio_floor: ingest.rps / floorRun.rps,
      ratio_floor_queued: ingest.rps / queuedFloorRun.rps,
    });
    log(
      `(3) round ${r}: health ${fmt(health.rps)}, floor ${fmt(floorRun.rps)}, floor + queue ${fmt(queuedFloorRun.rps)}, ingest ${fmt(ingest.rps)} rps (p50 ${ingest.p50_ms} ms, p99 ${ingest.p99_ms} ms)`,
    );
  }
  // The consumer's last batches of this load arrive after it.
  await sleep(3000);
  const ingestNew = {
    rounds,
    ratio_health_median: medianOf(rounds, (x) => x.ratio_health),
    ratio_floor_median: medianOf(rounds, (x) => x.ratio_floor),
    ratio_floor_queued_median: medianOf(rounds, (x) => x.ratio_floor_queued),
    events_batches_under_load: batchSummary(queue.take()),
  };
  return { ingestNew, accepted };
}
