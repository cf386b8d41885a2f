#!/usr/bin/env node
// `npm run bench:cost [-- --n 1000 --rate 40 --concurrency 8 --monthly 1000000 --write] [--rich]`: what a million
// conversions cost today, counted, not estimated. Starts the hub under `wrangler dev` through
// bench/cost/ (the hub wrapped in counters: see bench/cost/index.ts), with one network, one filter
// partner receiving everything and one attributed partner (a local HTTP server answering 200 for
// both), then posts N conversions in the mix of bench/lib/cost.mjs at --rate postbacks a second,
// waits for the pipeline to drain, runs each cron once, and prices the counts with
// bench/prices.json. --write puts the section into BENCHMARKS.md. See BENCHMARKS.md, "bench:cost".
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { startPartnerServer } from "../test/e2e/partner-server.ts";
import {
  addCounts,
  conversionsPerDatabase,
  costRows,
  DOLLARS_COLUMNS,
  describeMix,
  diffCounts,
  MIX,
  mixOf,
  monthlyBill,
  OPERATIONS_COLUMNS,
  replaceSection,
  STATEMENT_COLUMNS,
  scaleCounts,
  tableLines,
  topStatements,
} from "./lib/cost.mjs";
import { writeCostConfig } from "./lib/cost-config.mjs";
import { admin } from "./lib/hub.mjs";
import { log, machine, started } from "./lib/settings.mjs";
import { signedPostback, signer } from "./lib/sign.mjs";
import { ROOT, sleep, startWranglerDev } from "./lib/wrangler.mjs";

const { values: args } = parseArgs({
  options: {
    n: { type: "string", default: "1000" },
    rate: { type: "string", default: "40" },
    concurrency: { type: "string", default: "8" },
    monthly: { type: "string", default: "1000000" },
    write: { type: "boolean", default: false },
    // Postbacks as an app-install network sends them (user and device ids, a dozen meta fields):
    // the rows, and so D1's bytes per conversion, of a rich postback rather than a minimal one.
    rich: { type: "boolean", default: false },
  },
});
const N = Number(args.n);
const RATE = Number(args.rate);
/** Requests in flight at once (clicks and postbacks). */
const IN_FLIGHT = Number(args.concurrency);
const MONTHLY = Number(args.monthly);
const BROWSER_UA =
  "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15";
/** The pipeline is drained when no count moved for this long (the inbound log's batches wait up to 5 s). */
const QUIET_MS = 8_000;
const DRAIN_TIMEOUT_MS = 180_000;
/** Cron runs per 30-day month, from wrangler.toml's triggers. */
const CRON_RUNS_PER_MONTH = { "*/15 * * * *": 30 * 24 * 4, "17 3 * * *": 30 };

async function counts(hub) {
  const response = await fetch(`${hub.baseUrl}/__cost/counts`);
  if (!response.ok) throw new Error(`counts: ${response.status} ${await response.text()}`);
  return response.json();
}

/** Waits until no count has moved for QUIET_MS (and `ready()` holds); answers the last snapshot. */
async function drained(hub, ready = () => true) {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let last = JSON.stringify((await counts(hub)).counts);
  let quietSince = Date.now();
  for (;;) {
    await sleep(1000);
    const now = await counts(hub);
    const text = JSON.stringify(now.counts);
    if (text !== last) {
      last = text;
      quietSince = Date.now();
    } else if (Date.now() - quietSince >= QUIET_MS && ready()) return now;
    if (Date.now() > deadline) throw new Error("the pipeline did not drain within 3 minutes");
  }
}

/** Runs `task` over `items`, IN_FLIGHT at a time. */
async function pool(items, task) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await task(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, items.length) }, worker));
}

/** Sends `requests` at RATE a second, IN_FLIGHT at most; every answer must be a 200. */
async function send(hub, requests) {
  const start = Date.now();
  const inflight = new Set();
  const answers = { accepted: 0, updated: 0, duplicate: 0, other: 0 };
  const failures = [];
  for (const [i, request] of requests.entries()) {
    const due = start + (i * 1000) / RATE;
    if (due > Date.now()) await sleep(due - Date.now());
    while (inflight.size >= IN_FLIGHT) await Promise.race(inflight);
    const done = fetch(`${hub.baseUrl}${request.path}`, request).then(async (response) => {
      const body = await response.text();
      if (response.status !== 200) throw new Error(`postback: ${response.status} ${body}`);
      const status = JSON.parse(body).status;
      answers[status in answers ? status : "other"] += 1;
    });
    const settled = done.then(
      () => inflight.delete(settled),
      (error) => {
        inflight.delete(settled);
        failures.push(error);
      },
    );
    inflight.add(settled);
    if (failures.length > 0) break;
  }
  await Promise.all(inflight);
  if (failures.length > 0) throw failures[0];
  return answers;
}

function body(i, status, clickId) {
  return JSON.stringify({
    transaction_id: `cost-${i}`,
    status,
    amount: "29.90",
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-cost",
    platform: "web",
    ...(clickId ? { click_id: clickId } : {}),
    ...(args.rich ? richFields(i) : {}),
  });
}

/** What a rich postback adds: ids and meta as attribution providers send them (about 600 bytes). */
function richFields(i) {
  return {
    user_id: `user-${String(i).padStart(8, "0")}-7f3a9c`,
    device_id: `6D92078A-8246-4BA4-AE5B-76104861E7${String(i % 100).padStart(2, "0")}`,
    meta: {
      app_id: "id1234567890",
      app_version: "5.12.3",
      os_version: "17.6.1",
      device_model: "iPhone15,2",
      country: "FR",
      language: "fr-FR",
      install_time: "2026-12-06T10:11:12Z",
      media_source: "partner_int",
      campaign_name: "Winter sale 2026 / retargeting / lookalike 3%",
      adset: "adset-00042-broad-18-45",
      ad: "creative-video-15s-v3",
      keyword: "running shoes waterproof",
    },
  };
}

async function main() {
  if (!(Number.isInteger(N) && N >= 10)) throw new Error("--n must be an integer of at least 10");
  const prices = JSON.parse(await readFile(path.join(ROOT, "bench/prices.json"), "utf8"));
  const mix = mixOf(N);
  log(`bench:cost: ${N} conversions at ${RATE} postbacks/s; ${describeMix(mix)}`);
  const config = await writeCostConfig();
  const partner = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  const hub = await startWranglerDev({
    label: "bench-cost",
    config,
    // At a real network's pace (1M a month is 0.4 a second) every request gets its inbound log
    // record; the bench sends faster, so the per-minute flood cap must not cut the records.
    vars: { INBOUND_LOG_PER_MINUTE: "1000000" },
  });
  let report;
  try {
    const network = await admin(hub, "POST", "/v1/networks", { id: "cost-net", name: "Cost network" });
    const net = { id: "cost-net", sign: signer(network.secret) };
    await admin(hub, "POST", "/v1/partners", {
      name: "Filter partner",
      url_template: `${partner.origin}/all?tx={transaction_id}&status={status}`,
      filters: { networks: ["cost-net"] },
    });
    const attributed = await admin(hub, "POST", "/v1/partners", {
      name: "Attributed partner",
      url_template: `${partner.origin}/own?tx={transaction_id}&status={status}&payout={payout}&s1={sub1}`,
      routing: "attributed",
    });
    const offer = await admin(hub, "POST", "/v1/offers", {
      network_id: "cost-net",
      name: "Cost offer",
      landing_url: "https://shop.example/p?clickid={click_id}",
      payouts: { default: [{ fixed: { amount: "2.50", currency: "USD" } }] },
    });
    await sleep(2000);
    await fetch(`${hub.baseUrl}/__cost/reset`, { method: "POST" });
    const before = (await counts(hub)).counts;

    // Clicks first, each on the attributed partner's tracking link, as visitors make them.
    const clickIds = new Map();
    const clicking = [...Array(N).keys()].filter((i) => MIX.attributed(i));
    await pool(clicking, async (i) => {
      const link = `${offer.tracking_link.replace("{partner_id}", attributed.id)}&sub1=s${i % 7}`;
      const response = await fetch(link, { redirect: "manual", headers: { "user-agent": BROWSER_UA } });
      if (response.status !== 302) throw new Error(`click: ${response.status} ${await response.text()}`);
      clickIds.set(i, new URL(response.headers.get("location") ?? "").searchParams.get("clickid"));
    });
    // The new conversions (each 5th re-sent at once, as a network retries), then the updates.
    const firsts = [];
    for (let i = 0; i < N; i++) {
      const request = signedPostback(net, body(i, MIX.pending(i) ? "pending" : "approved", clickIds.get(i)));
      firsts.push(request);
      if (MIX.duplicated(i)) firsts.push(signedPostback(net, request.body, request.headers["webhook-id"]));
    }
    const cpuBefore = hub.workerdCpuMs();
    const sendStart = Date.now();
    const firstAnswers = await send(hub, firsts);
    const updates = [];
    for (let i = 0; i < N; i++)
      if (MIX.updated(i)) updates.push(signedPostback(net, body(i, "approved", clickIds.get(i))));
    const updateAnswers = await send(hub, updates);
    const sendSeconds = (Date.now() - sendStart) / 1000;
    log(`sent in ${sendSeconds.toFixed(0)} s: ${JSON.stringify(firstAnswers)} then ${JSON.stringify(updateAnswers)}`);
    const expectedDeliveries =
      N + mix.updates + mix.attributed + [...Array(N).keys()].filter((i) => MIX.attributed(i) && MIX.updated(i)).length;
    const pipeline = await drained(hub, () => partner.requests.length >= expectedDeliveries);
    const cpuAfter = hub.workerdCpuMs();
    log(`drained: the partners received ${partner.requests.length} requests (${expectedDeliveries} expected)`);

    // Each cron once, at its real schedule's rate, after the pipeline is quiet.
    const cronRuns = {};
    let last = pipeline;
    for (const cron of Object.keys(CRON_RUNS_PER_MONTH)) {
      await hub.runCron(cron);
      const now = await drained(hub);
      cronRuns[cron] = diffCounts(now.counts, last.counts);
      last = now;
    }

    // Per million conversions: the pipeline's counts scaled, plus the crons of a month of MONTHLY conversions.
    const perConversion = 1e6 / N;
    let perMillion = scaleCounts(diffCounts(pipeline.counts, before), perConversion);
    for (const [cron, runCounts] of Object.entries(cronRuns)) {
      perMillion = addCounts(perMillion, scaleCounts(runCounts, CRON_RUNS_PER_MONTH[cron] * (1e6 / MONTHLY)));
    }
    const rows = costRows(perMillion, prices);
    const total = rows.at(-1);
    const bill = monthlyBill(total.billed, MONTHLY, prices);
    const d1Bytes = last.d1_size_after;
    const doBytes = Object.fromEntries(Object.entries(last.do_storage).map(([c, s]) => [c, s.bytes]));
    const d1File = await d1FileBytes(hub.stateDir);
    report = {
      started_at: started.toISOString(),
      command: `npm run bench:cost -- --n ${N} --rate ${RATE} --concurrency ${IN_FLIGHT} --monthly ${MONTHLY}${args.rich ? " --rich" : ""}`,
      machine: machine(),
      mix,
      mix_text: describeMix(mix),
      send_seconds: sendSeconds,
      answers: { firsts: firstAnswers, updates: updateAnswers },
      partner_requests: partner.requests.length,
      expected_deliveries: expectedDeliveries,
      batches: batchesOf(diffCounts(pipeline.counts, before)),
      // Everything workerd did meanwhile (the Worker, the objects, and the local D1, Queues and
      // object storage it simulates), from /proc: a ceiling on the Worker CPU the table estimates.
      workerd_cpu_ms_per_conversion: cpuBefore === null || cpuAfter === null ? null : (cpuAfter - cpuBefore) / N,
      per_million: perMillion,
      rows,
      monthly: { conversions: MONTHLY, ...bill },
      storage: {
        d1_size_after_bytes: d1Bytes,
        d1_file_bytes: d1File,
        do_bytes: doBytes,
        do_objects: last.do_storage,
      },
      cron_runs: cronRuns,
      statements: last.statements,
      prices_read_on: prices.read_on,
    };
  } catch (error) {
    await sleep(1000);
    console.error(hub.log().slice(-20000));
    throw error;
  } finally {
    await hub.stop();
    await partner.close();
  }
  const lines = renderReport(report, prices);
  for (const line of lines) console.log(line);
  const file = path.join(ROOT, "bench/results", `cost-${started.toISOString().replace(/[:.]/g, "-")}.json`);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  log(`report written to ${path.relative(ROOT, file)}`);
  if (args.write) {
    const markdownFile = path.join(ROOT, "BENCHMARKS.md");
    await writeFile(markdownFile, replaceSection(await readFile(markdownFile, "utf8"), lines.join("\n")));
    log("BENCHMARKS.md: the bench:cost section written");
  }
}

/** The local D1's SQLite file(s), after the run: a second measure of bytes beside D1's own size_after. */
async function d1FileBytes(stateDir) {
  const { readdir } = await import("node:fs/promises");
  const dir = path.join(stateDir, "v3", "d1", "miniflare-D1DatabaseObject");
  let bytes = 0;
  try {
    for (const name of await readdir(dir))
      if (name.endsWith(".sqlite")) bytes += (await stat(path.join(dir, name))).size;
  } catch {
    return null;
  }
  return bytes;
}

function batchesOf(counts) {
  const out = {};
  for (const [stage, metrics] of Object.entries(counts)) {
    if (metrics["queue.batches"])
      out[stage] = { batches: metrics["queue.batches"], messages: metrics["queue.delivered"] };
  }
  return out;
}

const total_cpu = (rows) => rows.at(-1).billed.worker_cpu_ms;

function renderReport(report, prices) {
  const { mix, rows, storage, monthly } = report;
  const perConversionD1 = storage.d1_size_after_bytes / mix.conversions;
  const perConversionDo = Object.values(storage.do_bytes).reduce((a, b) => a + b, 0) / mix.conversions;
  const fmtUsd = (x) => `$${x.toFixed(2)}`;
  const alt = prices.alternatives;
  const deliveriesPerMillion = (report.expected_deliveries / mix.conversions) * 1e6;
  const svix = alt.svix.plans.map(
    (plan) =>
      `${plan.name} ${fmtUsd(plan.usd_per_month + Math.max(0, deliveriesPerMillion - plan.included_messages) * plan.usd_per_extra_message)}`,
  );
  const hookdeck = alt.hookdeck.plans.map(
    (plan) => `${plan.name} from ${fmtUsd(plan.usd_per_month)} + metered (rate not published in what we could read)`,
  );
  return [
    `### ${report.started_at.slice(0, 10)}, issue 16: what a million conversions cost (\`npm run bench:cost\`)`,
    "",
    `\`${report.command}\`, ${report.machine.cpus} CPUs, Node ${report.machine.node}. Prices: bench/prices.json (read ${report.prices_read_on}).`,
    `Mix, ${report.mix_text}. Sent in ${report.send_seconds.toFixed(0)} s; answers ${JSON.stringify(report.answers.firsts)}, then ${JSON.stringify(report.answers.updates)}; the partners received ${report.partner_requests} of ${report.expected_deliveries} deliveries expected. Queue batches seen: ${Object.entries(
      report.batches,
    )
      .map(([stage, b]) => `${stage} ${b.batches} for ${b.messages} messages`)
      .join(", ")}. Crons: one run each, scaled to a month (${Object.entries(CRON_RUNS_PER_MONTH)
      .map(([c, runs]) => `\`${c}\` ${runs}×`)
      .join(", ")}) of ${monthly.conversions.toLocaleString("en-US")} conversions.`,
    "",
    "Operations per million conversions:",
    "",
    "```",
    ...tableLines(OPERATIONS_COLUMNS, rows),
    "```",
    "",
    "Dollars per million conversions, at the prices beyond the plan's allowances (* DO duration on paper: each object's active wall time in workerd × 128 MB; Worker CPU: each invocation's wall time in workerd less its waits on bindings and fetches):",
    "",
    "```",
    ...tableLines(DOLLARS_COLUMNS, rows),
    "```",
    "",
    `Worker CPU beside its ceiling: the table's in-runtime estimate is ${(total_cpu(rows) / 1e6).toFixed(1)} ms per conversion; workerd's whole process (the Worker, the objects, and the local D1, queues and storage it simulates) used ${report.workerd_cpu_ms_per_conversion === null ? "n/a" : report.workerd_cpu_ms_per_conversion.toFixed(1)} ms per conversion from /proc, on a machine shared with other work.`,
    "",
    `A month of ${monthly.conversions.toLocaleString("en-US")} conversions on Workers Paid, allowances applied: ${fmtUsd(monthly.base)} base + ${fmtUsd(monthly.usage)} usage = **${fmtUsd(monthly.total)}**. For the same volume (${Math.round(deliveriesPerMillion).toLocaleString("en-US")} partner deliveries per million conversions), Svix: ${svix.join(", ")}; Hookdeck: ${hookdeck.join(", ")}.`,
    "",
    "Where the rows are written (the statements writing the most, per conversion, the crons' runs included; index rows are in D1's counts):",
    "",
    "```",
    ...tableLines(STATEMENT_COLUMNS, topStatements(report.statements, mix.conversions)),
    "```",
    "",
    `Storage kept, per million conversions: D1 ${((perConversionD1 * 1e6) / 1e9).toFixed(1)} GB (${fmtUsd(((perConversionD1 * 1e6) / 1e9) * prices.items.d1_storage_gb_month.usd_per_gb_month)} a month while kept), Durable Objects ${((perConversionDo * 1e6) / 1e9).toFixed(1)} GB (${fmtUsd(((perConversionDo * 1e6) / 1e9) * prices.items.do_sqlite_storage_gb_month.usd_per_gb_month)} a month while kept, on paper: local SQLite's \`databaseSize\`); beyond each product's 5 GB included, and growing with every month kept.`,
    "",
    `Storage after the run: D1 ${Math.round(perConversionD1).toLocaleString("en-US")} bytes per conversion (D1's own \`meta.size_after\`; the SQLite file ${storage.d1_file_bytes === null ? "n/a" : Math.round(storage.d1_file_bytes / mix.conversions).toLocaleString("en-US")}), so one 10 GB database holds about ${conversionsPerDatabase(perConversionD1).toLocaleString("en-US")} conversions with their events, deliveries, attempts, inbound log and clicks; Durable Objects ${Math.round(perConversionDo).toLocaleString("en-US")} bytes per conversion (\`databaseSize\`, ${Object.entries(
      storage.do_objects,
    )
      .map(([c, s]) => `${s.objects} ${c}`)
      .join(", ")}).`,
  ];
}

main().catch((error) => {
  console.error(`bench:cost failed: ${error instanceof Error ? error.stack : String(error)}`);
  process.exit(1);
});
