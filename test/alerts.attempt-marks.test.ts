/**
 * "Attempts since T" without an index on delivery_attempts (migration 0026, storage/attempt-marks.ts):
 * the 15-minute cron marks where the table ends, and the alert rules' and the overview's reads start
 * after the last mark taken at or before T. The counts are the same as a scan of the whole table's;
 * the rows read are those since the mark.
 */
import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { PARTNER_ATTEMPTS_SQL, partnerAttempts } from "../src/storage/alert-rules";
import { markAttempts } from "../src/storage/attempt-marks";
import { attemptsByOutcome, partnerDeliveryStats } from "../src/storage/overview";
import { createPartner, uniqueId } from "./support/helpers";

const MIN = 60_000;
const T = Date.parse("2031-03-10T12:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

/** Attempts of one delivery to `partnerId`, started at the given times, recorded in that order. */
async function attempts(partnerId: string, startedAt: number[], outcome = "retry") {
  const delivery = uniqueId("dlv");
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
     VALUES (?1, ?2, ?3, 'n', ?4, 'retrying', '{}', ?5, ?5)`,
  )
    .bind(delivery, uniqueId("evt"), partnerId, uniqueId("tx"), iso(T))
    .run();
  await env.DB.batch(
    startedAt.map((at, i) =>
      env.DB.prepare(
        `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, latency_ms, outcome)
         VALUES (?, ?, ?, ?, 20, ?)`,
      ).bind(delivery, i + 1, partnerId, iso(at), outcome),
    ),
  );
}

/** The same counts by a scan of every attempt: what the marks must not change. */
async function scanned(partnerId: string, since: number) {
  return env.DB.prepare(
    `SELECT count(*) AS attempts, sum(outcome = 'dead') AS dead FROM delivery_attempts
     WHERE partner_id = ? AND started_at >= ?`,
  )
    .bind(partnerId, iso(since))
    .first<{ attempts: number; dead: number }>();
}

describe("attempts since a time, by the cron's marks", () => {
  it("count exactly what a scan counts, reading only the attempts after the last mark before then", async () => {
    const partner = await createPartner({ url_template: "https://partner.test/ok" });
    // A long history, then a mark, then the window's attempts; one recorded after the mark though
    // it started before the window (a slow answer), which the time filter still leaves out.
    await attempts(
      partner.id,
      Array.from({ length: 300 }, (_, i) => T - 600 * MIN + i * MIN),
    );
    await markAttempts(env.DB, T - 20 * MIN);
    await attempts(partner.id, [T - 25 * MIN, T - 10 * MIN, T - 5 * MIN]);
    await attempts(partner.id, [T - 1 * MIN], "dead");
    const since = T - 15 * MIN;
    const rows = await partnerAttempts(env.DB, iso(since));
    expect(rows.find((row) => row.partner_id === partner.id)).toEqual({
      partner_id: partner.id,
      attempts: 3,
      failed: 3,
      dead: 1,
    });
    expect(await scanned(partner.id, since)).toEqual({ attempts: 3, dead: 1 });
    // The read starts after the mark: the history before it is not read again.
    const { meta } = await env.DB.prepare(PARTNER_ATTEMPTS_SQL).bind(iso(since)).all();
    expect(meta.rows_read).toBeLessThan(50);
    // Without a mark that old, the whole table is read, and counts the same.
    const early = T - 200 * MIN;
    const before = await partnerAttempts(env.DB, iso(early));
    expect(before.find((row) => row.partner_id === partner.id)?.attempts).toBe(
      (await scanned(partner.id, early))?.attempts,
    );
  });

  it("pass over a mark whose row is gone or moved: rowids that come again are still counted", async () => {
    const partner = await createPartner({ url_template: "https://partner.test/ok" });
    const base = T + 5000 * MIN;
    await attempts(partner.id, [base, base + MIN, base + 2 * MIN]);
    await markAttempts(env.DB, base + 10 * MIN);
    // The newest attempts go (the archive, retention): the next one takes the same rowid again.
    await env.DB.prepare(
      "DELETE FROM delivery_attempts WHERE rowid = (SELECT max(rowid) FROM delivery_attempts)",
    ).run();
    await attempts(partner.id, [base + 30 * MIN], "dead");
    const since = base + 20 * MIN;
    const rows = await partnerAttempts(env.DB, iso(since));
    expect(rows.find((row) => row.partner_id === partner.id)).toMatchObject({ attempts: 1, dead: 1 });
    expect(await scanned(partner.id, since)).toEqual({ attempts: 1, dead: 1 });
  });

  it("bound the overview's attempt charts and latency the same way", async () => {
    const partner = await createPartner({ url_template: "https://partner.test/ok" });
    await attempts(
      partner.id,
      Array.from({ length: 200 }, (_, i) => T + 1000 * MIN + i * MIN),
    );
    await markAttempts(env.DB, T + 1300 * MIN);
    await attempts(partner.id, [T + 1310 * MIN, T + 1320 * MIN], "delivered");
    const since = iso(T + 1305 * MIN);
    const stats = await partnerDeliveryStats(env.DB, since);
    expect(stats.find((row) => row.partner_id === partner.id)).toMatchObject({ attempts: 2, delivered: 2 });
    const buckets = await attemptsByOutcome(env.DB, since, 3600);
    expect(buckets.reduce((sum, bucket) => sum + bucket.n, 0)).toBe(2);
  });

  it("are taken by the 15-minute cron, by the wall clock, where the table ends", async () => {
    const before = Date.now();
    const end = () => env.DB.prepare("SELECT coalesce(max(rowid), 0) AS n FROM delivery_attempts").first<number>("n");
    const endBefore = await end();
    const handler: ExportedHandler<Env> = worker;
    await handler.scheduled?.(
      createScheduledController({ cron: "*/15 * * * *", scheduledTime: before - 5 * MIN }),
      env,
      createExecutionContext(),
    );
    const mark = await env.DB.prepare("SELECT at, last_rowid FROM delivery_attempt_marks WHERE at BETWEEN ? AND ?")
      .bind(iso(before), iso(Date.now()))
      .first<{ at: string; last_rowid: number }>();
    // Where the table ended while the cron ran (what the cron itself set moving may add after it).
    expect(mark?.last_rowid).toBeGreaterThanOrEqual(endBefore ?? 0);
    expect(mark?.last_rowid).toBeLessThanOrEqual((await end()) ?? 0);
  });

  it("are kept for eight days", async () => {
    await markAttempts(env.DB, T + 9000 * MIN);
    const count = () =>
      env.DB.prepare("SELECT count(*) AS n FROM delivery_attempt_marks WHERE at = ?")
        .bind(iso(T + 9000 * MIN))
        .first<number>("n");
    expect(await count()).toBe(1);
    await markAttempts(env.DB, T + 9000 * MIN + 8 * 1440 * MIN - MIN);
    expect(await count()).toBe(1);
    await markAttempts(env.DB, T + 9000 * MIN + 8 * 1440 * MIN + MIN);
    expect(await count()).toBe(0);
  });

  it("is the plan: a rowid range of delivery_attempts, no index on it left to write", async () => {
    const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${PARTNER_ATTEMPTS_SQL}`)
      .bind(null)
      .all<{ detail: string }>();
    expect(results.map((row) => row.detail).join("\n")).toContain("SEARCH a USING INTEGER PRIMARY KEY (rowid>?)");
    const indexes = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'delivery_attempts'",
    ).all<{ name: string }>();
    expect(indexes.results.map((row) => row.name)).toEqual(["sqlite_autoindex_delivery_attempts_1"]);
  });
});
