/**
 * The inbound log by time across networks, without an index by time (migration 0022): retention
 * and the overview's chart walk it network by network, and miss no network.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { postbacksByVerdict } from "../src/storage/overview";
import { pruneInboundLog } from "../src/storage/requests";
import { uniqueId } from "./support/helpers";

async function record(networkId: string, receivedAt: string, verdict = "accepted", status = 200) {
  await env.DB.prepare(
    `INSERT INTO inbound_requests (request_id, network_id, received_at, route, method, status, verdict, body_bytes, excerpt)
     VALUES (?, ?, ?, 'postback', 'POST', ?, ?, 0, '{}')`,
  )
    .bind(uniqueId("req"), networkId, receivedAt, status, verdict)
    .run();
}

async function left(networkIds: string[]): Promise<Record<string, number>> {
  const { results } = await env.DB.prepare(
    "SELECT network_id, count(*) AS n FROM inbound_requests WHERE network_id IN (SELECT value FROM json_each(?)) GROUP BY network_id",
  )
    .bind(JSON.stringify(networkIds))
    .all<{ network_id: string; n: number }>();
  return Object.fromEntries(results.map((row) => [row.network_id, row.n]));
}

describe("the inbound log by time", () => {
  it("is pruned in every network, and only before the cut", async () => {
    // Ids that sort before, between and after whatever other tests logged.
    const networks = [`!${uniqueId("net")}`, uniqueId("net"), `~${uniqueId("net")}`];
    for (const networkId of networks) {
      await record(networkId, "2020-01-01T00:00:00.000Z");
      await record(networkId, "2020-01-02T00:00:00.000Z");
      await record(networkId, "2030-01-01T00:00:00.000Z");
    }
    const pruned = await pruneInboundLog(env.DB, "2021-01-01T00:00:00.000Z");
    expect(pruned.requests).toBeGreaterThanOrEqual(6);
    expect(await left(networks)).toEqual(Object.fromEntries(networks.map((id) => [id, 1])));
  });

  it("is counted for the overview across every network", async () => {
    const since = "2031-06-01T00:00:00.000Z";
    const networks = [`!${uniqueId("net")}`, `~${uniqueId("net")}`];
    await record(networks[0] ?? "", "2031-06-01T00:10:00.000Z");
    await record(networks[1] ?? "", "2031-06-01T00:20:00.000Z");
    await record(networks[1] ?? "", "2031-06-01T00:30:00.000Z", "unauthorized", 401);
    await record(networks[1] ?? "", "2031-05-01T00:00:00.000Z");
    const counts = await postbacksByVerdict(env.DB, since, 86_400);
    const bySeries = Object.fromEntries(counts.map((row) => [row.series, row.n]));
    expect(bySeries).toEqual({ accepted: 2, rejected: 1 });
  });
});
