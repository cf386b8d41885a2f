// (1) GET /health, the baseline of every ratio, and (2) the edge checks alone: a signed postback
// with a negative amount runs authentication, the rate limit, JSON parsing and the zod schema, then
// answers 422 before any Durable Object call.
import { postbackBody } from "../lib/hub.mjs";
import { loadExpecting } from "../lib/load.mjs";
import { log, SETTINGS } from "../lib/settings.mjs";
import { signedPostback } from "../lib/sign.mjs";
import { medianOf } from "../lib/stats.mjs";
import { fmt } from "../lib/table.mjs";

export const HEALTH_POOL = [{ method: "GET", path: "/health" }];

export const edgePool = (networks) =>
  Array.from({ length: 5000 }, (_, i) =>
    signedPostback(networks[i % networks.length], postbackBody(`edge-${i}`, "-1.00")),
  );

/** Rounds of health then edge checks; answers `report.scenarios.edge`. */
export async function runEdge({ hub, pools }) {
  const rounds = [];
  for (let r = 1; r <= SETTINGS.ROUNDS; r++) {
    const health = await loadExpecting("health", hub.baseUrl, pools.health, 200);
    const edge = await loadExpecting("edge checks (422)", hub.baseUrl, pools.edge, 422);
    rounds.push({ health, edge, ratio: edge.rps / health.rps });
    log(
      `(2) round ${r}: health ${fmt(health.rps)} rps, edge ${fmt(edge.rps)} rps, ratio ${fmt(edge.rps / health.rps, 2)}`,
    );
  }
  return { rounds, ratio_median: medianOf(rounds, (x) => x.ratio) };
}
