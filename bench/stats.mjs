#!/usr/bin/env node
// `npm run bench:stats`: how long GET /v1/stats takes over a year of roll-ups, as conversions grow.
// The roll-ups (stats_conversions_hourly) are seeded straight into the local D1 of a real `wrangler
// dev` (both of them: by every dimension, and without sub1) in two shapes: "typical" (4 conversions per roll-up row: a year of hours × networks, offers,
// partners, countries, devices, statuses and a few sub1 values) and "worst" (1 conversion per row,
// as when every conversion carries its own sub1). Each query is timed over HTTP, median of
// BENCH_STATS_REPEATS, beside GET /health measured in the same run (the ratio holds on a noisy
// machine). Sizes: BENCH_STATS_SIZES (conversions, comma-separated; default 100000,300000,1000000).
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { log } from "./lib/settings.mjs";
import { median } from "./lib/stats.mjs";
import { printTable } from "./lib/table.mjs";
import { ROOT, startWranglerDev } from "./lib/wrangler.mjs";

const SIZES = (process.env.BENCH_STATS_SIZES ?? "100000,300000,1000000").split(",").map(Number);
const REPEATS = Number(process.env.BENCH_STATS_REPEATS ?? 5);
const HOURS = 8760;
const SHAPES = { typical: 4, worst: 1 };
const QUERIES = {
  "year totals": "",
  "by day": "group_by=day",
  "by day, Europe/Paris": "group_by=day&time_zone=Europe/Paris",
  "by network, partner": "group_by=network,partner",
  "by country, one network": "group_by=country&network_id=net1",
  "by status, offer": "group_by=status,offer",
  "by sub1, one network, January": "group_by=sub1&network_id=net1&until=2026-02-01",
};

const LEAN_KEY = `hour, test, network_id, offer_id, campaign_id, partner_id, platform, country, device, event_type,
  status, amount_currency, revenue_currency, payout_currency`;

const wrangler = path.join(ROOT, "node_modules/.bin/wrangler");

async function d1(hub, sql) {
  await promisify(execFile)(
    wrangler,
    ["d1", "execute", "DB", "--local", "--persist-to", hub.stateDir, "--command", sql],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        PATH: `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH}`,
        CI: "true",
      },
      maxBuffer: 16 * 1024 * 1024,
    },
  );
}

/** `rows` roll-up rows of `perRow` conversions each, spread over 2026's hours; each row's key unique. */
function seedSql(rows, perRow) {
  return `DELETE FROM stats_conversions_hourly; DELETE FROM stats_conversions_by_sub1_hourly;
    INSERT INTO stats_conversions_by_sub1_hourly
    WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${rows - 1})
    SELECT strftime('%Y-%m-%dT%H', '2026-01-01', '+' || (i % ${HOURS}) || ' hours'), 0,
      'net' || (i % 5), 'off' || (i % 20), 'cmp' || (i % 20), 'ptn' || (i % 30),
      CASE i % 3 WHEN 0 THEN 'ios' WHEN 1 THEN 'android' ELSE 'web' END,
      CASE i % 10 WHEN 0 THEN 'US' WHEN 1 THEN 'FR' WHEN 2 THEN 'DE' WHEN 3 THEN 'GB' WHEN 4 THEN 'BR'
        WHEN 5 THEN 'IN' WHEN 6 THEN 'JP' WHEN 7 THEN 'ES' WHEN 8 THEN 'IT' ELSE 'CA' END,
      CASE i % 3 WHEN 0 THEN 'mobile' WHEN 1 THEN 'desktop' ELSE 'tablet' END,
      'sale', CASE i % 7 WHEN 0 THEN 'declined' WHEN 1 THEN 'pending' ELSE 'approved' END,
      'sub' || (i / ${HOURS}), CASE i % 4 WHEN 0 THEN 'EUR' ELSE 'USD' END,
      CASE i % 4 WHEN 0 THEN 'EUR' ELSE 'USD' END, CASE i % 4 WHEN 0 THEN 'EUR' ELSE 'USD' END,
      ${perRow}, ${perRow} * 29, ${perRow} * 99000000, ${perRow} * 5, 0, ${perRow} * 2, ${perRow} * 50000000,
      0, 0, 0
    FROM seq;
    INSERT INTO stats_conversions_hourly
    SELECT ${LEAN_KEY}, sum(conversions), sum(amount_integer), sum(amount_fraction), sum(revenue_integer),
      sum(revenue_fraction), sum(payout_integer), sum(payout_fraction), sum(amount_high), sum(revenue_high),
      sum(payout_high)
    FROM stats_conversions_by_sub1_hourly GROUP BY ${LEAN_KEY};`;
}

async function timed(url, headers) {
  const start = performance.now();
  const response = await fetch(url, { headers });
  const body = await response.text();
  const ms = performance.now() - start;
  if (response.status !== 200) throw new Error(`${url}: ${response.status} ${body.slice(0, 300)}`);
  return { ms, body };
}

async function main() {
  const hub = await startWranglerDev({ label: "bench-stats" });
  const headers = { authorization: `Bearer ${hub.adminToken}` };
  const rows = [];
  try {
    for (const conversions of SIZES) {
      for (const [shape, perRow] of Object.entries(SHAPES)) {
        const rollupRows = Math.ceil(conversions / perRow);
        log(`seeding ${rollupRows} roll-up rows (${conversions} conversions, ${shape})`);
        await d1(hub, seedSql(rollupRows, perRow));
        const period = "since=2026-01-01&until=2027-01-01";
        for (const [name, query] of Object.entries(QUERIES)) {
          const range = query.includes("until=") ? "since=2026-01-01" : period;
          const url = `${hub.baseUrl}/v1/stats?${range}${query ? `&${query}` : ""}`;
          await timed(url, headers); // warm: the isolate, D1's page cache
          const health = [];
          const stats = [];
          let groups = 0;
          let total = 0;
          for (let i = 0; i < REPEATS; i++) {
            health.push((await timed(`${hub.baseUrl}/health`, {})).ms);
            const run = await timed(url, headers);
            stats.push(run.ms);
            const parsed = JSON.parse(run.body);
            groups = parsed.data.length;
            total = parsed.totals.conversions;
          }
          if (!query.includes("=net") && !query.includes("time_zone") && total !== conversions)
            throw new Error(`${name}: counted ${total} conversions, seeded ${conversions}`);
          rows.push({
            conversions,
            shape,
            rollupRows,
            name,
            groups,
            stats: median(stats),
            health: median(health),
          });
          log(`${conversions} ${shape} ${name}: ${median(stats).toFixed(0)} ms (${groups} groups)`);
        }
      }
    }
  } finally {
    await hub.stop();
  }
  printTable(
    [
      { header: "conversions", cell: (r) => String(r.conversions) },
      { header: "shape", cell: (r) => r.shape },
      { header: "roll-up rows", cell: (r) => String(r.rollupRows) },
      { header: "query", cell: (r) => r.name },
      { header: "groups", cell: (r) => String(r.groups) },
      { header: "stats ms (median)", cell: (r) => r.stats.toFixed(0) },
      { header: "/health ms", cell: (r) => r.health.toFixed(1) },
      { header: "ratio", cell: (r) => (r.stats / r.health).toFixed(0) },
      { header: "under 1 s", cell: (r) => (r.stats < 1000 ? "yes" : "NO") },
    ],
    rows,
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
