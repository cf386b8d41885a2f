/**
 * GET /v1/stats as its callers use it: exact money, status changes, clicks arriving after their
 * conversion, delivery attempts counted once, the backfill of older conversions, time zones, the
 * CSV export, and every refusal naming its parameter; a network key sees only its own numbers.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { EventMessage } from "../src/domain/messages";
import { ProblemError } from "../src/errors";
import { offsetMinutes } from "../src/reports/stats";
import { finishAttemptStatements } from "../src/storage/deliveries";
import { pruneClicks } from "../src/storage/offers";
import { backfillStatsPage } from "../src/storage/stats";
import { createApiKey, withKey } from "./support/access";
import { admin, createNetwork, createOffer, expectStatus, makeEventMessage, uniqueId } from "./support/helpers";
import { deliverAcked } from "./support/queues";

const EVENTS = env.EVENTS_QUEUE_NAME;
const CLICKS = env.CLICKS_QUEUE_NAME;
const DAY = { since: "2026-06-01", until: "2026-06-02" };

interface Money {
  currency: string;
  amount: string;
}
interface Metrics {
  clicks: number | null;
  conversions: number;
  conversion_rate: number | null;
  statuses: Record<string, number>;
  amount: Money[];
  revenue: Money[];
  payout: Money[] | null;
  deliveries: { attempts: number; delivered: number; failed: number; success_rate: number | null } | null;
}
interface StatsBody {
  complete: boolean;
  data: (Metrics & { group: Record<string, string | null> })[];
  totals: Metrics;
}

/** A 422 problem naming `location`. */
async function expectRefused(query: Record<string, string>, location: string): Promise<void> {
  const response = await admin(statsPath(query));
  const body = await expectStatus<{ errors: { location: string }[] }>(response, response.status);
  expect(response.status, JSON.stringify({ query, body })).toBe(422);
  expect(response.headers.get("content-type")).toContain("application/problem+json");
  expect(
    body.errors.map((e) => e.location),
    JSON.stringify(query),
  ).toContain(location);
}

function statsPath(query: Record<string, string>): string {
  return `/v1/stats?${new URLSearchParams(query)}`;
}

async function stats(query: Record<string, string>): Promise<StatsBody> {
  return expectStatus<StatsBody>(await admin(statsPath(query)), 200);
}

function conversion(
  networkId: string,
  fields: Partial<EventMessage["conversion"]> & { at?: string },
  transactionId = uniqueId("tx"),
  version = 1,
): EventMessage {
  const at = fields.at ?? "2026-06-01T10:15:00.000Z";
  const { at: _, ...rest } = fields;
  const state = { status: "pending", amount: "5.00", currency: "USD", ...rest } as EventMessage["conversion"];
  return makeEventMessage({
    network_id: networkId,
    transaction_id: transactionId,
    seq: version,
    verdict: version === 1 ? "accepted" : "updated",
    received_at: at,
    event: { ...state } as EventMessage["event"],
    conversion: { ...state, event_time: at, first_seen_at: at, version },
  });
}

describe("GET /v1/stats", () => {
  it("sums money exactly and per currency, never across currencies, and counts declined without summing it", async () => {
    const { id } = await createNetwork();
    await deliverAcked(EVENTS, [
      conversion(id, { amount: "0.1" }),
      conversion(id, { amount: "0.2" }),
      conversion(id, { amount: "999999999999999.99999999" }),
      conversion(id, { amount: "999999999999999.99999999" }),
      conversion(id, { amount: "1500", currency: "JPY" }),
      conversion(id, { amount: "40.00", status: "declined" }),
    ]);
    const body = await stats({ network_id: id, ...DAY });
    expect(body.totals.conversions).toBe(6);
    expect(body.totals.statuses).toMatchObject({ pending: 5, declined: 1 });
    expect(body.totals.amount).toEqual([
      { currency: "JPY", amount: "1500" },
      { currency: "USD", amount: "2000000000000000.29999998" },
    ]);
  });

  it("moves a conversion between statuses when it changes, whichever message arrives first or twice", async () => {
    const { id } = await createNetwork();
    const tx = uniqueId("tx");
    const pending = conversion(id, { amount: "10.00" }, tx, 1);
    const approved = conversion(id, { amount: "10.00", status: "approved" }, tx, 2);
    await deliverAcked(EVENTS, [approved, pending]);
    await deliverAcked(EVENTS, [pending, approved, approved]);
    const body = await stats({ network_id: id, group_by: "status", ...DAY });
    expect(body.data).toHaveLength(1);
    expect(body.data[0]?.group).toEqual({ status: "approved" });
    expect(body.totals).toMatchObject({ conversions: 1, amount: [{ currency: "USD", amount: "10.00" }] });
    const rows = await env.DB.prepare("SELECT status, conversions FROM stats_conversions_hourly WHERE network_id = ?")
      .bind(id)
      .all();
    expect(rows.results).toEqual([{ status: "approved", conversions: 1 }]);
    const detailed = await env.DB.prepare(
      "SELECT status, conversions FROM stats_conversions_by_sub1_hourly WHERE network_id = ?",
    )
      .bind(id)
      .all();
    expect(detailed.results).toEqual([{ status: "approved", conversions: 1 }]);
  });

  it("takes country, device and sub1 from the click, when the click arrives after its conversion too", async () => {
    const offer = await createOffer({ campaign_id: uniqueId("cmp") });
    const clickId = uniqueId("clk").toLowerCase();
    await deliverAcked(EVENTS, [conversion(offer.network_id, { click_id: clickId })]);
    const before = await stats({ network_id: offer.network_id, group_by: "country,sub1", ...DAY });
    expect(before.data.map((row) => row.group)).toEqual([{ country: null, sub1: null }]);
    await deliverAcked(CLICKS, [
      {
        v: 1,
        clicks: [
          {
            click_id: clickId,
            offer_id: offer.id,
            partner_id: "ptn_x",
            clicked_at: "2026-06-01T10:00:00.000Z",
            sub_ids: { sub1: "summer" },
            country: "FR",
            user_agent: null,
            referrer: null,
            ip_prefix: null,
          },
        ],
      },
    ]);
    const after = await stats({ network_id: offer.network_id, group_by: "country,sub1", ...DAY });
    expect(after.data).toHaveLength(1);
    expect(after.data[0]).toMatchObject({ group: { country: "FR", sub1: "summer" }, clicks: 1, conversions: 1 });
    expect(after.data[0]?.conversion_rate).toBe(1);
    // A click has no status: grouped by it, clicks are unknown, not zero.
    const byStatus = await stats({ network_id: offer.network_id, group_by: "status", ...DAY });
    expect(byStatus.totals.clicks).toBeNull();
    expect(byStatus.totals.conversion_rate).toBeNull();
  });

  it("forgets an erased click's sub1, country and device, in the clicks and the conversions it counted", async () => {
    const offer = await createOffer({ campaign_id: uniqueId("cmp") });
    const clickId = uniqueId("clk").toLowerCase();
    const sub1 = uniqueId("person");
    await deliverAcked(CLICKS, [
      {
        v: 1,
        clicks: [
          {
            click_id: clickId,
            offer_id: offer.id,
            partner_id: "ptn_x",
            clicked_at: "2026-06-01T09:00:00.000Z",
            sub_ids: { sub1 },
            country: "FR",
            user_agent: null,
            referrer: null,
            ip_prefix: null,
          },
        ],
      },
    ]);
    await deliverAcked(EVENTS, [conversion(offer.network_id, { click_id: clickId })]);
    const query = { network_id: offer.network_id, group_by: "sub1,country", ...DAY };
    expect((await stats(query)).data).toMatchObject([{ group: { sub1, country: "FR" }, clicks: 1, conversions: 1 }]);

    await expectStatus(
      await admin("/v1/erasure", { method: "POST", body: JSON.stringify({ click_id: clickId }) }),
      201,
    );
    const after = await stats(query);
    expect(after.data).toMatchObject([{ group: { sub1: null, country: null }, clicks: 1, conversions: 1 }]);
    for (const table of ["stats_clicks_hourly", "stats_conversions_by_sub1_hourly", "stats_conversions_counted"]) {
      const { results } = await env.DB.prepare(`SELECT * FROM ${table} WHERE sub1 = ?`).bind(sub1).all();
      expect(results, table).toEqual([]);
    }
  });

  it("keeps a conversion's country and sub1 when its click is pruned by retention and the conversion changes later", async () => {
    const offer = await createOffer({ campaign_id: uniqueId("cmp") });
    const clickId = uniqueId("clk").toLowerCase();
    const tx = uniqueId("tx");
    await deliverAcked(CLICKS, [
      {
        v: 1,
        clicks: [
          {
            click_id: clickId,
            offer_id: offer.id,
            partner_id: "ptn_x",
            clicked_at: "2026-06-01T09:00:00.000Z",
            sub_ids: { sub1: "kept" },
            country: "DE",
            user_agent: null,
            referrer: null,
            ip_prefix: null,
          },
        ],
      },
    ]);
    await deliverAcked(EVENTS, [conversion(offer.network_id, { click_id: clickId }, tx, 1)]);
    await pruneClicks(env.DB, "2026-06-02T00:00:00.000Z");
    await deliverAcked(EVENTS, [conversion(offer.network_id, { click_id: clickId, status: "approved" }, tx, 2)]);
    const body = await stats({ network_id: offer.network_id, group_by: "country,sub1,status", ...DAY });
    expect(body.data).toMatchObject([{ group: { country: "DE", sub1: "kept", status: "approved" }, conversions: 1 }]);
  });

  it("counts each delivery attempt once, even when its batch runs twice", async () => {
    const { id } = await createNetwork();
    const deliveryId = uniqueId("dlv");
    const now = "2026-06-01T11:00:00.000Z";
    await env.DB.prepare(
      `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
       VALUES (?1, ?2, 'ptn_stats', ?3, 'tx', 'pending', '{"test":false}', ?4, ?4)`,
    )
      .bind(deliveryId, uniqueId("evt"), id, now)
      .run();
    const attempt = (n: number, outcome: string) => ({
      attempt: {
        delivery_id: deliveryId,
        attempt: n,
        partner_id: "ptn_stats",
        started_at: now,
        http_status: outcome === "delivered" ? 200 : 503,
        error_class: null,
        error: null,
        latency_ms: 10,
        response_excerpt: null,
        outcome: outcome as "delivered",
      },
      state: (outcome === "delivered" ? "delivered" : "retrying") as "delivered",
      retries: n,
      next_attempt_at: null,
      now,
      read: { attempts: n - 1, state: (n === 1 ? "pending" : "retrying") as "pending", retries: n - 1 },
    });
    for (const record of [attempt(1, "retry"), attempt(1, "retry"), attempt(2, "delivered"), attempt(2, "delivered")]) {
      await env.DB.batch(finishAttemptStatements(env.DB, record));
    }
    const body = await stats({ network_id: id, group_by: "partner", ...DAY });
    expect(body.data[0]?.deliveries).toEqual({ attempts: 2, delivered: 1, failed: 0, success_rate: 1 });
    // Grouped by something an attempt is not kept by, delivery metrics are unknown.
    expect((await stats({ network_id: id, group_by: "offer", ...DAY })).totals.deliveries).toBeNull();
  });

  it("counts conversions recorded before the roll-ups existed through the backfill, once", async () => {
    const { id } = await createNetwork();
    await deliverAcked(EVENTS, [conversion(id, { amount: "7.00" }), conversion(id, { amount: "8.00" })]);
    // As if written before migration 0013: no roll-up, and a backfill to run.
    await env.DB.batch([
      env.DB.prepare("DELETE FROM stats_conversions_hourly WHERE network_id = ?").bind(id),
      env.DB.prepare("DELETE FROM stats_conversions_by_sub1_hourly WHERE network_id = ?").bind(id),
      env.DB.prepare("DELETE FROM stats_conversions_counted WHERE network_id = ?").bind(id),
      env.DB.prepare("INSERT OR REPLACE INTO stats_backfill VALUES ('conversions', '', '', -1)"),
    ]);
    expect((await stats({ network_id: id, ...DAY })).complete).toBe(false);
    while ((await backfillStatsPage(env.DB, 2)) > 0) {}
    await backfillStatsPage(env.DB, 2);
    const body = await stats({ network_id: id, ...DAY });
    expect(body.complete).toBe(true);
    expect(body.totals).toMatchObject({ conversions: 2, amount: [{ currency: "USD", amount: "15.00" }] });
  });

  it("groups by day in the time zone asked, across a change to summer time", async () => {
    const { id } = await createNetwork();
    await deliverAcked(EVENTS, [
      conversion(id, { at: "2026-03-28T22:30:00.000Z" }), // 23:30 in Paris, the 28th
      conversion(id, { at: "2026-03-28T23:30:00.000Z" }), // 00:30 in Paris, the 29th
      conversion(id, { at: "2026-03-29T21:30:00.000Z" }), // 23:30 in Paris (summer time), the 29th
      conversion(id, { at: "2026-03-29T22:30:00.000Z" }), // 00:30 in Paris, the 30th
    ]);
    const query = { network_id: id, since: "2026-03-28", until: "2026-03-31" };
    const paris = await stats({ ...query, group_by: "day", time_zone: "Europe/Paris" });
    expect(paris.data.map((row) => [row.group.day, row.conversions])).toEqual([
      ["2026-03-28", 1],
      ["2026-03-29", 2],
      ["2026-03-30", 1],
    ]);
    const utc = await stats({ ...query, group_by: "day" });
    expect(utc.data.map((row) => [row.group.day, row.conversions])).toEqual([
      ["2026-03-28", 2],
      ["2026-03-29", 2],
    ]);
    const hours = await stats({ ...query, group_by: "hour", time_zone: "Europe/Paris" });
    expect(hours.data.map((row) => row.group.hour)).toEqual([
      "2026-03-28T23:00:00+01:00",
      "2026-03-29T00:00:00+01:00",
      "2026-03-29T23:00:00+02:00",
      "2026-03-30T00:00:00+02:00",
    ]);
  });

  it("exports the groups as CSV, one column per currency", async () => {
    const { id } = await createNetwork();
    await deliverAcked(EVENTS, [
      conversion(id, { amount: "1.50", platform: "ios" }),
      conversion(id, { amount: "2.25", currency: "EUR", platform: "web" }),
    ]);
    const response = await admin(statsPath({ network_id: id, group_by: "platform", format: "csv", ...DAY }));
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/csv");
    const lines = (await response.text()).trim().split("\r\n");
    const header = lines[0]?.split(",") ?? [];
    expect(header.slice(0, 3)).toEqual(["platform", "clicks", "conversions"]);
    expect(header).toContain("amount_EUR");
    expect(header).toContain("amount_USD");
    const ios = lines.find((line) => line.startsWith("ios,"))?.split(",") ?? [];
    expect(ios[header.indexOf("amount_USD")]).toBe("1.50");
    expect(ios[header.indexOf("amount_EUR")]).toBe("0");
  });

  it("refuses what it cannot answer exactly, naming the parameter", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ group_by: "day,weekday" }, "query.group_by"],
      [{ time_zone: "Mars/Olympus" }, "query.time_zone"],
      [{ time_zone: "Asia/Kolkata" }, "query.time_zone"],
      [{ since: "2026-06-01T10:30:00Z", until: "2026-06-02" }, "query.since"],
      [{ since: "yesterday" }, "query.since"],
      [{ since: "2026-06-02", until: "2026-06-01" }, "query.until"],
      [{ since: "2024-01-01", until: "2026-06-01" }, "query.since"],
      [{ test: "maybe" }, "query.test"],
    ];
    for (const [query, location] of cases) {
      const response = await admin(statsPath(query));
      const body = await expectStatus<{ errors: { location: string }[] }>(response, response.status);
      expect([400, 422], JSON.stringify({ query, body })).toContain(response.status);
      expect(body.errors.map((e) => e.location)).toContain(location);
    }
  });

  it("refuses a time zone whose offset over the period has seconds (local mean time), naming time_zone", async () => {
    // Monrovia kept -00:44:30 until 1972: the offset Intl writes as GMT-00:44:30 was a 500 before.
    const monrovia = [
      { since: "1971-01-01", until: "1971-01-02" },
      { since: "1971-06-01T00:00:00Z", until: "1971-06-02T00:00:00Z" },
      { since: "1971-12-01", until: "1972-02-01" },
    ];
    for (const period of monrovia) await expectRefused({ ...period, time_zone: "Africa/Monrovia" }, "query.time_zone");
    // The zones and years the review found: each a 422, not a 500 (those years are out of range too).
    for (const [time_zone, since, until] of [
      ["Europe/Paris", "1850-01-01", "1850-01-02"],
      ["Africa/Monrovia", "1960-01-01", "1960-01-02"],
      ["America/New_York", "1800-01-01", "1800-01-02"],
    ] as const) {
      await expectRefused({ since, until, time_zone }, "query.since");
    }
    for (const [zone, ms] of [
      ["Europe/Paris", Date.UTC(1850, 0, 1)],
      ["Africa/Monrovia", Date.UTC(1960, 0, 1)],
      ["America/New_York", Date.UTC(1800, 0, 1)],
    ] as const) {
      let thrown: unknown;
      try {
        offsetMinutes(zone, ms);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, zone).toBeInstanceOf(ProblemError);
      expect((thrown as ProblemError).errors.map((e) => e.location)).toEqual(["query.time_zone"]);
    }
    // Once Monrovia kept GMT, it answers.
    await stats({ since: "1972-02-01", until: "1972-02-02", time_zone: "Africa/Monrovia" });
  });

  it("refuses since and until that are not real dates, or out of 1970-9999, naming them", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ since: "2026-02-31", until: "2026-03-05" }, "query.since"],
      [{ since: "2026-04-01", until: "2026-04-31" }, "query.until"],
      [{ since: "2026-13-01" }, "query.since"],
      [{ since: "2026-02-30T00:00:00Z", until: "2026-03-05" }, "query.since"],
      [{ since: "0000-01-01", until: "0000-01-02" }, "query.since"],
      [{ since: "0099-06-01", until: "0099-06-02" }, "query.since"],
      [{ since: "1969-12-31", until: "1970-01-02" }, "query.since"],
      [{ since: "9999-12-31", until: "10000-01-01" }, "query.until"],
      [{ since: "9999-12-31T00:00:00Z", until: "9999-12-31T23:00:00-05:00" }, "query.until"],
      [{ since: "zz 2026-11-01", until: "2026-11-02" }, "query.since"],
      [{ since: "2026-11-01zz", until: "2026-11-02" }, "query.since"],
      [{ since: "2026-11-01", until: "Z2026-11-02" }, "query.until"],
      [{ since: "2026-11-01T00:00:00", until: "2026-11-02" }, "query.since"],
      [{ since: "2026-11-01T00:00:00+0100", until: "2026-11-02" }, "query.since"],
    ];
    for (const [query, location] of cases) await expectRefused(query, location);
    // The range's ends answer.
    await stats({ since: "1970-01-01", until: "1970-01-02" });
    await stats({ since: "9999-12-30", until: "9999-12-31T23:00:00Z" });
    await stats({ since: "2026-02-28", until: "2026-03-01T00:00:00+01:00" });
  });

  it("lets a network key read its own numbers, without the partners' payouts", async () => {
    const { id } = await createNetwork();
    const other = await createNetwork();
    await deliverAcked(EVENTS, [conversion(id, {})]);
    const key = await createApiKey({ scope: "network", subject_id: id });
    const own = await expectStatus<StatsBody>(await withKey(key.key, statsPath({ network_id: id, ...DAY })), 200);
    expect(own.totals.conversions).toBe(1);
    expect(own.totals.payout).toBeNull();
    expect((await withKey(key.key, statsPath({ network_id: other.id, ...DAY }))).status).toBe(403);
    expect((await withKey(key.key, statsPath(DAY))).status).toBe(403);
    const operator = await stats({ network_id: id, ...DAY });
    expect(operator.totals.payout).toEqual([]);
  });
});
