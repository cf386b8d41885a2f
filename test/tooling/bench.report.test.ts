// bench/lib/stats.mjs and bench/lib/table.mjs, and the throughput tables built from a report's data.
import { describe, expect, it } from "vitest";
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
    expect(lines[8]).toMatch(/\(4\) ingest duplicates .* 0\.60 of \(1\) +≥ 0\.40 +yes/);
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
