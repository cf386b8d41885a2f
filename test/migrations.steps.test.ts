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

describe("0015_stats_money_limbs", () => {
  it("splits the integer sums at 1e9 exactly, and counts a row whose sum already overflowed to REAL again", async () => {
    const migrationDb = env.MONEY_LIMBS_MIGRATION_DB;
    await applyD1Migrations(migrationDb, upTo("0015"));
    const key = (hour: string) =>
      `'${hour}', 0, 'acme', 'off', 'cmp', 'ptn', 'ios', 'FR', 'mobile', 'sale', 'pending', 'USD', 'EUR', 'USD'`;
    const counted = (tx: string, hour: string, amount: string) =>
      `('acme', '${tx}', 0, '${hour}', 'off', 'cmp', 'ptn', 'ios', 'FR', 'mobile', 'sale', 'pending', '', 'USD', 'EUR',
        'USD', ${amount}, 5, 7, 0, 3, 10)`;
    await migrationDb.batch([
      // Two conversions counted in hour 10 (an exact row), one in hour 11 (a row an upsert turned REAL).
      migrationDb.prepare(
        `INSERT INTO stats_conversions_counted VALUES ${counted("tx-1", "2026-06-01T10", "999999999999999")},
           ${counted("tx-2", "2026-06-01T10", "1000000001")}, ${counted("tx-3", "2026-06-01T11", "123456789012345")}`,
      ),
      migrationDb.prepare(
        `INSERT INTO stats_conversions_hourly VALUES (${key("2026-06-01T10")}, 2, 1000001000000000, 10, 14, 0, 6, 20),
           (${key("2026-06-01T11")}, 1, 1.0e19, 5, 7, 0, 3, 10)`,
      ),
    ]);

    await applyD1Migrations(migrationDb, from("0015"));

    const money = "hour, conversions, amount_high, amount_integer, amount_fraction, revenue_high, revenue_integer";
    expect(
      (await migrationDb.prepare(`SELECT ${money} FROM stats_conversions_hourly ORDER BY hour`).all()).results,
    ).toEqual([
      {
        hour: "2026-06-01T10",
        conversions: 2,
        amount_high: 1_000_001,
        amount_integer: 0,
        amount_fraction: 10,
        revenue_high: 0,
        revenue_integer: 14,
      },
      {
        hour: "2026-06-01T11",
        conversions: 1,
        amount_high: 123_456,
        amount_integer: 789_012_345,
        amount_fraction: 5,
        revenue_high: 0,
        revenue_integer: 7,
      },
    ]);
    expect(
      (
        await migrationDb
          .prepare("SELECT transaction_id, amount_high, amount_integer FROM stats_conversions_counted ORDER BY 1")
          .all()
      ).results,
    ).toEqual([
      { transaction_id: "tx-1", amount_high: 999_999, amount_integer: 999_999_999 },
      { transaction_id: "tx-2", amount_high: 1, amount_integer: 1 },
      { transaction_id: "tx-3", amount_high: 123_456, amount_integer: 789_012_345 },
    ]);
  });
});

describe("0024_delivery_rows", () => {
  it("keeps every delivery and attempt through the rebuild, drops the (event, partner) constraint and the indexes no query reads", async () => {
    const migrationDb = env.DELIVERY_ROWS_MIGRATION_DB;
    await applyD1Migrations(migrationDb, upTo("0024"));
    const at = "2026-11-30T10:00:00.000Z";
    await migrationDb.batch([
      migrationDb
        .prepare(
          `INSERT INTO partners (id, name, url_template, method, timeout_ms, retry_schedule, created_at, updated_at)
           VALUES ('ptn_1', 'partner', 'https://partner.test/pb', 'GET', 10000, '[5]', ?1, ?1)`,
        )
        .bind(at),
      migrationDb
        .prepare(
          `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, attempts, retries,
             last_status, last_error, next_attempt_at, lease_until, payload, created_at, updated_at, delivered_at)
           VALUES ('dlv_1', 'evt_1', 'ptn_1', 'acme', 'tx-1', 'delivered', 2, 1, 200, NULL, NULL, NULL, '{"a":1}', ?1, ?1, ?1),
             ('dlv_2', 'evt_2', 'ptn_1', 'acme', 'tx-1', 'retrying', 1, 1, 503, 'HTTP 503', ?1, ?1, '{"b":2}', ?1, ?1, NULL)`,
        )
        .bind(at),
      migrationDb
        .prepare(
          `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, error_class, error,
             latency_ms, response_excerpt, outcome)
           VALUES ('dlv_1', 1, 'ptn_1', ?1, 503, NULL, NULL, 12, 'busy', 'retry'),
             ('dlv_1', 2, 'ptn_1', ?1, 200, NULL, NULL, 9, 'ok', 'delivered'),
             ('dlv_2', 1, 'ptn_1', ?1, NULL, 'timeout', 'no answer', 10000, NULL, 'retry')`,
        )
        .bind(at),
    ]);
    const tables = ["deliveries", "delivery_attempts"];
    const rows = (table: string) => migrationDb.prepare(`SELECT * FROM ${table} ORDER BY 1, 2`).all();
    const before = new Map<string, unknown[]>();
    for (const table of tables) before.set(table, (await rows(table)).results);

    await applyD1Migrations(migrationDb, from("0024"));

    for (const table of tables) expect((await rows(table)).results).toEqual(before.get(table));
    const indexes = await migrationDb
      .prepare(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('deliveries', 'delivery_attempts')",
      )
      .all<{ name: string; sql: string | null }>();
    // The primary keys' automatic indexes, and the indexes queries read: no (event, partner) one.
    expect(indexes.results.map((index) => index.name).sort()).toEqual([
      "deliveries_by_conversion",
      "deliveries_by_created",
      "deliveries_by_state",
      // 0025: a partner's replayable deliveries (enabling, deleting, replaying it).
      "deliveries_replayable_by_partner",
      // 0026 dropped delivery_attempts_by_partner ("since" reads go by the attempts' marks), and
      // 0027 deliveries_by_partner, which 0024 had made (partner_id, created_at): no query read it.
      "sqlite_autoindex_deliveries_1",
      "sqlite_autoindex_delivery_attempts_1",
    ]);
    // The id alone is the key now (it is derived from the event and the partner).
    await migrationDb
      .prepare(
        `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
         VALUES ('dlv_3', 'evt_1', 'ptn_1', 'acme', 'tx-1', 'pending', '{}', ?1, ?1) ON CONFLICT (id) DO NOTHING`,
      )
      .bind(at)
      .run();
    expect((await migrationDb.prepare("SELECT count(*) AS n FROM deliveries").first())?.n).toBe(3);
    // The attempts still belong to their delivery: deleting it takes them.
    await migrationDb.prepare("DELETE FROM deliveries WHERE id = 'dlv_1'").run();
    expect((await migrationDb.prepare("SELECT count(*) AS n FROM delivery_attempts").first())?.n).toBe(1);
  });
});
