// bench/lib/stats.mjs and bench/lib/table.mjs, the throughput tables built from a report's data, and
// bench:cost's arithmetic (bench/lib/cost.mjs), prices file and configuration, and bench:startup's
// workerd configuration and summary (bench/lib/startup.mjs), bench:bundle's source-map split
// (bench/lib/bundle.mjs) and bench:d1's table (bench/lib/d1-batch.mjs).
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { decodeSegment, packageOf, slicesByPackage } from "../../bench/lib/bundle.mjs";
import {
  addCounts,
  billedOf,
  conversionsPerDatabase,
  costRows,
  describeMix,
  diffCounts,
  dollarsOf,
  mixOf,
  monthlyBill,
  replaceSection,
  SECTION_END,
  SECTION_START,
  scaleCounts,
} from "../../bench/lib/cost.mjs";
import { costConfig } from "../../bench/lib/cost-config.mjs";
import { BATCH_SIZES, batchesFor, batchRows } from "../../bench/lib/d1-batch.mjs";
import { capnpString, startupRows, workerdConfig } from "../../bench/lib/startup.mjs";
import { batchSummary, median, medianOf, percentile } from "../../bench/lib/stats.mjs";
import { fmt, renderTable } from "../../bench/lib/table.mjs";
import { ISOLATION_COLUMNS, isolationRows } from "../../bench/scenarios/isolation.mjs";
import { endToEndRows, THROUGHPUT_COLUMNS, throughputRows } from "../../bench/scenarios/throughput.mjs";

describe("the bench's statistics", () => {
  it("takes medians of odd and even counts, and NaN of nothing", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("takes nearest-rank percentiles", () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
  });

  it("summarises rounds and batches", () => {
    expect(medianOf([{ ratio: 0.5 }, { ratio: 0.9 }, { ratio: 0.7 }], (r: { ratio: number }) => r.ratio)).toBe(0.7);
    expect(batchSummary([10, 30, 20])).toEqual({ batches: 3, messages: 60, mean: 20, median: 20, max: 30 });
    expect(batchSummary([]).max).toBeNaN();
  });
});

describe("the bench's tables", () => {
  it("pads columns to their widest cell and prints nothing measured as n/a", () => {
    const lines = renderTable(
      [
        { header: "case", cell: (row: { name: string }) => row.name },
        { header: "µs", cell: (row: { us: number }) => fmt(row.us, 1) },
      ],
      [
        { name: "verify", us: 12.34 },
        { name: "x", us: Number.NaN },
      ],
    );
    expect(lines).toEqual(["case    µs  ", "------  ----", "verify  12.3", "x       n/a "]);
  });

  it("builds the throughput rows from a report's rounds, goals from GOALS", () => {
    const run = (rps: number) => ({ rps, p50_ms: 10, p99_ms: 20 });
    const scenarios = {
      edge: { rounds: [{ health: run(200), edge: run(100) }], ratio_median: 0.5 },
      clicks: { rounds: [{ health: run(200), clicks: run(190) }], ratio_median: 0.95 },
      ingest_new: {
        rounds: [{ health: run(200), floor: run(100), floor_queued: run(80), ingest: run(60) }],
        ratio_floor_median: 0.6,
        ratio_health_median: 0.3,
        ratio_floor_queued_median: 0.75,
      },
      duplicate: { rounds: [{ health: run(200), duplicate: run(120) }], ratio_median: 0.6 },
    };
    const lines = renderTable(THROUGHPUT_COLUMNS, throughputRows(scenarios));
    expect(lines[2]).toMatch(/^\(1\) GET \/health +200 +10 +20 +1 +$/);
    expect(lines[3]).toMatch(/^\(2\) edge checks \(422\) +100 .* 0\.50 of \(1\) +≥ 0\.60 +NO $/);
    expect(lines[4]).toMatch(/^\(7\) click redirect \(302\) +190 .* 0\.95 of \(1\) +≥ 0\.80 +yes *$/);
    expect(lines[7]).toMatch(/\(3\) ingest new .* 0\.60 of floor, 0\.30 of \(1\) +≥ 0\.80 of floor +NO /);
    expect(lines[8]).toMatch(/\(4\) ingest duplicates .* 0\.60 of \(1\) +≥ 0\.80 +NO/);
  });

  it("builds the end-to-end rows, the batch goal judged under load", () => {
    const batches = { batches: 2, messages: 40, mean: 20, median: 20, max: 21 };
    const rows = endToEndRows(
      { delivered: 3, acknowledged: 3, p50_ms: 900, p99_ms: 1500, events_batches: batches },
      { ...batches, mean: 12 },
    );
    expect(rows.map((row: { met?: boolean }) => row.met)).toEqual([true, undefined, undefined, false]);
    expect(rows[0]?.goal).toBe("< 2000 ms");
  });

  it("builds (8)'s rows, one per round and the median ratio judged against its goal (at most)", () => {
    const round = (aloneMs: number, besideMs: number) => ({
      alone: { p50_ms: aloneMs, p99_ms: 2 * aloneMs },
      beside: { p50_ms: besideMs, p99_ms: 2 * besideMs },
      failing: { requests: 12, answered_500: 6, held: 6 },
      ratio: besideMs / aloneMs,
    });
    const rounds = [round(1000, 1100), round(1000, 1300), round(900, 900)];
    const lines = renderTable(ISOLATION_COLUMNS, isolationRows({ rounds, ratio_median: 1.1 }));
    expect(lines[2]).toMatch(/^round 1 +1000 \/ 2000 ms +1100 \/ 2200 ms +12 \(6 × 500, 6 held\) +1\.10 +$/);
    expect(lines[5]).toMatch(/^median +1\.10 +≤ 1\.20 +yes$/);
    const missed = isolationRows({ rounds, ratio_median: 1.3 }).at(-1);
    expect(missed).toMatchObject({ met: false, goal: "≤ 1.20" });
  });
});

describe("bench:cost's arithmetic", () => {
  it("states its mix per 1,000 conversions", () => {
    expect(mixOf(1000)).toEqual({
      conversions: 1000,
      new_pending: 600,
      new_approved: 400,
      updates: 500,
      duplicates: 200,
      attributed: 300,
      clicks: 300,
      postbacks: 1700,
    });
    expect(describeMix(mixOf(2000))).toContain("500 approved later (updates), 200 duplicates");
  });

  it("folds a stage's counts into billed quantities: queue operations are a write, a read and a delete", () => {
    const billed = billedOf({
      "worker.fetch": 2,
      "worker.queue": 1,
      "worker.cpu_ms": 3,
      "do.requests.ConversionObject.record": 2,
      "do.alarms.ConversionObject": 1,
      "do.rows_written.ConversionObject": 5,
      "do.rows_written.PartnerCoordinator": 1,
      "d1.rows_written": 7,
      "queue.write_ops": 4,
      "queue.read_ops": 5,
      "queue.delete_ops": 4,
      "subrequests.fetch": 1,
    });
    expect(billed).toMatchObject({
      worker_requests: 3,
      worker_cpu_ms: 3,
      do_requests: 3,
      do_rows_written: 6,
      d1_rows_written: 7,
      queue_ops: 13,
      subrequests: 1,
    });
  });

  it("prices a million of each at bench/prices.json's marginal prices, every figure with its source", async () => {
    const prices = JSON.parse(await readFile(new URL("../../bench/prices.json", import.meta.url), "utf8"));
    expect(prices.read_on).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    for (const [name, item] of Object.entries<{ source: string; usd_per_million: number }>(prices.items)) {
      expect(item.source, name).toMatch(/^https:\/\//);
      expect(typeof item.usd_per_million, name).toBe("number");
    }
    const million = { ...billedOf({}), worker_requests: 1e6, d1_rows_written: 1e6, queue_ops: 1e6 };
    const dollars = dollarsOf(million, prices);
    expect(dollars.worker_requests).toBeCloseTo(0.3);
    expect(dollars.d1_rows).toBeCloseTo(1);
    expect(dollars.queues).toBeCloseTo(0.4);
    expect(dollars.total).toBeCloseTo(1.7);
    // A month within every allowance costs the base fee alone.
    expect(monthlyBill({ ...billedOf({}), worker_requests: 1e6 }, 1e6, prices)).toEqual({
      base: 5,
      usage: 0,
      total: 5,
    });
  });

  it("orders the stages, adds a total, and diffs, adds and scales counts", () => {
    const items = ["workers_requests", "workers_cpu_ms", "do_requests", "do_duration_gb_s", "do_sqlite_rows_read"]
      .concat(["do_sqlite_rows_written", "d1_rows_read", "d1_rows_written", "queues_operations"])
      .map((item) => [item, { usd_per_million: 1 }]);
    const prices = { items: Object.fromEntries(items) };
    const rows = costRows(
      { delivery: { "worker.queue": 1 }, ingest: { "worker.fetch": 2 }, setup: { "worker.fetch": 9 } },
      prices,
    );
    expect(rows.map((r: { stage: string }) => r.stage)).toEqual(["ingest", "delivery", "total"]);
    expect(rows.at(-1)?.billed.worker_requests).toBe(3);
    const a = { ingest: { x: 3, y: 1 } };
    expect(diffCounts(a, { ingest: { x: 1, y: 1 } })).toEqual({ ingest: { x: 2 } });
    expect(addCounts(a, { ingest: { x: 1 }, cron: { z: 2 } })).toEqual({ ingest: { x: 4, y: 1 }, cron: { z: 2 } });
    expect(scaleCounts(a, 10)).toEqual({ ingest: { x: 30, y: 10 } });
    expect(conversionsPerDatabase(10_000)).toBe(1_000_000);
  });

  it("replaces its BENCHMARKS.md section in place, or adds it under the latest figures", () => {
    const doc = "# B\n\n## Latest figures\n\n### older\n";
    const once = replaceSection(doc, "### cost v1");
    expect(once).toBe(`# B\n\n## Latest figures\n\n${SECTION_START}\n### cost v1\n${SECTION_END}\n\n### older\n`);
    expect(replaceSection(once, "### cost v2")).toBe(once.replace("v1", "v2"));
  });

  it("runs the hub's own configuration from bench/cost/, without deploy environments or ingest limits", async () => {
    const config = costConfig(await readFile(new URL("../../wrangler.toml", import.meta.url), "utf8")) as unknown as {
      main: string;
      env?: unknown;
      d1_databases: { migrations_dir: string }[];
      assets: { directory: string };
      alias: Record<string, string>;
      triggers: { crons: string[] };
      ratelimits: { simple: { limit: number } }[];
    };
    expect(config.main).toBe("index.ts");
    expect(config.env).toBeUndefined();
    expect(config.d1_databases[0]?.migrations_dir).toBe("../../migrations");
    expect(config.assets.directory).toBe("../../public");
    expect(config.alias.zod).toBe("../../shims/zod/index.js");
    expect(config.triggers.crons).toEqual(["*/15 * * * *", "17 3 * * *"]);
    for (const limiter of config.ratelimits) expect(limiter.simple.limit).toBe(1_000_000);
  });
});

describe("bench:startup", () => {
  it("writes a workerd configuration that embeds the modules and binds the vars as text", () => {
    const config = workerdConfig({
      modules: ["index.js"],
      port: 8123,
      bindings: { ALERT_URL: "", QUOTED: 'a "b" \\ c' },
      compatibilityDate: "2026-11-01",
      compatibilityFlags: ["nodejs_compat"],
    });
    expect(config).toContain('(name = "index.js", esModule = embed "index.js"),');
    expect(config).toContain('address = "127.0.0.1:8123"');
    expect(config).toContain('(name = "ALERT_URL", text = ""),');
    expect(config).toContain('(name = "QUOTED", text = "a \\"b\\" \\\\ c"),');
    expect(config).toContain('compatibilityFlags = ["nodejs_compat"],');
    expect(capnpString("line\nbreak")).toBe('"line\\nbreak"');
  });

  it("summarises each subject's runs beside the baseline's medians", () => {
    const run = (subject: string, answerMs: number, cpuMs: number) => ({
      subject,
      answerMs,
      listenMs: 50,
      firstRequestMs: answerMs - 50,
      cpuMs,
    });
    const rows = startupRows([
      run("baseline", 100, 30),
      run("hub", 600, 320),
      run("baseline", 120, 40),
      run("hub", 700, Number.NaN),
      run("hub", 650, 300),
    ]);
    expect(rows.map((r: { subject: string }) => r.subject)).toEqual(["baseline", "hub"]);
    const hub = rows[1];
    expect(hub?.runs).toBe(3);
    expect(hub?.answerMs).toBe(650);
    expect(hub?.ratio).toBeCloseTo(650 / 110);
    expect(hub?.overBaselineMs).toBe(540);
    expect(hub?.cpuMs).toBe(310);
    expect(hub?.cpuOverBaselineMs).toBe(275);
    expect(rows[0]?.ratio).toBe(1);
  });
});

describe("bench:bundle", () => {
  it("decodes base64 VLQ segments", () => {
    expect(decodeSegment("AAAA")).toEqual([0, 0, 0, 0]);
    expect(decodeSegment("SAAQ")).toEqual([9, 0, 0, 8]);
    expect(decodeSegment("D")).toEqual([-1]);
    expect(decodeSegment("gBAAA")).toEqual([16, 0, 0, 0]);
  });

  it("names the package a source belongs to, the innermost node_modules winning", () => {
    expect(packageOf("../node_modules/zod/v4/core/schemas.js")).toBe("zod");
    expect(packageOf("../node_modules/@hono/zod-openapi/dist/index.mjs")).toBe("@hono/zod-openapi");
    expect(packageOf("node_modules/a/node_modules/@b/c/x.js")).toBe("@b/c");
    expect(packageOf("../src/routes/postbacks.ts")).toBe("src");
    expect(packageOf("../shims/zod/index.js")).toBe("shims");
    expect(packageOf("<runtime>")).toBe("<runtime>");
  });

  it("splits the bundle's text by the package of each mapped span, and keeps every character", () => {
    // Line 1: "abcdef" — columns 0-1 unmapped, 2-3 from source 0 (zod), 4-5 from source 1 (src);
    // line 2: "gh" from source 0 again.
    const code = "abcdef\ngh";
    const map = { sources: ["node_modules/zod/a.js", "src/b.ts"], mappings: "EAAA,ECAA;ADAA" };
    const slices = slicesByPackage(code, map);
    expect(slices).toEqual({ "(unmapped)": "ab", zod: "cdgh", src: "ef\n" });
    expect(Object.values(slices).join("").length).toBe(code.length);
  });
});

describe("bench:d1", () => {
  it("writes about the same number of events at every batch size, at least two batches", () => {
    expect(BATCH_SIZES).toEqual([1, 10, 50, 100, 500]);
    expect(batchesFor(1, 2000)).toBe(2000);
    expect(batchesFor(500, 2000)).toBe(4);
    expect(batchesFor(500, 500)).toBe(2);
    expect(batchesFor(100, 250)).toBe(3);
  });

  it("takes medians per size and each round's events per second over batch size 1's", () => {
    const run = (round: number, size: number, elapsedMs: number) => ({
      round,
      size,
      events: 100,
      statements: 300,
      elapsedMs,
      rowsWritten: 1900,
    });
    const rows = batchRows([run(0, 1, 1000), run(0, 10, 200), run(1, 1, 500), run(1, 10, 50), run(2, 10, 100)]);
    expect(rows.map((r: { size: number }) => r.size)).toEqual([1, 10]);
    const [one, ten] = rows;
    expect(one?.ratio).toBe(1);
    expect(ten?.rounds).toBe(3);
    expect(ten?.statementsPerBatch).toBe(30);
    expect(ten?.msPerEvent).toBe(1);
    expect(ten?.msPerStatement).toBeCloseTo(1 / 3);
    expect(ten?.msPerBatch).toBe(10);
    expect(ten?.eventsPerSecond).toBe(1000);
    expect(ten?.rowsWrittenPerEvent).toBe(19);
    // Round 0: 500/s over 100/s; round 1: 2000/s over 200/s; round 2 has no size 1 and is left out.
    expect(ten?.ratio).toBe(7.5);
  });
});
