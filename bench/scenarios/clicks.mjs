// (7) The click redirect: GET /c/{offer_id}?p={partner_id}&sub1=… from a browser's User-Agent, a
// 302 to the landing page with a new click id, each click counted (sent to the CLICKS queue after
// the answer). Its budget is the isolate's cache and one HMAC: no D1 query, no Durable Object
// call before the answer, so it should run near /health, measured in alternating rounds.
import { loadExpecting } from "../lib/load.mjs";
import { log, SETTINGS } from "../lib/settings.mjs";
import { medianOf } from "../lib/stats.mjs";
import { fmt } from "../lib/table.mjs";

const BROWSER_UA =
  "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/** Clicks spread over a few partners' links, with sub ids, as a browser sends them. */
export const clicksPool = (offerId, partnerIds) =>
  Array.from({ length: 1000 }, (_, i) => ({
    method: "GET",
    path: `/c/${offerId}?p=${partnerIds[i % partnerIds.length]}&sub1=bench-${i % 17}&sub2=creative-${i % 5}`,
    headers: { "user-agent": BROWSER_UA, referer: "https://blog.example/review" },
  }));

/** Rounds of health then clicks; answers `report.scenarios.clicks`. */
export async function runClicks({ hub, pools }) {
  const rounds = [];
  for (let r = 1; r <= SETTINGS.ROUNDS; r++) {
    const health = await loadExpecting("health", hub.baseUrl, pools.health, 200);
    const clicks = await loadExpecting("click redirect (302)", hub.baseUrl, pools.clicks, 302);
    rounds.push({ health, clicks, ratio: clicks.rps / health.rps });
    log(
      `(7) round ${r}: health ${fmt(health.rps)} rps, clicks ${fmt(clicks.rps)} rps, ratio ${fmt(clicks.rps / health.rps, 2)}`,
    );
  }
  return { rounds, ratio_median: medianOf(rounds, (x) => x.ratio) };
}
