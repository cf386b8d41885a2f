/**
 * The DELIVERIES consumer hands each delivery to its partner's coordinator and acks: one D1 read
 * per batch finds each delivery's partner, conversion and place, and the other unfinished
 * deliveries of the same conversion to the same partner. Nothing is attempted here (the
 * coordinator does that: test/coordinator.partner.test.ts); a coordinator that cannot take its
 * deliveries gets them again, and a batch D1 cannot read comes back whole.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { WorkItem } from "../src/coordinator/partner-coordinator";
import { conversionKeyOf } from "../src/domain/conversion";
import type { Coordinators } from "../src/queues/coordinator-handover";
import { consumeDeliveries, consumeDeliveryDeadLetters } from "../src/queues/delivery-consumer";
import { batchOf, deliveryRow, message, pendingDelivery } from "./support/deliveries";
import { createPartner, uniqueId } from "./support/helpers";

/** Coordinators that record what they are given; `failing` partners refuse it. */
function recording(failing: string[] = []) {
  const submitted = new Map<string, WorkItem[]>();
  const coordinators: Coordinators = {
    submit: async (partnerId, items) => {
      if (failing.includes(partnerId)) throw new Error("coordinator unavailable (injected)");
      submitted.set(partnerId, [...(submitted.get(partnerId) ?? []), ...items]);
    },
  };
  return { coordinators, submitted };
}

const partner = () => createPartner({ url_template: "https://partner.test/ok/pb?tx={transaction_id}" });

describe("delivery consumer: handing over to coordinators", () => {
  it("gives each partner its own deliveries, with their conversion, place and status, and acks", async () => {
    const [a, b] = [await partner(), await partner()];
    const tx = uniqueId("tx");
    const first = await pendingDelivery(a.id, { transaction_id: tx, version: 1, status: "pending" });
    const second = await pendingDelivery(a.id, { transaction_id: tx, version: 2, status: "approved" });
    const other = await pendingDelivery(b.id, { transaction_id: tx, version: 2 });
    const { coordinators, submitted } = recording();
    const { batch, messages } = batchOf([message(second), message(other)]);
    await consumeDeliveries(batch, { db: env.DB, coordinators });
    for (const m of messages) expect(m.ack).toHaveBeenCalledOnce();
    // The first delivery's own message has not come yet: its partner's coordinator learns of it
    // now, so it goes first.
    const key = conversionKeyOf("acme", tx, false);
    expect(submitted.get(a.id)?.sort((x, y) => x.position - y.position)).toEqual([
      { delivery_id: first, conversion: key, position: 1, due_ms: expect.any(Number), status: "pending", fresh: 1 },
      { delivery_id: second, conversion: key, position: 2, due_ms: expect.any(Number), status: "approved", fresh: 1 },
    ]);
    expect(submitted.get(b.id)?.map((item) => item.delivery_id)).toEqual([other]);
  });

  it("leaves out what is finished, and keeps test and live apart; a replayed delivery is not fresh", async () => {
    const p = await partner();
    const tx = uniqueId("tx");
    const delivered = await pendingDelivery(p.id, { transaction_id: tx, version: 1, state: "delivered", attempts: 1 });
    const testOne = await pendingDelivery(p.id, { transaction_id: tx, version: 1, test: true });
    const replayed = await pendingDelivery(p.id, { transaction_id: tx, version: 2, attempts: 3 });
    const due = new Date(Date.now() + 60_000).toISOString();
    const later = await pendingDelivery(p.id, { transaction_id: tx, version: 3, next_attempt_at: due });
    const { coordinators, submitted } = recording();
    const { batch, messages } = batchOf([message(delivered), message(replayed), message(later)]);
    await consumeDeliveries(batch, { db: env.DB, coordinators });
    for (const m of messages) expect(m.ack).toHaveBeenCalledOnce();
    const items = submitted.get(p.id) ?? [];
    expect(items.map((item) => item.delivery_id).sort()).toEqual([replayed, later].sort());
    expect(items.find((item) => item.delivery_id === replayed)?.fresh).toBe(0);
    expect(items.find((item) => item.delivery_id === later)?.due_ms).toBe(Date.parse(due));
    expect(items.some((item) => item.delivery_id === testOne)).toBe(false);
  });

  it("retries the messages of a partner whose coordinator could not take them, acking the others'", async () => {
    const [down, up] = [await partner(), await partner()];
    const downId = await pendingDelivery(down.id);
    const upId = await pendingDelivery(up.id);
    const { coordinators, submitted } = recording([down.id]);
    const { batch, messages } = batchOf([message(downId), message(upId)]);
    await consumeDeliveries(batch, { db: env.DB, coordinators });
    expect(messages[0]?.ack).not.toHaveBeenCalled();
    expect(messages[0]?.retry).toHaveBeenCalledOnce();
    expect(messages[1]?.ack).toHaveBeenCalledOnce();
    expect(submitted.has(up.id)).toBe(true);
    expect((await deliveryRow(downId))?.state).toBe("pending");
  });

  it("keeps an unreadable message as a dead letter, and retries a batch D1 cannot read", async () => {
    const { coordinators } = recording();
    const invalid = batchOf([{ nonsense: true }]);
    await consumeDeliveries(invalid.batch, { db: env.DB, coordinators });
    expect(invalid.messages[0]?.ack).toHaveBeenCalledOnce();
    const letter = await env.DB.prepare("SELECT reason FROM dead_letters WHERE body LIKE '%nonsense%'").first<{
      reason: string;
    }>();
    expect(letter?.reason).toBe("invalid delivery message");

    const brokenDb = {
      prepare: (query: string) => {
        const statement = env.DB.prepare(query);
        return {
          bind: (...values: unknown[]) => ({
            all: async () => {
              statement.bind(...values);
              throw new Error("D1_ERROR: injected");
            },
          }),
        };
      },
      batch: async () => {
        throw new Error("D1_ERROR: injected");
      },
    };
    const failing = batchOf([message("dlv_whatever")]);
    await consumeDeliveries(failing.batch, { db: brokenDb as unknown as D1Database, coordinators });
    expect(failing.messages[0]?.ack).not.toHaveBeenCalled();
    expect(failing.messages[0]?.retry).toHaveBeenCalledOnce();
  });
});

describe("deliveries dead-letter queue", () => {
  it("marks the delivery dead and keeps a dead-letter row", async () => {
    const id = await pendingDelivery((await partner()).id);
    const { batch, raw } = batchOf([message(id)], "postback-deliveries-dlq");
    await consumeDeliveryDeadLetters(batch, env.DB);
    expect(raw.ackAll).toHaveBeenCalledOnce();
    expect(await deliveryRow(id)).toMatchObject({ state: "dead" });
    const letter = await env.DB.prepare("SELECT queue FROM dead_letters WHERE body LIKE ?").bind(`%${id}%`).first();
    expect(letter).toEqual({ queue: "postback-deliveries-dlq" });
  });
});
