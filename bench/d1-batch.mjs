#!/usr/bin/env node
// `npm run bench:d1`: D1 batch write time per event as batches grow, in workerd against local D1
// (`wrangler dev` of bench/d1/, the hub's migrations applied first). Each event is what the events
// consumer writes for it: its conversion_events row, its conversions upsert and one deliveries row
// (3 statements, built by the hub's own functions: bench/d1/index.ts). Per round, every batch size
// (1, 10, 50, 100, 500 events) writes about BENCH_D1_EVENTS events (default 2000), the order of
// sizes rotating round by round (the tables grow as the run goes); BENCH_D1_ROUNDS rounds
// (default 3), medians reported, each size's events per second over batch size 1's in the same
// round. Local SQLite on this machine's disk, not D1's production latency (a primary in one region,
// a network hop away, its durability): the ratios say how batching amortises per-call cost, not
// what a deployed database sustains.
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { BATCH_SIZES, batchesFor, batchRows } from "./lib/d1-batch.mjs";
import { log } from "./lib/settings.mjs";
import { fmt, printTable } from "./lib/table.mjs";
import { ROOT, startWranglerDev } from "./lib/wrangler.mjs";

const EVENTS = Number(process.env.BENCH_D1_EVENTS ?? 2000);
const ROUNDS = Number(process.env.BENCH_D1_ROUNDS ?? 3);

const dev = await startWranglerDev({ label: "bench-d1", config: path.join(ROOT, "bench/d1/wrangler.toml") });
try {
  const run = async (size, batches) => {
    const response = await fetch(`${dev.baseUrl}/run?size=${size}&batches=${batches}`, { method: "POST" });
    if (!response.ok) throw new Error(`/run?size=${size} answered ${response.status}: ${await response.text()}`);
    return response.json();
  };
  await run(10, 5); // warm-up: the isolate, the prepared statements, SQLite's pages
  const runs = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = BATCH_SIZES.map((_, i) => BATCH_SIZES[(i + round) % BATCH_SIZES.length]);
    for (const size of order) {
      const result = await run(size, batchesFor(size, EVENTS));
      log(`round ${round + 1}: ${size} events a batch, ${result.events} events in ${result.elapsedMs} ms`);
      runs.push({ round, ...result });
    }
  }
  const rows = batchRows(runs);
  console.log(
    `\nD1 batch() of the events consumer's writes (3 statements an event), local D1 under wrangler dev, ${ROUNDS} rounds of ~${EVENTS} events per size (${os.cpus().length} CPUs, Node ${process.version}); medians:\n`,
  );
  printTable(
    [
      { header: "events/batch", cell: (r) => r.size },
      { header: "statements/batch", cell: (r) => r.statementsPerBatch },
      { header: "ms/batch", cell: (r) => fmt(r.msPerBatch, 2) },
      { header: "ms/event", cell: (r) => fmt(r.msPerEvent, 3) },
      { header: "ms/statement", cell: (r) => fmt(r.msPerStatement, 3) },
      { header: "events/s", cell: (r) => fmt(r.eventsPerSecond, 0) },
      { header: "÷ size 1", cell: (r) => fmt(r.ratio, 2) },
      { header: "D1 rows written/event", cell: (r) => fmt(r.rowsWrittenPerEvent, 1) },
    ],
    rows,
  );
  const results = path.join(ROOT, "bench/results");
  await mkdir(results, { recursive: true });
  const file = path.join(results, `d1-batch-${new Date().toISOString().replaceAll(":", "-")}.json`);
  await writeFile(file, JSON.stringify({ events: EVENTS, rounds: ROUNDS, rows, runs }, null, 2));
  console.log(`\n${path.relative(ROOT, file)}`);
} finally {
  await dev.stop();
}
