/**
 * An attributed event's history row carries its payout from its insert, and its conversion the
 * verdict from its upsert (issue 16: the updates that wrote them afterwards wrote each row twice),
 * also when its message comes again; an event nobody is credited with keeps none.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { click, clickIdOf, seedOffer } from "./support/attribution";
import { createNetwork, createPartner, makeEventMessage, PARTNER, uniqueId } from "./support/helpers";

let counter = 0;
async function deliver(bodies: unknown[]) {
  const batch = createMessageBatch(
    "postback-events",
    bodies.map((body) => ({ id: `payout-${++counter}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  const handler: ExportedHandler<Env> = worker;
  await handler.queue?.(batch, env, ctx);
  const result = await getQueueResult(batch, ctx);
  expect(result.ackAll).toBe(true);
}

async function historyRows(eventId: string) {
  const { results } = await env.DB.prepare(
    "SELECT payout, payout_currency, payout_partner_id FROM conversion_events WHERE event_id = ?",
  )
    .bind(eventId)
    .all();
  return results;
}

function eventFor(networkId: string, clickId: string | null) {
  const receivedAt = new Date().toISOString();
  const fields = {
    status: "approved" as const,
    amount: "29.99",
    currency: "USD",
    ...(clickId ? { click_id: clickId } : {}),
  };
  return makeEventMessage({
    network_id: networkId,
    received_at: receivedAt,
    event: fields,
    conversion: { ...fields, event_time: receivedAt, first_seen_at: receivedAt, version: 1 },
  });
}

describe("an event's payout in its history row", () => {
  it("is written with the row, and again the same when the message comes twice", async () => {
    const network = await createNetwork();
    const alice = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("p")}?tx={transaction_id}`,
      routing: "attributed",
    });
    const offer = await seedOffer(network.id, {
      payouts: { default: [{ status: "approved", fixed: { amount: "5", currency: "USD" } }], partners: {} },
    });
    const response = await click(`/c/${offer.id}?p=${alice.id}`);
    expect(response.status).toBe(302);
    const message = eventFor(network.id, clickIdOf(response));
    await deliver([message]);
    const expected = [{ payout: "5.00", payout_currency: "USD", payout_partner_id: alice.id }];
    expect(await historyRows(message.event_id)).toEqual(expected);
    await deliver([message]);
    expect(await historyRows(message.event_id)).toEqual(expected);
    // The conversion took the verdict in its upsert (the update after it finds nothing to change).
    const conversion = await env.DB.prepare(
      "SELECT attribution, offer_id, attributed_partner_id, payout, payout_currency FROM conversions WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, message.transaction_id)
      .first();
    expect(conversion).toEqual({
      attribution: "click",
      offer_id: offer.id,
      attributed_partner_id: alice.id,
      payout: "5.00",
      payout_currency: "USD",
    });
  });

  it("stays empty for an event nobody is credited with", async () => {
    const network = await createNetwork();
    const message = eventFor(network.id, null);
    await deliver([message]);
    await deliver([message]);
    expect(await historyRows(message.event_id)).toEqual([
      { payout: null, payout_currency: null, payout_partner_id: null },
    ]);
  });
});
