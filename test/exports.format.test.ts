/**
 * The pure side of exports (src/lib/export-stream.ts): which format a request asks for, the formula
 * guard, CSV and NDJSON that a real parser reads back exactly, and a stream that reads its page
 * source only as fast as its reader.
 */
import { parse } from "csv-parse/sync";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  csvHeader,
  csvRows,
  type ExportColumn,
  exportStream,
  guardFormula,
  keysetPages,
  ndjsonRows,
  negotiateFormat,
  unguardFormula,
} from "../src/lib/export-stream";

describe("negotiateFormat", () => {
  it("lets format win, then the Accept type with the highest q, and falls back to json", () => {
    expect(negotiateFormat("csv", "application/json")).toBe("csv");
    expect(negotiateFormat("json", "text/csv")).toBe("json");
    expect(negotiateFormat(undefined, "text/csv")).toBe("csv");
    expect(negotiateFormat(undefined, "Text/CSV; charset=utf-8")).toBe("csv");
    expect(negotiateFormat(undefined, "application/x-ndjson")).toBe("ndjson");
    expect(negotiateFormat(undefined, "application/json;q=0.5, text/csv;q=0.9")).toBe("csv");
    expect(negotiateFormat(undefined, "text/csv;q=0.5, application/json")).toBe("json");
    expect(negotiateFormat(undefined, "text/csv;q=0, application/x-ndjson;q=0.1")).toBe("ndjson");
    expect(negotiateFormat(undefined, "text/html,application/xhtml+xml,*/*;q=0.8")).toBe("json");
    expect(negotiateFormat(undefined, "text/html")).toBe("json");
    expect(negotiateFormat(undefined, undefined)).toBe("json");
  });
});

describe("the formula guard", () => {
  it("prefixes one apostrophe to a cell a spreadsheet would run, and to one that starts with an apostrophe", () => {
    for (const value of ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n=1", "\uFF1D1", "'x"]) {
      expect(guardFormula(value)).toBe(`'${value}`);
    }
    for (const value of ["1.50", "2026-01-01T00:00:00.000Z", "ord_1", "", " =1", '{"a":1}']) {
      expect(guardFormula(value)).toBe(value);
    }
  });

  it("is undone exactly by removing one leading apostrophe", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary" }), (value) => {
        expect(unguardFormula(guardFormula(value))).toBe(value);
      }),
    );
  });
});

interface Row {
  id: string;
  text: string | null;
  n: number;
  flag: boolean;
}
const COLUMNS: ExportColumn<Row>[] = [
  { name: "id", value: (row) => row.id },
  { name: "text", value: (row) => row.text },
  { name: "n", value: (row) => row.n },
  { name: "flag", value: (row) => row.flag },
];

describe("CSV and NDJSON", () => {
  it("read back exactly with a real CSV parser, whatever the strings hold", () => {
    const row = fc.record({
      id: fc.string({ unit: "binary", minLength: 1 }),
      text: fc.option(fc.string({ unit: "binary" }), { nil: null }),
      n: fc.nat(),
      flag: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(row, { maxLength: 20 }), fc.array(row, { maxLength: 20 }), (first, second) => {
        const text = csvHeader(COLUMNS) + csvRows(COLUMNS, first) + csvRows(COLUMNS, second);
        const [header, ...records] = parse(text) as string[][];
        expect(header).toEqual(["id", "text", "n", "flag"]);
        expect(records.map((cells) => cells.map(unguardFormula))).toEqual(
          [...first, ...second].map((r) => [r.id, r.text ?? "", String(r.n), String(r.flag)]),
        );
        const ndjson = ndjsonRows([...first, ...second]);
        expect(
          ndjson
            .split("\n")
            .slice(0, -1)
            .map((line) => JSON.parse(line)),
        ).toEqual([...first, ...second]);
      }),
    );
  });
});

/** A page source that counts what it was asked for. */
function countingSource(pageCount: number, rowsPerPage: number) {
  const asked: number[] = [];
  let returned = false;
  async function* pages() {
    try {
      for (let page = 0; page < pageCount; page += 1) {
        asked.push(page);
        yield Array.from({ length: rowsPerPage }, (_, i) => ({ id: `r${page}-${i}`, text: "x", n: i, flag: true }));
      }
    } finally {
      returned = true;
    }
  }
  return { pages: pages(), asked, wasStopped: () => returned };
}

describe("exportStream", () => {
  it("reads the first page before answering, then one more page per read, never ahead of its reader", async () => {
    const source = countingSource(10, 3);
    const stream = await exportStream({ format: "csv", columns: COLUMNS, pages: source.pages });
    expect(source.asked).toEqual([0]);
    const reader = stream.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toMatch(/^id,text,n,flag\r\nr0-0,/);
    expect(source.asked).toEqual([0]);
    await reader.read();
    expect(source.asked).toEqual([0, 1]);
    await reader.read();
    expect(source.asked).toEqual([0, 1, 2]);
    await reader.cancel();
    expect(source.wasStopped()).toBe(true);
    expect(source.asked).toEqual([0, 1, 2]);
  });

  it("errors the stream when a later page fails, after what came before", async () => {
    async function* pages() {
      yield [{ id: "a", text: null, n: 1, flag: false }];
      throw new Error("D1 went away");
    }
    let outcome: { rows: number; pages: number; error: unknown } | null = null;
    const stream = await exportStream({
      format: "ndjson",
      columns: COLUMNS,
      pages: pages(),
      onEnd: (end) => {
        outcome = end;
      },
    });
    const reader = stream.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('{"id":"a","text":null,"n":1,"flag":false}\n');
    await expect(reader.read()).rejects.toThrow("D1 went away");
    expect(outcome).toMatchObject({ rows: 1, pages: 1, error: expect.objectContaining({ message: "D1 went away" }) });
  });

  it("rejects before answering when the first page fails", async () => {
    async function* pages(): AsyncGenerator<Row[]> {
      yield* [];
      throw new Error("D1 is down");
    }
    await expect(exportStream({ format: "csv", columns: COLUMNS, pages: pages() })).rejects.toThrow("D1 is down");
  });
});

describe("keysetPages", () => {
  it("starts each page after the last row of the one before and stops after a short page", async () => {
    const rows = Array.from({ length: 23 }, (_, i) => 100 - i);
    const calls: [number | null, number][] = [];
    const pages: number[][] = [];
    for await (const page of keysetPages(
      async (after: number | null, limit) => {
        calls.push([after, limit]);
        return rows.filter((row) => after === null || row < after).slice(0, limit);
      },
      (row) => row,
      (index) => 5 * 2 ** index,
    )) {
      pages.push(page);
    }
    expect(calls).toEqual([
      [null, 5],
      [96, 10],
      [86, 20],
    ]);
    expect(pages.flat()).toEqual(rows);
  });
});
