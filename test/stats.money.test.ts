/**
 * Money in the stats roll-ups never overflows: amounts may carry 15 integer digits, so ~9,300 of the
 * largest in one roll-up row (an upsert's sum) or across rows (a query's sum) pass 2^63. Each limb
 * is summed on its own (migration 0015) and the total comes back exact.
 */
import { env } from "cloudflare:workers";
import Big from "big.js";
import { describe, expect, it } from "vitest";
import type { EventMessage } from "../src/domain/messages";
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

async function deliver(networkId: string, count: number, at: string, platform: string): Promise<void> {
  for (let sent = 0; sent < count; sent += 100) {
    const size = Math.min(100, count - sent);
    await deliverAcked(
      EVENTS,
      Array.from({ length: size }, () => conversion(networkId, at, platform)),
    );
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
