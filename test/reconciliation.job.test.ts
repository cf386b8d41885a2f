/**
 * The reconciliation job at size and under faults: a 20,000-row report streamed in and diffed in the
 * background with exact totals; the job's steps give the same differences and totals whatever their
 * size, and a step that runs twice (a retried alarm, two runners) adds nothing twice.
 */
import { env } from "cloudflare:workers";
import Big from "big.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { runReconciliationStep } from "../src/reports/reconciliation-job";
import {
  getReconciliation,
  insertReconciliation,
  listDifferences,
  markUploaded,
  stageRowsStatement,
  totalsOf,
} from "../src/storage/reconciliations";
import { createNetwork, eventually, expectStatus, uniqueId } from "./support/helpers";
import { allDifferences, finished, type Reconciliation, seedConversions, upload } from "./support/reconciliation";

const SINCE = "2026-05-01T00:00:00.000Z";
const UNTIL = "2026-06-01T00:00:00.000Z";

/** A report streamed a few rows at a time, the way a large upload arrives. */
function streamed(lines: Iterable<string>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const iterator = lines[Symbol.iterator]();
  return new ReadableStream({
    pull(controller) {
      let chunk = "";
      for (let i = 0; i < 200; i++) {
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

describe("a 20,000-row report", () => {
  it("streams in, is diffed in the background a chunk at a time, and every number is exact", async () => {
    const network = await createNetwork();
    const size = 20_000;
    const hub = Array.from({ length: size }, (_, i) => ({
      transaction_id: `tx-${String(i).padStart(6, "0")}`,
      status: "approved",
      amount: `${i}.${String(i % 100).padStart(2, "0")}`,
      currency: i % 3 === 0 ? "EUR" : "USD",
      first_seen_at: new Date(Date.parse(SINCE) + i * 60_000).toISOString(),
    }));
    await seedConversions(network.id, hub);

    // The report: every 10th amount differs by a cent, every 50th is declined, the last 100 of the hub
    // are missing from it, and it has 100 the hub never saw.
    const reported = hub.slice(0, size - 100).map((row, i) => ({
      ...row,
      amount: i % 10 === 0 ? new Big(row.amount).plus("0.01").toFixed(2) : row.amount,
      status: i % 50 === 0 ? "declined" : "approved",
    }));
    const extra = Array.from({ length: 100 }, (_, i) => ({
      transaction_id: `new-${i}`,
      status: "pending",
      amount: "1.25",
      currency: "USD",
    }));
    const rows = [...reported, ...extra];
    function* lines() {
      yield "transaction_id,status,amount,currency\n";
      for (const row of rows) yield `${row.transaction_id},${row.status},${row.amount},${row.currency}\n`;
    }
    const created = await expectStatus<Reconciliation>(
      await upload({ network_id: network.id, since: SINCE, until: UNTIL }, streamed(lines())),
      202,
    );
    expect(created.progress.report_rows).toBe(rows.length);
    const done = await finished(created.id, 120_000);
    expect(done.state, done.error ?? "").toBe("finished");
    expect(done.progress).toMatchObject({ report_rows_done: rows.length, hub_conversions_done: size });
    expect(done.differences).toEqual({
      missing_in_hub: 100,
      missing_in_report: 100,
      status: (size - 100) / 50,
      amount: (size - 100) / 10,
      payout: 0,
      credit: 0,
    });

    const sums = (items: readonly { amount: string; currency: string }[]) => {
      const by = new Map<string, Big>();
      for (const item of items) by.set(item.currency, (by.get(item.currency) ?? new Big(0)).plus(item.amount));
      return [...by]
        .sort(([a], [b]) => (a < b ? -1 : 1))
        .map(([currency, amount]) => ({ currency, amount: amount.toFixed() }));
    };
    expect(done.totals.report).toEqual({ conversions: rows.length, amount: sums(rows), payout: [] });
    expect(done.totals.hub).toEqual({ conversions: size, amount: sums(hub), payout: [] });

    const missing = await allDifferences(done.id, { class: "missing_in_report" });
    expect(missing.map((d) => d.transaction_id)).toEqual(hub.slice(size - 100).map((row) => row.transaction_id));
  }, 180_000);
});

describe("the job's steps", () => {
  /** Stages a small report and hub straight in D1, then runs the job by hand with `chunk`-sized steps. */
  async function run(
    data: { hub: { id: number; amount: number }[]; report: { id: number; amount: number }[] },
    chunk: number,
    twice: boolean,
  ) {
    const network = await createNetwork();
    await seedConversions(
      network.id,
      data.hub.map((row, i) => ({
        transaction_id: `t${row.id}`,
        status: "approved",
        amount: `${row.amount}.5`,
        currency: row.id % 2 ? "USD" : "EUR",
        first_seen_at: new Date(Date.parse(SINCE) + i * 1000).toISOString(),
      })),
    );
    const lines = [
      "transaction_id,status,amount,currency",
      ...data.report.map((r) => `t${r.id},approved,${r.amount}.5,USD`),
    ];
    const created = await expectStatus<Reconciliation>(
      await upload({ network_id: network.id, since: SINCE, until: UNTIL }, `${lines.join("\n")}\n`),
      202,
    );
    // The runner started on its own; these steps race it, as a second runner would.
    for (let i = 0; i < 1000; i++) {
      const outcome = await runReconciliationStep({ db: env.DB, chunk }, created.id);
      if (twice) await runReconciliationStep({ db: env.DB, chunk }, created.id);
      if (outcome !== "more") break;
    }
    const row = await finished(created.id);
    const stored = await getReconciliation(env.DB, created.id);
    const differences = await listDifferences(env.DB, created.id, undefined, null, 10_000);
    return {
      state: row.state,
      totals: stored && totalsOf(stored),
      differences: differences.map((d) => `${d.class}:${d.transaction_id.slice(0)}`).sort(),
      counts: row.differences,
    };
  }

  it("gives the same differences and totals whatever the step size, and when steps run twice", async () => {
    const ids = fc.uniqueArray(fc.integer({ min: 1, max: 60 }), { maxLength: 25 });
    await fc.assert(
      fc.asyncProperty(
        ids,
        ids,
        fc.integer({ min: 1, max: 7 }),
        fc.boolean(),
        async (hubIds, reportIds, chunk, twice) => {
          const data = {
            hub: hubIds.map((id) => ({ id, amount: id * 3 })),
            report: reportIds.map((id) => ({ id, amount: id % 4 === 0 ? id * 3 + 1 : id * 3 })),
          };
          const stepped = await run(data, chunk, twice);
          const whole = await run(data, 1000, false);
          expect(stepped.state).toBe("finished");
          expect(stepped.differences).toEqual(whole.differences);
          expect(stepped.totals).toEqual(whole.totals);
          expect(stepped.counts).toEqual(whole.counts);
          // And against the brute-force expectation over the two sets.
          const inHub = new Set(hubIds);
          const inReport = new Set(reportIds);
          expect(stepped.totals?.report.conversions).toBe(reportIds.length);
          expect(stepped.totals?.hub.conversions).toBe(hubIds.length);
          expect(stepped.counts?.missing_in_hub).toBe(reportIds.filter((id) => !inHub.has(id)).length);
          expect(stepped.counts?.missing_in_report).toBe(hubIds.filter((id) => !inReport.has(id)).length);
          // A report row differs in amount when its amount or currency (USD, vs the hub's EUR for even ids) does.
          expect(stepped.counts?.amount).toBe(
            reportIds.filter((id) => inHub.has(id) && (id % 4 === 0 || id % 2 === 0)).length,
          );
        },
      ),
      { numRuns: 12 },
    );
  }, 120_000);

  it("keeps nothing of a step that lost the race to another runner, whose D1 read was older", async () => {
    const network = await createNetwork();
    await seedConversions(network.id, [
      {
        transaction_id: "t1",
        status: "approved",
        amount: "5",
        currency: "USD",
        first_seen_at: "2026-05-02T00:00:00.000Z",
      },
    ]);
    // Staged as the upload does, without starting the background runner: the steps below are the only ones.
    const id = uniqueId("rec");
    const now = new Date().toISOString();
    await insertReconciliation(env.DB, {
      id,
      network_id: network.id,
      partner_id: null,
      since: SINCE,
      until: UNTIL,
      mapping: { columns: {}, statuses: {} },
      created_by: "test",
      now,
    });
    const row = { line: 2, transaction_id: "t1", status: "declined" as const, amount: "5", currency: "USD" };
    await env.DB.batch([
      stageRowsStatement(env.DB, id, [{ ...row, payout: null, payout_currency: null, reported_at: null }]),
    ]);
    await markUploaded(env.DB, id, 1, now);
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let held = false;
    const slow = {
      prepare: (query: string) => env.DB.prepare(query),
      batch: async <T>(statements: D1PreparedStatement[]) => {
        if (!held) {
          held = true;
          await gate;
        }
        return env.DB.batch<T>(statements);
      },
    };
    // Step A reads the rows and the hub (approved), then waits before it writes.
    const a = runReconciliationStep({ db: slow }, id);
    await eventually(async () => (held ? true : null));
    // Meanwhile the network's decline reaches D1, and another runner walks the job to its end.
    await env.DB.prepare("UPDATE conversions SET status = 'declined' WHERE network_id = ? AND transaction_id = 't1'")
      .bind(network.id)
      .run();
    for (let i = 0; i < 10; i++) if ((await runReconciliationStep({ db: env.DB }, id)) !== "more") break;
    release();
    await a;
    expect((await getReconciliation(env.DB, id))?.state).toBe("finished");
    expect(await listDifferences(env.DB, id, undefined, null, 100)).toEqual([]);
  });

  it("ends quietly for a reconciliation that does not exist", async () => {
    expect(await runReconciliationStep({ db: env.DB }, uniqueId("rec"))).toBe("ended");
  });
});
