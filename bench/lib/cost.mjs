// bench:cost's arithmetic, apart from the run: the workload's mix, the counts read from the
// bench Worker folded into billed operations per stage, the dollars from bench/prices.json, the
// tables, and the BENCHMARKS.md section. Plain data in, plain data out (tested in test/tooling).
import { renderTable } from "./table.mjs";

/**
 * The mix, per conversion index i (so every 10 conversions): 6 first posted as pending and 4 as
 * approved; 5 of the 6 pending approved later (an update); every 5th new postback re-sent by the
 * network with the same webhook-id (a retry: a duplicate); 3 in 10 carry a click id from the
 * attributed partner's tracking link (one click each). The filter partner receives every conversion.
 */
export const MIX = {
  pending: (i) => i % 10 < 6,
  updated: (i) => i % 10 < 5,
  duplicated: (i) => i % 5 === 0,
  attributed: (i) => i % 10 === 2 || i % 10 === 5 || i % 10 === 8,
};

export function mixOf(n) {
  const indices = Array.from({ length: n }, (_, i) => i);
  const count = (rule) => indices.filter(rule).length;
  return {
    conversions: n,
    new_pending: count(MIX.pending),
    new_approved: n - count(MIX.pending),
    updates: count(MIX.updated),
    duplicates: count(MIX.duplicated),
    attributed: count(MIX.attributed),
    clicks: count(MIX.attributed),
    postbacks: n + count(MIX.updated) + count(MIX.duplicated),
  };
}

export function describeMix(mix) {
  const per = (x) => Math.round((x / mix.conversions) * 1000);
  return (
    `per 1,000 conversions: ${per(mix.new_pending)} posted pending and ${per(mix.new_approved)} approved at once, ` +
    `${per(mix.updates)} approved later (updates), ${per(mix.duplicates)} duplicates (a network's retry, same webhook-id), ` +
    `${per(mix.attributed)} attributed through a click on the attributed partner's tracking link (${per(mix.clicks)} clicks); ` +
    `${per(mix.postbacks)} postbacks in all; one filter partner receives every conversion, the attributed partner its own`
  );
}

const sumMatching = (metrics, prefix) =>
  Object.entries(metrics).reduce((total, [name, value]) => (name.startsWith(prefix) ? total + value : total), 0);

/**
 * One stage's counts (the bench Worker's metric names) as billed quantities. Queue operations:
 * a write per message sent (per 64 KB), a read per delivery (retries read again), a delete per
 * acknowledged message.
 */
export function billedOf(metrics) {
  const m = (name) => metrics[name] ?? 0;
  return {
    worker_requests: m("worker.fetch") + m("worker.queue") + m("worker.cron"),
    worker_wall_ms: m("worker.wall_ms"),
    worker_cpu_ms: m("worker.cpu_ms"),
    do_requests: sumMatching(metrics, "do.requests.") + sumMatching(metrics, "do.alarms."),
    do_active_ms: sumMatching(metrics, "do.active_ms."),
    do_rows_read: sumMatching(metrics, "do.rows_read."),
    do_rows_written: sumMatching(metrics, "do.rows_written."),
    d1_rows_read: m("d1.rows_read"),
    d1_rows_written: m("d1.rows_written"),
    d1_statements: m("d1.statements"),
    queue_ops: m("queue.write_ops") + m("queue.read_ops") + m("queue.delete_ops"),
    queue_messages_sent: sumMatching(metrics, "queue.sent."),
    queue_retried: m("queue.retried"),
    subrequests: m("subrequests.fetch"),
  };
}

/** Counts `after - before`, per stage and metric. */
export function diffCounts(after, before = {}) {
  const out = {};
  for (const [stage, metrics] of Object.entries(after)) {
    for (const [name, value] of Object.entries(metrics)) {
      const delta = value - (before[stage]?.[name] ?? 0);
      if (delta === 0) continue;
      out[stage] = { ...out[stage], [name]: delta };
    }
  }
  return out;
}

/** Counts `a + b`, per stage and metric. */
export function addCounts(a, b) {
  const out = structuredClone(a);
  for (const [stage, metrics] of Object.entries(b)) {
    const into = { ...out[stage] };
    for (const [name, value] of Object.entries(metrics)) into[name] = (into[name] ?? 0) + value;
    out[stage] = into;
  }
  return out;
}

export function scaleCounts(counts, factor) {
  return Object.fromEntries(
    Object.entries(counts).map(([stage, metrics]) => [
      stage,
      Object.fromEntries(Object.entries(metrics).map(([name, value]) => [name, value * factor])),
    ]),
  );
}

/** Durable Object duration is billed in GB-s of the 128 MB an object is given, while it is active. */
const DO_GB = 128 / 1024;

/** Dollars of one stage's billed quantities at the marginal (beyond the included) prices. */
export function dollarsOf(billed, prices) {
  const p = prices.items;
  const perMillion = (quantity, item) => (quantity / 1e6) * p[item].usd_per_million;
  const parts = {
    worker_requests: perMillion(billed.worker_requests, "workers_requests"),
    worker_cpu: perMillion(billed.worker_cpu_ms, "workers_cpu_ms"),
    do_requests: perMillion(billed.do_requests, "do_requests"),
    do_duration: perMillion((billed.do_active_ms / 1000) * DO_GB, "do_duration_gb_s"),
    do_rows:
      perMillion(billed.do_rows_read, "do_sqlite_rows_read") +
      perMillion(billed.do_rows_written, "do_sqlite_rows_written"),
    d1_rows: perMillion(billed.d1_rows_read, "d1_rows_read") + perMillion(billed.d1_rows_written, "d1_rows_written"),
    queues: perMillion(billed.queue_ops, "queues_operations"),
  };
  return { ...parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
}

export const STAGE_ORDER = [
  "ingest",
  "outbox alarm",
  "events consumer",
  "delivery",
  "inbound log",
  "clicks",
  "cron */15 * * * *",
  "cron 17 3 * * *",
];

/** Rows in stage order, then any other stage seen, then the total; each with billed quantities and dollars. */
export function costRows(perMillionCounts, prices) {
  const stages = [
    ...STAGE_ORDER.filter((s) => perMillionCounts[s]),
    ...Object.keys(perMillionCounts).filter((s) => !STAGE_ORDER.includes(s) && s !== "setup"),
  ];
  const rows = stages.map((stage) => {
    const billed = billedOf(perMillionCounts[stage]);
    return { stage, billed, dollars: dollarsOf(billed, prices) };
  });
  const total = {};
  for (const row of rows) for (const [k, v] of Object.entries(row.billed)) total[k] = (total[k] ?? 0) + v;
  rows.push({ stage: "total", billed: total, dollars: dollarsOf(total, prices) });
  return rows;
}

const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString("en-US") : "n/a");
const usd = (x) => (Number.isFinite(x) ? `$${x.toFixed(2)}` : "n/a");

export const OPERATIONS_COLUMNS = [
  { header: "stage", cell: (r) => r.stage },
  { header: "Worker req", cell: (r) => int(r.billed.worker_requests) },
  { header: "Worker CPU ms", cell: (r) => int(r.billed.worker_cpu_ms) },
  { header: "DO req", cell: (r) => int(r.billed.do_requests) },
  { header: "DO active ms", cell: (r) => int(r.billed.do_active_ms) },
  { header: "DO rows read", cell: (r) => int(r.billed.do_rows_read) },
  { header: "DO rows written", cell: (r) => int(r.billed.do_rows_written) },
  { header: "D1 rows read", cell: (r) => int(r.billed.d1_rows_read) },
  { header: "D1 rows written", cell: (r) => int(r.billed.d1_rows_written) },
  { header: "queue ops", cell: (r) => int(r.billed.queue_ops) },
  { header: "subrequests", cell: (r) => int(r.billed.subrequests) },
];

export const DOLLARS_COLUMNS = [
  { header: "stage", cell: (r) => r.stage },
  { header: "Worker req", cell: (r) => usd(r.dollars.worker_requests) },
  { header: "Worker CPU", cell: (r) => usd(r.dollars.worker_cpu) },
  { header: "DO req", cell: (r) => usd(r.dollars.do_requests) },
  { header: "DO duration*", cell: (r) => usd(r.dollars.do_duration) },
  { header: "DO rows", cell: (r) => usd(r.dollars.do_rows) },
  { header: "D1 rows", cell: (r) => usd(r.dollars.d1_rows) },
  { header: "queues", cell: (r) => usd(r.dollars.queues) },
  { header: "total", cell: (r) => usd(r.dollars.total) },
];

/**
 * A month of `monthly` conversions on Workers Paid: the base fee, then each item beyond what the
 * plan includes. `perMillion` is the total row's billed quantities per million conversions.
 */
export function monthlyBill(perMillion, monthly, prices) {
  const p = prices.items;
  const scale = monthly / 1e6;
  const quantities = {
    workers_requests: perMillion.worker_requests * scale,
    workers_cpu_ms: perMillion.worker_cpu_ms * scale,
    do_requests: perMillion.do_requests * scale,
    do_duration_gb_s: (perMillion.do_active_ms / 1000) * DO_GB * scale,
    do_sqlite_rows_read: perMillion.do_rows_read * scale,
    do_sqlite_rows_written: perMillion.do_rows_written * scale,
    d1_rows_read: perMillion.d1_rows_read * scale,
    d1_rows_written: perMillion.d1_rows_written * scale,
    queues_operations: perMillion.queue_ops * scale,
  };
  let usage = 0;
  for (const [item, quantity] of Object.entries(quantities)) {
    const beyond = Math.max(0, quantity - (p[item].included_per_month ?? 0));
    usage += (beyond / 1e6) * p[item].usd_per_million;
  }
  return { base: prices.workers_paid_base_usd_per_month, usage, total: prices.workers_paid_base_usd_per_month + usage };
}

/** What one database holds before its limit, from bytes per conversion. */
export function conversionsPerDatabase(bytesPerConversion, limitBytes = 10 * 1e9) {
  return bytesPerConversion > 0 ? Math.floor(limitBytes / bytesPerConversion) : Number.NaN;
}

export const SECTION_START = "<!-- bench:cost:start -->";
export const SECTION_END = "<!-- bench:cost:end -->";

/** `markdown` with the text between the bench:cost markers replaced, or the section added before "## Latest figures"'s first entry. */
export function replaceSection(markdown, section) {
  const block = `${SECTION_START}\n${section.trim()}\n${SECTION_END}`;
  const start = markdown.indexOf(SECTION_START);
  const end = markdown.indexOf(SECTION_END);
  if (start !== -1 && end > start) return markdown.slice(0, start) + block + markdown.slice(end + SECTION_END.length);
  const anchor = markdown.indexOf("## Latest figures\n");
  if (anchor === -1) return `${markdown.trimEnd()}\n\n${block}\n`;
  const insertAt = anchor + "## Latest figures\n".length;
  return `${markdown.slice(0, insertAt)}\n${block}\n${markdown.slice(insertAt)}`;
}

export const tableLines = (columns, rows) => renderTable(columns, rows);

/** The statements that write the most rows, per conversion: where a cost cut starts. */
export function topStatements(statements, conversions, limit = 15) {
  return [...statements]
    .filter((s) => s.written > 0)
    .sort((a, b) => b.written - a.written)
    .slice(0, limit)
    .map((s) => ({ ...s, per: (x) => x / conversions }));
}

const perConversion = (x) => (Number.isFinite(x) ? x.toFixed(2) : "n/a");

export const STATEMENT_COLUMNS = [
  { header: "rows written / conv", cell: (r) => perConversion(r.per(r.written)) },
  { header: "rows read / conv", cell: (r) => perConversion(r.per(r.read)) },
  { header: "calls / conv", cell: (r) => perConversion(r.per(r.calls)) },
  { header: "where", cell: (r) => `${r.store === "d1" ? "D1" : r.store}, ${r.stage}` },
  { header: "statement", cell: (r) => (r.sql.length > 110 ? `${r.sql.slice(0, 107)}...` : r.sql) },
];
