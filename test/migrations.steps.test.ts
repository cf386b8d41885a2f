/**
 * Migrations that rebuild a table keep the rows written before them: a database migrated up to
 * the step before, given rows the way that schema held them, then migrated the rest of the way.
 */
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";

const db = env.MIGRATION_DB;
const upTo = (name: string) => env.TEST_MIGRATIONS.filter((m) => m.name < name);
const from = (name: string) => env.TEST_MIGRATIONS.filter((m) => m.name >= name);

describe("0011_partner_coordination", () => {
  it("keeps every delivery and its attempts through the rebuild, and lets a delivery be superseded", async () => {
    await applyD1Migrations(db, upTo("0011"));
    const now = "2026-11-30T10:00:00.000Z";
    await db.batch([
      db
        .prepare(
          `INSERT INTO partners (id, name, url_template, method, timeout_ms, retry_schedule, created_at, updated_at)
           VALUES ('ptn_old', 'old partner', 'https://partner.test/pb', 'GET', 10000, '[5]', ?1, ?1)`,
        )
        .bind(now),
      db
        .prepare(
          `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, attempts, retries,
             last_status, payload, created_at, updated_at, delivered_at)
           VALUES ('dlv_old', 'evt_old', 'ptn_old', 'acme', 'tx-1', 'delivered', 2, 1, 200, '{"a":1}', ?1, ?1, ?1)`,
        )
        .bind(now),
      db
        .prepare(
          `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, outcome)
           VALUES ('dlv_old', 1, 'ptn_old', ?1, 503, 12, 'retry'), ('dlv_old', 2, 'ptn_old', ?1, 200, 9, 'delivered')`,
        )
        .bind(now),
    ]);

    await applyD1Migrations(db, from("0011"));

    expect(await db.prepare("SELECT id, state, attempts, retries, last_status FROM deliveries").all()).toMatchObject({
      results: [{ id: "dlv_old", state: "delivered", attempts: 2, retries: 1, last_status: 200 }],
    });
    const attempts = await db
      .prepare("SELECT attempt, http_status, outcome FROM delivery_attempts ORDER BY attempt")
      .all();
    expect(attempts.results).toEqual([
      { attempt: 1, http_status: 503, outcome: "retry" },
      { attempt: 2, http_status: 200, outcome: "delivered" },
    ]);
    // The new state is allowed, the attempts still belong to their delivery (deleting it takes them).
    await db.prepare("UPDATE deliveries SET state = 'superseded' WHERE id = 'dlv_old'").run();
    await db.prepare("DELETE FROM deliveries WHERE id = 'dlv_old'").run();
    expect((await db.prepare("SELECT count(*) AS n FROM delivery_attempts").first())?.n).toBe(0);
    // A partner written before it takes the defaults.
    expect(
      await db
        .prepare("SELECT delivery_order, max_in_flight, max_per_second, breaker, paused_reason FROM partners")
        .first(),
    ).toEqual({
      delivery_order: "ordered",
      max_in_flight: 10,
      max_per_second: null,
      breaker: "{}",
      paused_reason: null,
    });
  });
});
