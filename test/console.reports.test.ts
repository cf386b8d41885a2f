/**
 * The console's reports page: the same numbers as GET /v1/stats (chart and table), the groups as a
 * CSV file, a network key held to its own network without payouts, and a filter from an edited URL
 * refused by name.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { EventMessage } from "../src/domain/messages";
import { consoleFetch, createApiKey, page, signIn, textOf } from "./support/console";
import { admin, createNetwork, expectStatus, makeEventMessage, uniqueId } from "./support/helpers";
import { deliverAcked } from "./support/queues";

function conversion(networkId: string, status: string, amount: string, at: string): EventMessage {
  const state = { status, amount, currency: "EUR" } as EventMessage["conversion"];
  return makeEventMessage({
    network_id: networkId,
    transaction_id: uniqueId("tx"),
    received_at: at,
    event: { ...state } as EventMessage["event"],
    conversion: { ...state, event_time: at, first_seen_at: at, version: 1 },
  });
}

describe("console reports", () => {
  it("shows the stats the API answers, by day and as a table, and downloads them as CSV", async () => {
    const { id } = await createNetwork();
    await deliverAcked(env.EVENTS_QUEUE_NAME, [
      conversion(id, "approved", "12.50", "2026-05-03T09:00:00.000Z"),
      conversion(id, "pending", "7.25", "2026-05-03T10:00:00.000Z"),
      conversion(id, "declined", "99.00", "2026-05-04T10:00:00.000Z"),
    ]);
    const session = await signIn();
    const query = `network_id=${id}&since=2026-05-01&until=2026-05-08&group_by=day`;
    const html = await page(session, `/console/reports?${query}`);
    expect(html).toContain('id="daily-chart"');
    const table = textOf(html, "stats");
    expect(table).toContain("2026-05-03");
    expect(table).toContain("19.75 EUR");
    const api = await expectStatus<{ totals: { amount: { amount: string }[]; conversions: number } }>(
      await admin(`/v1/stats?${query}`),
      200,
    );
    expect(api.totals.conversions).toBe(3);
    expect(table).toContain(`${api.totals.amount[0]?.amount} EUR`);

    const csv = await consoleFetch(session, `/console/reports/export?${query}&format=csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get("content-disposition")).toContain("attachment");
    const lines = (await csv.text()).trim().split("\r\n");
    const header = lines[0]?.split(",") ?? [];
    const may3 = lines.find((line) => line.startsWith("2026-05-03"))?.split(",") ?? [];
    expect(may3[header.indexOf("conversions")]).toBe("2");
    expect(may3[header.indexOf("amount_EUR")]).toBe("19.75");
  });

  it("holds a network key to its own network and never shows it payouts", async () => {
    const { id } = await createNetwork();
    const other = await createNetwork();
    await deliverAcked(env.EVENTS_QUEUE_NAME, [conversion(other.id, "approved", "50.00", "2026-05-03T09:00:00.000Z")]);
    const key = await createApiKey("network", id);
    const session = await signIn(key.key);
    const html = await page(session, `/console/reports?network_id=${other.id}&since=2026-05-01&until=2026-05-08`);
    expect(textOf(html, "stats")).not.toContain("50.00");
    expect(html).not.toContain("Payout");
  });

  it("refuses a period it cannot answer with a 422 page saying why, never a 500", async () => {
    const session = await signIn();
    for (const [query, detail] of [
      ["since=1850-01-01&until=1850-01-02&time_zone=Europe/Paris", "since is out of range"],
      ["since=1960-01-01&until=1960-01-02&time_zone=Africa/Monrovia", "since is out of range"],
      ["since=1800-01-01&until=1800-01-02&time_zone=America/New_York", "since is out of range"],
      ["since=1971-01-01&until=1971-01-02&time_zone=Africa/Monrovia", "Africa/Monrovia is -00:44:30 from UTC"],
      ["since=0000-01-01&until=0000-01-02", "since is out of range"],
      ["since=2026-05-01&until=10000-01-01", "query.until"],
    ]) {
      const html = await page(session, `/console/reports?${query}`, 422);
      expect(html, query).toContain(detail);
    }
  });

  it("refuses a grouping from an edited URL, naming it", async () => {
    const session = await signIn();
    const html = await page(session, "/console/reports?group_by=weekday", 422);
    expect(html).toContain("query.group_by");
  });
});
