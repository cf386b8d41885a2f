// (4) Ingest of duplicates: postbacks that (3) got accepted, re-sent with the same webhook-id and a
// fresh timestamp (so re-signed); spot-checked to answer "duplicate" first.
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
