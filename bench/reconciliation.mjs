#!/usr/bin/env node
// `npm run bench:reconciliation`: how long a reconciliation of a large report takes in a real
// `wrangler dev`: the upload (the CSV streamed in, checked and staged) and the background diff, as
// the report grows. The hub's side is seeded straight into the local D1 (N conversions of one
// network); the report names all but 0.5% of them, adds 0.5% the hub never saw, and differs in the
// amount of every 100th and the status of every 200th, so the diff's counts are checked as well as
// timed. GET /health is timed in the same run, for the ratio on a noisy machine. Sizes:
// BENCH_RECONCILIATION_SIZES (rows, comma-separated; default 10000,100000).
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { log } from "./lib/settings.mjs";
import { median } from "./lib/stats.mjs";
import { printTable } from "./lib/table.mjs";
import { ROOT, sleep, startWranglerDev } from "./lib/wrangler.mjs";

const SIZES = (process.env.BENCH_RECONCILIATION_SIZES ?? "10000,100000").split(",").map(Number);
const wrangler = path.join(ROOT, "node_modules/.bin/wrangler");
const SINCE = "2026-01-01T00:00:00.000Z";

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

const txId = (i) => `tx-${String(i).padStart(7, "0")}`;
const amountOf = (i) => `${i % 997}.${String(i % 100).padStart(2, "0")}`;

function seedSql(network, size) {
  return `INSERT INTO conversions (network_id, transaction_id, status, amount, currency, event_time, first_seen_at, updated_at, version, test)
    WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ${size - 1})
    SELECT '${network}', 'tx-' || printf('%07d', i), 'approved', (i % 997) || '.' || printf('%02d', i % 100),
      CASE i % 4 WHEN 0 THEN 'EUR' ELSE 'USD' END,
      strftime('%Y-%m-%dT%H:%M:%fZ', '${SINCE}', '+' || i || ' seconds'),
      strftime('%Y-%m-%dT%H:%M:%fZ', '${SINCE}', '+' || i || ' seconds'),
      strftime('%Y-%m-%dT%H:%M:%fZ', '${SINCE}', '+' || i || ' seconds'), 1, 0
    FROM seq;`;
}

function* reportLines(size) {
  yield "transaction_id,status,amount,currency\n";
  const kept = size - Math.floor(size / 200);
  for (let i = 0; i < kept; i++) {
    const amount = i % 100 === 1 ? `${(i % 997) + 1}.${String(i % 100).padStart(2, "0")}` : amountOf(i);
    const status = i % 200 === 2 ? "declined" : "approved";
    yield `${txId(i)},${status},${amount},${i % 4 === 0 ? "EUR" : "USD"}\n`;
  }
  for (let i = 0; i < Math.floor(size / 200); i++) yield `new-${i},approved,1.00,USD\n`;
}

function streamOf(lines) {
  const encoder = new TextEncoder();
  const iterator = lines[Symbol.iterator]();
  return new ReadableStream({
    pull(controller) {
      let chunk = "";
      for (let n = 0; n < 2000; n++) {
        const next = iterator.next();
        if (next.done) {
          if (chunk) controller.enqueue(encoder.encode(chunk));
          controller.close();
          return;
        }
        chunk += next.value;
      }
      controller.enqueue(encoder.encode(chunk));
    },
  });
}

async function health(hub) {
  const times = [];
  for (let i = 0; i < 7; i++) {
    const start = performance.now();
    await (await fetch(`${hub.baseUrl}/health`)).text();
    times.push(performance.now() - start);
  }
  return median(times);
}

async function main() {
  const hub = await startWranglerDev({ label: "bench-reconciliation" });
  const headers = { authorization: `Bearer ${hub.adminToken}` };
  const rows = [];
  try {
    for (const size of SIZES) {
      const network = `recon${size}`;
      const created = await fetch(`${hub.baseUrl}/v1/networks`, {
        method: "POST",
        headers: { ...headers, "content-type": "application/json" },
        body: JSON.stringify({ id: network, name: `Bench ${size}` }),
      });
      if (created.status !== 201) throw new Error(`network: ${created.status} ${await created.text()}`);
      log(`seeding ${size} conversions`);
      await d1(hub, seedSql(network, size));
      const baseline = await health(hub);
      const query = new URLSearchParams({ network_id: network, since: SINCE, until: "2027-01-01T00:00:00Z" });
      const start = performance.now();
      const response = await fetch(`${hub.baseUrl}/v1/reconciliations?${query}`, {
        method: "POST",
        headers: { ...headers, "content-type": "text/csv" },
        body: streamOf(reportLines(size)),
        duplex: "half",
      });
      const answer = await response.json();
      const uploadMs = performance.now() - start;
      if (response.status !== 202) throw new Error(`upload: ${response.status} ${JSON.stringify(answer)}`);
      let done;
      for (;;) {
        done = await (await fetch(`${hub.baseUrl}/v1/reconciliations/${answer.id}`, { headers })).json();
        if (done.state === "finished" || done.state === "failed") break;
        await sleep(100);
      }
      const totalMs = performance.now() - start;
      if (done.state !== "finished") throw new Error(`diff failed: ${done.error}`);
      const expected = {
        missing_in_hub: Math.floor(size / 200),
        missing_in_report: Math.floor(size / 200),
        amount: Math.ceil((size - Math.floor(size / 200) - 1) / 100),
        status: Math.ceil((size - Math.floor(size / 200) - 2) / 200),
      };
      for (const [name, count] of Object.entries(expected)) {
        if (done.differences[name] !== count) throw new Error(`${name}: ${done.differences[name]}, expected ${count}`);
      }
      const diffMs = totalMs - uploadMs;
      rows.push({
        size,
        uploadMs,
        diffMs,
        totalMs,
        baseline,
        differences: Object.values(done.differences).reduce((a, b) => a + b, 0),
      });
      log(`${size} rows: upload ${uploadMs.toFixed(0)} ms, diff ${diffMs.toFixed(0)} ms`);
    }
  } finally {
    await hub.stop();
  }
  printTable(
    [
      { header: "report rows", cell: (r) => String(r.size) },
      { header: "differences", cell: (r) => String(r.differences) },
      { header: "upload ms (202)", cell: (r) => r.uploadMs.toFixed(0) },
      { header: "diff ms (to finished)", cell: (r) => r.diffMs.toFixed(0) },
      { header: "rows/s end to end", cell: (r) => ((r.size / r.totalMs) * 1000).toFixed(0) },
      { header: "/health ms", cell: (r) => r.baseline.toFixed(1) },
      { header: "total / health", cell: (r) => (r.totalMs / r.baseline).toFixed(0) },
    ],
    rows,
  );
}

await main();
