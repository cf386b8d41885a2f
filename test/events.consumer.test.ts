import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { deliveryIdFor } from "../src/delivery/partner";
import worker from "../src/index";
import { retryDelaySeconds } from "../src/queues/events-consumer";
import {
  conversionInD1,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  makeEventMessage,
  PARTNER,
  partnerLog,
  uniqueId,
} from "./support/helpers";

let messageCounter = 0;
async function deliver(queue: string, bodies: unknown[], testEnv: Env = env) {
  const batch = createMessageBatch(
    queue,
    bodies.map((body) => ({ id: `msg-${++messageCounter}`, timestamp: new Date(), attempts: 1, body })),
  );
  const ctx = createExecutionContext();
  const handler: ExportedHandler<Env> = worker;
  await handler.queue?.(batch, testEnv, ctx);
  return getQueueResult(batch, ctx);
}

/** D1 whose writes fail, as during an outage. */
function envWithFailingD1(): Env {
  const db = {
    prepare: (query: string) => env.DB.prepare(query),
    batch: async () => {
      throw new Error("D1_ERROR: injected failure");
    },
  };
  return { ...env, DB: db as unknown as D1Database };
}

async function historyCount(eventId: string): Promise<number> {
  const row = await env.DB.prepare("SELECT count(*) AS n FROM conversion_events WHERE event_id = ?")
    .bind(eventId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

describe("EVENTS consumer", () => {
  it("writes the history row and the conversion, then acks the batch", async () => {
    const message = makeEventMessage();
    const result = await deliver("postback-events", [message]);
    expect(result.ackAll).toBe(true);
    expect(result.retryBatch.retry).toBe(false);
    expect(await historyCount(message.event_id)).toBe(1);
    expect(await conversionInD1("acme", message.transaction_id)).toMatchObject({ status: "pending", amount: "5.00" });
  });

  it("is idempotent when a message comes twice, in one batch or across batches", async () => {
    const message = makeEventMessage();
    await deliver("postback-events", [message, message]);
    await deliver("postback-events", [message]);
    expect(await historyCount(message.event_id)).toBe(1);
    const { n } = (await env.DB.prepare(
      "SELECT count(*) AS n FROM conversions WHERE network_id = 'acme' AND transaction_id = ?",
    )
      .bind(message.transaction_id)
      .first<{ n: number }>()) ?? { n: 0 };
    expect(n).toBe(1);
  });

  it("never rolls a conversion back when an older snapshot arrives after a newer one", async () => {
    const first = makeEventMessage();
    const second = makeEventMessage({
      transaction_id: first.transaction_id,
      seq: 2,
      verdict: "updated",
      event: { status: "approved" },
      conversion: { ...first.conversion, status: "approved", version: 2 },
    });
    await deliver("postback-events", [second]);
    await deliver("postback-events", [first]);
    expect((await conversionInD1("acme", first.transaction_id))?.status).toBe("approved");
    expect(await historyCount(first.event_id)).toBe(1);
  });

  it("does not let a later life of the object roll back a conversion D1 already holds", async () => {
    // After the dedupe window the object forgets the conversion; a re-sent old postback is then
    // "accepted" by the fresh object, and D1 must not go back from paid to pending.
    const paid = makeEventMessage({ conversion: { ...makeEventMessage().conversion, status: "paid", version: 10 } });
    await deliver("postback-events", [paid]);
    const later = new Date(Date.now() + 60_000).toISOString();
    const reborn = makeEventMessage({
      transaction_id: paid.transaction_id,
      conversion: { status: "pending", event_time: later, first_seen_at: later, version: 20 },
    });
    await deliver("postback-events", [reborn]);
    expect((await conversionInD1("acme", paid.transaction_id))?.status).toBe("paid");
    expect(await historyCount(reborn.event_id)).toBe(1);

    // A real change after the window (a chargeback months later) still applies.
    const reversed = makeEventMessage({
      transaction_id: paid.transaction_id,
      event: { status: "reversed" },
      conversion: { status: "reversed", event_time: later, first_seen_at: later, version: 21 },
    });
    await deliver("postback-events", [reversed]);
    expect((await conversionInD1("acme", paid.transaction_id))?.status).toBe("reversed");
  });

  it("applies a later life's reversal dated before a receipt time D1 holds: the clocks cannot be compared", async () => {
    // The first life's paid came without event_time: D1's time for it is the hub's receipt time.
    const receivedAt = new Date(Date.now() - 60_000).toISOString();
    const paid = makeEventMessage({
      received_at: receivedAt,
      event: { status: "paid" },
      conversion: { status: "paid", event_time: receivedAt, first_seen_at: receivedAt, version: 10 },
    });
    await deliver("postback-events", [paid]);
    expect(await conversionInD1("acme", paid.transaction_id)).toMatchObject({ status: "paid", event_time_supplied: 0 });
    // A later life of the object records the network's reversal, dated (by the network) before that receipt.
    const reversedAt = new Date(Date.now() - 600_000).toISOString();
    const now = new Date().toISOString();
    const reversal = makeEventMessage({
      transaction_id: paid.transaction_id,
      event: { status: "reversed", event_time: reversedAt },
      conversion: { status: "reversed", event_time: reversedAt, first_seen_at: now, version: 20 },
    });
    await deliver("postback-events", [reversal]);
    expect(await conversionInD1("acme", paid.transaction_id)).toMatchObject({
      status: "reversed",
      event_time: reversedAt,
      event_time_supplied: 1,
    });
  });

  it("keeps D1's conversion when a later life's event is older by two times the network supplied", async () => {
    const paidAt = new Date(Date.now() - 60_000).toISOString();
    const paid = makeEventMessage({
      event: { status: "paid", event_time: paidAt },
      conversion: { status: "paid", event_time: paidAt, first_seen_at: paidAt, version: 10 },
    });
    await deliver("postback-events", [paid]);
    const reversedAt = new Date(Date.now() - 600_000).toISOString();
    const now = new Date().toISOString();
    const reversal = makeEventMessage({
      transaction_id: paid.transaction_id,
      event: { status: "reversed", event_time: reversedAt },
      conversion: { status: "reversed", event_time: reversedAt, first_seen_at: now, version: 20 },
    });
    await deliver("postback-events", [reversal]);
    expect(await conversionInD1("acme", paid.transaction_id)).toMatchObject({ status: "paid", event_time_supplied: 1 });
  });

  it("stores each event's link in the hash chain, and none for a message sent before the chain", async () => {
    const before = makeEventMessage();
    expect(before).not.toHaveProperty("hash");
    const hash = "a".repeat(64);
    const chained = makeEventMessage({ hash, prev_hash: null });
    const next = makeEventMessage({
      transaction_id: chained.transaction_id,
      seq: 2,
      hash: "b".repeat(64),
      prev_hash: hash,
    });
    const result = await deliver("postback-events", [before, chained, next]);
    expect(result.ackAll).toBe(true);
    const rows = await env.DB.prepare(
      "SELECT event_id, hash, prev_hash FROM conversion_events WHERE event_id IN (?, ?, ?) ORDER BY hash NULLS FIRST",
    )
      .bind(before.event_id, chained.event_id, next.event_id)
      .all();
    expect(rows.results).toEqual([
      { event_id: before.event_id, hash: null, prev_hash: null },
      { event_id: chained.event_id, hash, prev_hash: null },
      { event_id: next.event_id, hash: "b".repeat(64), prev_hash: hash },
    ]);
  });

  it("records a stale event in the history only", async () => {
    const first = makeEventMessage({ conversion: { ...makeEventMessage().conversion, status: "paid", version: 5 } });
    await deliver("postback-events", [first]);
    const stale = makeEventMessage({
      transaction_id: first.transaction_id,
      seq: 2,
      verdict: "stale",
      event: { status: "pending" },
      conversion: { ...first.conversion, status: "approved", version: 4 },
    });
    await deliver("postback-events", [stale]);
    expect(await historyCount(stale.event_id)).toBe(1);
    expect((await conversionInD1("acme", first.transaction_id))?.status).toBe("paid");
  });

  it("does not ack when the D1 write fails, and writes nothing of the batch", async () => {
    const message = makeEventMessage();
    const result = await deliver("postback-events", [message], envWithFailingD1());
    expect(result.ackAll).toBe(false);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages).toEqual([{ msgId: expect.any(String) }]);
    expect(await historyCount(message.event_id)).toBe(0);
  });

  it("keeps a message it cannot parse as a dead letter instead of dropping it", async () => {
    const valid = makeEventMessage();
    const result = await deliver("postback-events", [{ v: 99, nonsense: true }, valid]);
    expect(result.ackAll).toBe(true);
    expect(await historyCount(valid.event_id)).toBe(1);
    const letter = await env.DB.prepare(
      "SELECT queue, body, reason FROM dead_letters WHERE body LIKE '%nonsense%'",
    ).first<{
      queue: string;
      reason: string;
    }>();
    expect(letter?.queue).toBe("postback-events");
    expect(letter?.reason).toMatch(/invalid event message/);
  });
});

describe("EVENTS dead-letter consumer", () => {
  it("writes the event to D1 and keeps a dead-letter row, so nothing is lost", async () => {
    const message = makeEventMessage();
    const result = await deliver("postback-events-dlq", [message]);
    expect(result.ackAll).toBe(true);
    expect(await historyCount(message.event_id)).toBe(1);
    expect((await conversionInD1("acme", message.transaction_id))?.status).toBe("pending");
    const letter = await env.DB.prepare("SELECT reason FROM dead_letters WHERE queue = ? AND body LIKE ?")
      .bind("postback-events-dlq", `%${message.event_id}%`)
      .first<{ reason: string }>();
    expect(letter?.reason).toMatch(/exhausted its retries/);
  });

  it("retries rather than acks when D1 still fails", async () => {
    const result = await deliver("postback-events-dlq", [makeEventMessage()], envWithFailingD1());
    expect(result.ackAll).toBe(false);
    expect(result.retryMessages).toHaveLength(1);
  });
});

/**
 * The env with a DELIVERIES producer that records what it is sent (or refuses it), and coordinators
 * of which the `down` partners' refuse their work; every other partner's is the real one.
 */
function envHandingOver(options: { down?: string[]; hung?: string[]; queueDown?: boolean; db?: D1Database } = {}) {
  const sent: unknown[] = [];
  const deliveries = {
    sendBatch: async (messages: Iterable<{ body: unknown }>) => {
      if (options.queueDown) throw new Error("queue unavailable (injected)");
      for (const message of messages) sent.push(message.body);
    },
  };
  const coordinators = {
    getByName: (partnerId: string) =>
      options.hung?.includes(partnerId)
        ? { submit: () => new Promise<void>(() => {}) }
        : options.down?.includes(partnerId)
          ? {
              submit: async () => {
                throw new Error("coordinator unavailable (injected)");
              },
            }
          : env.COORDINATORS.getByName(partnerId),
  };
  const testEnv = { ...env, DB: options.db ?? env.DB, DELIVERIES: deliveries, COORDINATORS: coordinators };
  return { testEnv: testEnv as unknown as Env, sent };
}

/** D1 that answers everything but the read of what to hand the coordinators. */
function d1FailingTheHandoverRead(): D1Database {
  return {
    prepare: (query: string) => {
      if (!query.includes("FROM deliveries m")) return env.DB.prepare(query);
      return {
        bind: () => ({
          all: async () => {
            throw new Error("D1_ERROR: injected");
          },
        }),
      };
    },
    batch: (statements: D1PreparedStatement[]) => env.DB.batch(statements),
  } as unknown as D1Database;
}

/** A network with partners of its own (so the file's other events reach none of them). */
async function networkWithPartners(count: number) {
  const network = await createNetwork();
  const prefix = `/ok/${uniqueId("handover")}`;
  const partners = [];
  for (let i = 0; i < count; i++) {
    partners.push(
      await createPartner({
        url_template: `${PARTNER}${prefix}/${i}?tx={transaction_id}`,
        filters: { networks: [network.id] },
      }),
    );
  }
  return { network, prefix, partners };
}

async function delivered(partnerId: string) {
  return eventually(async () => {
    const rows = await deliveriesOf(partnerId);
    return rows.length > 0 && rows.every((row) => row.state === "delivered") ? rows : null;
  });
}

describe("EVENTS consumer: handing new deliveries to their coordinators", () => {
  it("gives a new delivery to its partner's coordinator without a DELIVERIES message", async () => {
    const { network, prefix, partners } = await networkWithPartners(1);
    const [partner] = partners;
    if (!partner) throw new Error("no partner");
    const { testEnv, sent } = envHandingOver();
    const message = makeEventMessage({ network_id: network.id });
    const result = await deliver("postback-events", [message], testEnv);
    expect(result.ackAll).toBe(true);
    expect(sent).toEqual([]);
    // No message could have carried it: the coordinator made the attempt.
    const [row] = await delivered(partner.id);
    expect(row?.id).toBe(await deliveryIdFor(message.event_id, partner.id));
    expect(await partnerLog(`${prefix}/0`)).toHaveLength(1);
  });

  it("does the same from the dead-letter queue", async () => {
    const { network, partners } = await networkWithPartners(1);
    const [partner] = partners;
    if (!partner) throw new Error("no partner");
    const { testEnv, sent } = envHandingOver();
    const result = await deliver("postback-events-dlq", [makeEventMessage({ network_id: network.id })], testEnv);
    expect(result.ackAll).toBe(true);
    expect(sent).toEqual([]);
    await delivered(partner.id);
  });

  it("queues exactly the deliveries whose coordinator could not take them", async () => {
    const { network, partners } = await networkWithPartners(2);
    const [down, up] = partners;
    if (!down || !up) throw new Error("no partners");
    const { testEnv, sent } = envHandingOver({ down: [down.id] });
    const messages = [makeEventMessage({ network_id: network.id }), makeEventMessage({ network_id: network.id })];
    const result = await deliver("postback-events", messages, testEnv);
    expect(result.ackAll).toBe(true);
    const expected = await Promise.all(messages.map((m) => deliveryIdFor(m.event_id, down.id)));
    expect(sent).toHaveLength(2);
    expect(sent).toEqual(expect.arrayContaining(expected.map((delivery_id) => ({ v: 1, delivery_id }))));
    expect(await delivered(up.id)).toHaveLength(2);
    expect((await deliveriesOf(down.id)).map((row) => [row.state, row.attempts])).toEqual([
      ["pending", 0],
      ["pending", 0],
    ]);
  });

  it("queues every new delivery when D1 cannot read what to hand over", async () => {
    const { network, partners } = await networkWithPartners(2);
    const { testEnv, sent } = envHandingOver({ db: d1FailingTheHandoverRead() });
    const message = makeEventMessage({ network_id: network.id });
    const result = await deliver("postback-events", [message], testEnv);
    expect(result.ackAll).toBe(true);
    const expected = await Promise.all(partners.map((p) => deliveryIdFor(message.event_id, p.id)));
    expect(sent).toHaveLength(2);
    expect(sent).toEqual(expect.arrayContaining(expected.map((delivery_id) => ({ v: 1, delivery_id }))));
    for (const partner of partners) expect((await deliveriesOf(partner.id))[0]?.attempts).toBe(0);
  });

  it("queues the deliveries of a coordinator that never answers, instead of holding every network's events", async () => {
    const { network, partners } = await networkWithPartners(2);
    const [hung, up] = partners;
    if (!hung || !up) throw new Error("no partners");
    const { testEnv, sent } = envHandingOver({ hung: [hung.id] });
    const message = makeEventMessage({ network_id: network.id });
    const result = await deliver("postback-events", [message], testEnv);
    expect(result.ackAll).toBe(true);
    expect(sent).toEqual([{ v: 1, delivery_id: await deliveryIdFor(message.event_id, hung.id) }]);
    await delivered(up.id);
  }, 30_000);

  it("retries the batch when neither the coordinator nor the queue takes a delivery, and hands it over next time", async () => {
    const { network, partners } = await networkWithPartners(1);
    const [partner] = partners;
    if (!partner) throw new Error("no partner");
    const message = makeEventMessage({ network_id: network.id });
    const refused = await deliver(
      "postback-events",
      [message],
      envHandingOver({ down: [partner.id], queueDown: true }).testEnv,
    );
    expect(refused.ackAll).toBe(false);
    expect(refused.retryMessages).toEqual([{ msgId: expect.any(String) }]);
    // D1 has the event and its delivery already; the retried batch finds the delivery unsent.
    expect(await historyCount(message.event_id)).toBe(1);
    const { testEnv, sent } = envHandingOver();
    expect((await deliver("postback-events", [message], testEnv)).ackAll).toBe(true);
    expect(sent).toEqual([]);
    await delivered(partner.id);
  });
});

describe("retry backoff", () => {
  it("doubles from 5 s and stops at 10 minutes", () => {
    expect([1, 2, 3, 4, 8, 9, 20].map(retryDelaySeconds)).toEqual([5, 10, 20, 40, 600, 600, 600]);
  });
});

describe("queue dispatch", () => {
  it("throws for a queue it has no consumer for, so the batch is retried rather than dropped", async () => {
    await expect(deliver("some-other-queue", [makeEventMessage()])).rejects.toThrow(/no consumer/);
  });
});
