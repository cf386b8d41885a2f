// (4) Ingest of duplicates: postbacks that (3) got accepted, re-sent with the same webhook-id and a
// fresh timestamp (so re-signed); spot-checked to answer "duplicate" first, then each sent once
// before the rounds (the storm's first repeat).
import { loadExpecting } from "../lib/load.mjs";
import { log, SETTINGS } from "../lib/settings.mjs";
import { messageId, signedPostback } from "../lib/sign.mjs";
import { medianOf } from "../lib/stats.mjs";
import { fmt } from "../lib/table.mjs";

export function duplicatesPool(networks, accepted) {
  return accepted.map((request) => {
    const network = networks.find((n) => request.path.endsWith(`/${n.id}`));
    return signedPostback(network, request.body, request.headers["webhook-id"] ?? messageId());
  });
}

/** Rounds of health then duplicates; answers `report.scenarios.duplicate`. */
export async function runDuplicates({ hub, pools }) {
  const [first] = pools.duplicates;
  const spot = await (await fetch(`${hub.baseUrl}${first.path}`, first)).json();
  if (spot.status !== "duplicate") throw new Error(`duplicate spot check: ${JSON.stringify(spot)}`);
  // A network's retries come seconds after the original, whose answer the isolate keeps
  // (DUPLICATE_CACHE_SECONDS): (3) accepted these minutes ago, so each is sent once first, as the
  // storm's first repeat would be, and the rounds measure the repeats after it.
  const primed = Date.now();
  for (let i = 0; i < pools.duplicates.length; i += 10) {
    await Promise.all(
      pools.duplicates.slice(i, i + 10).map(async (request) => {
        const response = await fetch(`${hub.baseUrl}${request.path}`, request);
        await response.arrayBuffer();
        if (response.status !== 200) throw new Error(`duplicate priming: ${response.status}`);
      }),
    );
  }
  log(`(4) sent each of the ${pools.duplicates.length} duplicates once first, in ${Date.now() - primed} ms`);
  const rounds = [];
  for (let r = 1; r <= SETTINGS.ROUNDS; r++) {
    const health = await loadExpecting("health", hub.baseUrl, pools.health, 200);
    const duplicate = await loadExpecting("duplicates", hub.baseUrl, pools.duplicates, 200);
    rounds.push({ health, duplicate, ratio: duplicate.rps / health.rps });
    log(
      `(4) round ${r}: health ${fmt(health.rps)}, duplicates ${fmt(duplicate.rps)} rps, ratio ${fmt(duplicate.rps / health.rps, 2)}`,
    );
  }
  return { rounds, ratio_median: medianOf(rounds, (x) => x.ratio) };
}
