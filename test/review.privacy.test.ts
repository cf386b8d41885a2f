/**
 * Review of erasure by click id against what the click pipeline keeps: a click id that the
 * advertiser sent back in another case, a click message that ended as a dead letter, and a click
 * message delivered again after its click was erased.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { ClickMessage } from "../src/domain/click";
import worker from "../src/index";
import { BROWSER_UA, click, clickIdOf, clickRows, seedOffer } from "./support/attribution";
import {
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makeEventMessage,
  makePostback,
  PARTNER,
  postback,
  uniqueId,
} from "./support/helpers";
import { d1RowsContaining } from "./support/privacy";

async function deliver(queue: string, bodies: unknown[]) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: uniqueId("msg"), timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  const handler: ExportedHandler<Env> = worker;
  await handler.queue?.(batch, env, ctx);
  return getQueueResult(batch, ctx);
}

async function erase(
  body: Record<string, unknown>,
): Promise<{ id: string; status: string; run: { counts: { d1: Record<string, number> } } }> {
  const response = await admin("/v1/erasure", { method: "POST", body: JSON.stringify(body) });
  expect([200, 201]).toContain(response.status);
  return (await response.json()) as never;
}

async function clickOnOffer(sub1 = "placement-7") {
  const network = await createNetwork();
  const partner = await createPartner({
    url_template: `${PARTNER}/ok/${uniqueId("review-privacy")}?tx={transaction_id}`,
    routing: "attributed",
  });
  const offer = await seedOffer(network.id);
  const clickId = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}&sub1=${sub1}`));
  await eventually(async () => ((await clickRows(offer.id)).length > 0 ? true : null));
  return { network, partner, offer, clickId };
}

/** The click's queue message as the redirect sends it. */
function clickMessage(clickId: string, offerId: string, partnerId: string, sub1: string): ClickMessage {
  return {
    v: 1,
    clicks: [
      {
        click_id: clickId,
        offer_id: offerId,
        partner_id: partnerId,
        clicked_at: new Date().toISOString(),
        sub_ids: { sub1 },
        country: "DE",
        user_agent: BROWSER_UA,
        referrer: "https://blog.example",
        ip_prefix: "203.0.113.0/24",
      },
    ],
  };
}

describe("review: erasing a click id", () => {
  it("finds the conversions that carry the click id in another case", async () => {
    const { network, clickId } = await clickOnOffer();
    const tx = uniqueId("tx");
    // The advertiser stored the id upper-cased; the hub reads it case-insensitively and credits it.
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId.toUpperCase() })),
      200,
    );
    await eventually(async () => ((await conversionInD1(network.id, tx))?.attribution === "click" ? true : null));
    // The operator erases the click as the hub minted it (and shows it in the click's record).
    const answer = await erase({ click_id: clickId });
    expect(answer.status).toBe("complete");
    expect(await d1RowsContaining(clickId.toUpperCase())).toEqual({});
    expect(await d1RowsContaining(clickId)).toEqual({});
  });

  it("leaves no User-Agent, sub id or address in the dead letter of a click message", async () => {
    const { offer, partner, clickId } = await clickOnOffer("secret-placement");
    const result = await deliver(env.CLICKS_DLQ_NAME, [
      clickMessage(clickId, offer.id, partner.id, "secret-placement"),
    ]);
    expect(result.ackAll).toBe(true);
    // docs/attribution.md: the User-Agent "is not stored"; the click's row keeps only what it keeps.
    const { results } = await env.DB.prepare("SELECT body FROM dead_letters WHERE queue = ? AND instr(body, ?) > 0")
      .bind(env.CLICKS_DLQ_NAME, clickId)
      .all<{ body: string }>();
    expect(results).toHaveLength(1);
    expect(results[0]?.body).not.toContain("Mozilla");
    await erase({ click_id: clickId });
    for (const kept of ["secret-placement", "203.0.113.0/24", "Mozilla"]) {
      expect(await d1RowsContaining(kept), kept).toEqual({});
    }
  });

  it("is not undone by a copy of the click's message delivered after the erasure", async () => {
    const { offer, partner, clickId } = await clickOnOffer("again-placement");
    await erase({ click_id: clickId });
    // Queues deliver at least once: a late copy (or the dead-letter queue's) arrives.
    const result = await deliver(env.CLICKS_QUEUE_NAME, [
      clickMessage(clickId, offer.id, partner.id, "again-placement"),
    ]);
    expect(result.ackAll).toBe(true);
    const rows = await clickRows(offer.id);
    expect(rows).toHaveLength(1);
    expect(await d1RowsContaining(clickId)).toEqual({});
  });
});

describe("review: an erasure that overtakes a conversion", () => {
  it("still credits the click of a conversion received before the erasure but written after it", async () => {
    const { network, partner, offer, clickId } = await clickOnOffer();
    const receivedAt = new Date(Date.now() - 1000).toISOString();
    // The visitor asks for the click to be erased while its conversion is still in the EVENTS queue.
    await erase({ click_id: clickId });
    const tx = uniqueId("tx");
    const message = makeEventMessage({
      network_id: network.id,
      transaction_id: tx,
      received_at: receivedAt,
      event: { status: "approved", click_id: clickId },
      conversion: {
        status: "approved",
        click_id: clickId,
        event_time: receivedAt,
        first_seen_at: receivedAt,
        version: 1,
      },
    });
    const result = await deliver(env.EVENTS_QUEUE_NAME, [message]);
    expect(result.ackAll).toBe(true);
    const row = await conversionInD1(network.id, tx);
    // Written erased, as docs/privacy.md says, but the verdict it earned stands.
    expect(String(row?.click_id)).toMatch(/^erased:/);
    expect(row).toMatchObject({ attribution: "click", offer_id: offer.id, attributed_partner_id: partner.id });
  });
});

describe("review: erasing what a delivery's failure said", () => {
  it("rewrites the delivery's last error as it rewrites the attempt's error it copies", async () => {
    const network = await createNetwork();
    await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("review-privacy")}?tx={transaction_id}&u={user_id}`,
      filters: { networks: [network.id] },
    });
    const person = uniqueId("person");
    const body = makePostback({ user_id: person });
    await expectStatus(await postback(network, body), 200);
    const delivery = await eventually(async () =>
      env.DB.prepare("SELECT id FROM deliveries WHERE network_id = ? AND transaction_id = ? AND attempts > 0")
        .bind(network.id, body.transaction_id)
        .first<{ id: string }>(),
    );
    // A failed attempt whose error quotes the request (a network error naming the URL): the
    // delivery's last_error is that attempt's error (storage/deliveries.ts finishAttemptStatements).
    const error = `network error: could not connect to https://partner.test/ok?u=${person}`;
    await env.DB.batch([
      env.DB.prepare("UPDATE delivery_attempts SET error = ? WHERE delivery_id = ?").bind(error, delivery.id),
      env.DB.prepare("UPDATE deliveries SET last_error = ? WHERE id = ?").bind(error, delivery.id),
    ]);
    await erase({ user_id: person });
    expect(await d1RowsContaining(person)).toEqual({});
  });
});
