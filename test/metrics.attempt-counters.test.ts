/**
 * The delivery-attempt counters of GET /metrics live in one row per partner (migration 0022): one
 * row written per attempt, counted once however often the attempt's batch runs, and added to what
 * metric_counters kept from before the migration.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { METRICS } from "../src/domain/metrics";
import { countAttemptMetricsStatement, counterRows } from "../src/storage/metrics";
import { uniqueId } from "./support/helpers";

async function seedDelivery(partnerId: string): Promise<string> {
  const id = uniqueId("dlv");
  const now = new Date().toISOString();
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
     VALUES (?, ?, ?, 'net_m', ?, 'pending', '{}', ?, ?)`,
  )
    .bind(id, uniqueId("evt"), partnerId, uniqueId("tx"), now, now)
    .run();
  return id;
}

/** The attempt's counters and its row, as finishAttemptStatements orders them (the counters first). */
async function recordAttempt(deliveryId: string, partnerId: string, attempt: number, outcome: string, latency: number) {
  const counted = countAttemptMetricsStatement(
    env.DB,
    { delivery_id: deliveryId, attempt, partner_id: partnerId, outcome, latency_ms: latency },
    outcome === "delivered" ? "delivered" : "retrying",
  );
  const [result] = await env.DB.batch([
    counted,
    env.DB.prepare(
      `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, latency_ms, outcome)
       VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (delivery_id, attempt) DO NOTHING`,
    ).bind(deliveryId, attempt, partnerId, new Date().toISOString(), latency, outcome),
  ]);
  return result?.meta.rows_written ?? -1;
}

function find(rows: Awaited<ReturnType<typeof counterRows>>, name: string, labels: string[]): number | undefined {
  return rows.find((row) => row.name === name && JSON.stringify(row.labels) === JSON.stringify(labels))?.value;
}

describe("delivery-attempt counters", () => {
  it("write one row per attempt, count an attempt once, and add up across attempts", async () => {
    const partnerId = uniqueId("ptn");
    const delivery = await seedDelivery(partnerId);
    expect(await recordAttempt(delivery, partnerId, 1, "retry", 120)).toBe(1);
    // The same attempt again (a redelivered message, a second isolate): nothing more.
    expect(await recordAttempt(delivery, partnerId, 1, "retry", 120)).toBe(0);
    expect(await recordAttempt(delivery, partnerId, 2, "delivered", 40)).toBe(1);
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
    const delivery = await seedDelivery(partnerId);
    await recordAttempt(delivery, partnerId, 1, "delivered", 10);
    const rows = await counterRows(env.DB);
    expect(find(rows, METRICS.deliveryAttempts.name, [partnerId, "delivered"])).toBe(42);
    expect(
      rows.filter((row) => row.name === METRICS.deliveryAttempts.name && row.labels[0] === partnerId),
    ).toHaveLength(1);
    const keys = rows.map((row) => JSON.stringify([row.name, JSON.stringify(row.labels)]));
    expect(keys).toEqual([...keys].sort());
  });
});
