/**
 * The delivery-attempt counters of GET /metrics live in one row per partner (migration 0022): one
 * row written per write of a coordinator's summed counts, and added to what metric_counters kept
 * from before the migration. (That an attempt is counted once, only when recorded, is the attempt's
 * report: test/delivery.attempt.test.ts.)
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { METRICS } from "../src/domain/metrics";
import { addAttemptCountsStatement, attemptCounts, counterRows } from "../src/storage/metrics";
import { uniqueId } from "./support/helpers";

/** An attempt's counts, added as a coordinator adds what it summed; the rows the write wrote. */
async function recordAttempt(partnerId: string, attempt: number, outcome: string, latency: number) {
  const counts = attemptCounts(
    { attempt, partner_id: partnerId, outcome, latency_ms: latency },
    outcome === "delivered" ? "delivered" : "retrying",
  );
  const result = await addAttemptCountsStatement(env.DB, partnerId, counts).run();
  return result.meta.rows_written;
}

function find(rows: Awaited<ReturnType<typeof counterRows>>, name: string, labels: string[]): number | undefined {
  return rows.find((row) => row.name === name && JSON.stringify(row.labels) === JSON.stringify(labels))?.value;
}

describe("delivery-attempt counters", () => {
  it("write one row per write and add up across attempts", async () => {
    const partnerId = uniqueId("ptn");
    expect(await recordAttempt(partnerId, 1, "retry", 120)).toBe(1);
    expect(await recordAttempt(partnerId, 2, "delivered", 40)).toBe(1);
    const rows = await counterRows(env.DB);
    expect(find(rows, METRICS.deliveryAttempts.name, [partnerId, "retry"])).toBe(1);
    expect(find(rows, METRICS.deliveryAttempts.name, [partnerId, "delivered"])).toBe(1);
    expect(find(rows, `${METRICS.deliveryLatency.name}_bucket`, [partnerId, "250"])).toBe(1);
    expect(find(rows, `${METRICS.deliveryLatency.name}_bucket`, [partnerId, "50"])).toBe(1);
    expect(find(rows, `${METRICS.deliveryLatency.name}_sum`, [partnerId])).toBe(160);
    expect(find(rows, `${METRICS.attemptsPerDelivery.name}_bucket`, [partnerId, "delivered", "2"])).toBe(1);
    expect(find(rows, `${METRICS.attemptsPerDelivery.name}_sum`, [partnerId, "delivered"])).toBe(2);
    const stored = await env.DB.prepare("SELECT count(*) AS n FROM metric_attempt_counters WHERE partner_id = ?")
      .bind(partnerId)
      .first<{ n: number }>();
    expect(stored?.n).toBe(1);
  });

  it("add to the counts metric_counters kept from before, in the order /metrics lists them", async () => {
    const partnerId = uniqueId("ptn");
    await env.DB.prepare("INSERT INTO metric_counters (name, labels, value) VALUES (?, json_array(?, 'delivered'), 41)")
      .bind(METRICS.deliveryAttempts.name, partnerId)
      .run();
    await recordAttempt(partnerId, 1, "delivered", 10);
    const rows = await counterRows(env.DB);
    expect(find(rows, METRICS.deliveryAttempts.name, [partnerId, "delivered"])).toBe(42);
    expect(
      rows.filter((row) => row.name === METRICS.deliveryAttempts.name && row.labels[0] === partnerId),
    ).toHaveLength(1);
    const keys = rows.map((row) => JSON.stringify([row.name, JSON.stringify(row.labels)]));
    expect(keys).toEqual([...keys].sort());
  });
});
