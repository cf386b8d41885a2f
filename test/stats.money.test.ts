/**
 * Money in the stats roll-ups never overflows: amounts may carry 15 integer digits, so ~9,300 of the
 * largest in one roll-up row (an upsert's sum) or across rows (a query's sum) pass 2^63. Each limb
 * is summed on its own (migration 0015) and the total comes back exact.
 */
import { env } from "cloudflare:workers";
import Big from "big.js";
import { describe, expect, it } from "vitest";
import type { EventMessage } from "../src/domain/messages";
import { recountConversionsStatements } from "../src/storage/stats";
import { admin, createNetwork, expectStatus, makeEventMessage, uniqueId } from "./support/helpers";
import { deliverAcked } from "./support/queues";

const EVENTS = env.EVENTS_QUEUE_NAME;
const MAX = "999999999999999.99999999";
/** More of the largest amount than fit a 64-bit integer sum of their integer parts (2^63 / 1e15 ≈ 9,223). */
const OVERFLOWING = 9_300;

function conversion(networkId: string, at: string, platform: string): EventMessage {
  const state = { status: "pending", amount: MAX, currency: "USD", platform } as EventMessage["conversion"];
  return makeEventMessage({
    network_id: networkId,
    transaction_id: uniqueId("tx"),
    received_at: at,
    event: { ...state } as EventMessage["event"],
    conversion: { ...state, event_time: at, first_seen_at: at, version: 1 },
  });
}

/** Conversions recounted per batch, as a consumer's batch or a backfill page does. */
const PAGE = 500;

/**
 * `count` conversions of the largest amount in one hour and platform (one roll-up row). The first
 * hundred go through the events consumer; the rest are copies of one in D1, recounted by the same
 * statements the consumer runs (recountConversionsStatements), a page at a time: delivering each
 * would open a conversion object per transaction, and ~18,000 exhaust the test runtime's files.
 */
async function deliver(networkId: string, count: number, at: string, platform: string): Promise<void> {
  const first = Array.from({ length: Math.min(100, count) }, () => conversion(networkId, at, platform));
  await deliverAcked(EVENTS, first);
  const template = first[0]?.transaction_id ?? "";
  const row = await env.DB.prepare("SELECT * FROM conversions WHERE network_id = ? AND transaction_id = ?")
    .bind(networkId, template)
    .first<Record<string, unknown>>();
  const columns = Object.keys(row ?? {});
  expect(columns).toContain("transaction_id");
  for (let done = first.length; done < count; done += PAGE) {
    const n = Math.min(PAGE, count - done);
    const prefix = uniqueId("copy");
    await env.DB.prepare(
      `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?3)
       INSERT INTO conversions (${columns.join(", ")})
       SELECT ${columns.map((col) => (col === "transaction_id" ? "?4 || '-' || seq.i" : `c.${col}`)).join(", ")}
       FROM conversions c, seq WHERE c.network_id = ?1 AND c.transaction_id = ?2 AND c.test = 0`,
    )
      .bind(networkId, template, n, prefix)
      .run();
    const keys = Array.from({ length: n }, (_, k) => [networkId, `${prefix}-${k + 1}`, 0] as const);
    await env.DB.batch(recountConversionsStatements(env.DB, keys));
  }
}

interface Body {
  data: { group: Record<string, string | null>; amount: { currency: string; amount: string }[] }[];
  totals: { conversions: number; amount: { currency: string; amount: string }[] };
}

const total = (count: number) => new Big(MAX).times(count).toFixed();

async function expectExact(networkId: string, count: number, groupBy: string[]): Promise<void> {
  const query = { network_id: networkId, since: "2026-06-01", until: "2026-06-02" };
  for (const group_by of ["", ...groupBy]) {
    const response = await admin(`/v1/stats?${new URLSearchParams({ ...query, group_by })}`);
    const body = await expectStatus<Body>(response, 200);
    expect(body.totals.conversions).toBe(count);
    expect(body.totals.amount, group_by).toEqual([{ currency: "USD", amount: total(count) }]);
  }
}

/** Every money limb of every row is an exact integer, never the REAL an overflowing upsert leaves. */
async function expectIntegerLimbs(networkId: string, rows: number): Promise<void> {
  for (const table of ["stats_conversions_hourly", "stats_conversions_by_sub1_hourly"]) {
    const { results } = await env.DB.prepare(
      `SELECT typeof(amount_integer) AS integer_type, typeof(amount_fraction) AS fraction_type FROM ${table}
       WHERE network_id = ?`,
    )
      .bind(networkId)
      .all();
    expect(results, table).toEqual(Array(rows).fill({ integer_type: "integer", fraction_type: "integer" }));
  }
}

describe("stats money at the largest amounts", () => {
  it(
    "sums more than 2^63 of integer parts exactly in one roll-up row (an upsert's sum)",
    async () => {
      const { id } = await createNetwork();
      await deliver(id, OVERFLOWING, "2026-06-01T10:15:00.000Z", "ios");
      await expectExact(id, OVERFLOWING, ["platform", "sub1"]);
      await expectIntegerLimbs(id, 1);
    },
    10 * 60_000,
  );

  it(
    "sums rows each below 2^63 but above it together exactly (a query's sum), for a network and the whole hub",
    async () => {
      const { id } = await createNetwork();
      await deliver(id, OVERFLOWING / 2, "2026-06-01T11:15:00.000Z", "web");
      await deliver(id, OVERFLOWING / 2, "2026-06-01T12:15:00.000Z", "android");
      await expectExact(id, OVERFLOWING, ["hour", "sub1"]);
      const body = await expectStatus<Body>(
        await admin(
          `/v1/stats?${new URLSearchParams({ since: "2026-06-01", until: "2026-06-02", group_by: "platform" })}`,
        ),
        200,
      );
      expect(body.data.find((row) => row.group.platform === "web")?.amount).toEqual([
        { currency: "USD", amount: total(OVERFLOWING / 2) },
      ]);
      await expectIntegerLimbs(id, 2);
    },
    10 * 60_000,
  );
});
