/**
 * Reliability, in workerd: queue send failures injected into the outbox flush lose nothing. Every
 * conversion's object gets a queue that first refuses the send (an exception), then takes the
 * message and loses it (what wrangler dev's in-memory queue does when it is killed), and only then
 * delivers. Every acknowledged postback must still reach D1 and the partner, exactly once. And the
 * gauge of events unconfirmed past their resend deadline rises with the lost sends, from D1, and
 * falls back to 0 once D1 confirms them, also when the objects restarted in between.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect, it } from "vitest";
import { ConversionObject } from "../src/conversions/conversion-object";
import { conversionObjectName } from "../src/domain/conversion";
import {
  admin,
  createNetwork,
  createPartner,
  eventually,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";

const CONVERSIONS = 24;

/** The unconfirmed-events gauge and its oldest age, as GET /metrics answers them. */
async function unconfirmedGauge(): Promise<{ events: number; oldest_age_seconds: number }> {
  const response = await admin("/metrics");
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const sample = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  return {
    events: sample("postback_hub_outbox_unconfirmed"),
    oldest_age_seconds: sample("postback_hub_outbox_unconfirmed_oldest_age_seconds"),
  };
}

async function unconfirmedRows(objectIds: readonly string[]): Promise<{ object_id: string; events: number }[]> {
  const { results } = await env.DB.prepare(
    "SELECT object_id, events FROM outbox_unconfirmed WHERE object_id IN (SELECT value FROM json_each(?))",
  )
    .bind(JSON.stringify(objectIds))
    .all<{ object_id: string; events: number }>();
  return results;
}

it("loses nothing when the outbox's queue refuses, then loses, every event's first sends", async () => {
  const network = await createNetwork();
  const prefix = `/ok/${uniqueId("faults")}`;
  await createPartner({ url_template: `${PARTNER}${prefix}?tx={transaction_id}`, filters: { networks: [network.id] } });
  const bodies = Array.from({ length: CONVERSIONS }, () => makePostback());
  const stubs = bodies.map((body) =>
    env.CONVERSIONS.getByName(conversionObjectName(network.id, String(body.transaction_id), false)),
  );
  const injected = { refused: 0, swallowed: 0, passed: 0 };
  for (const stub of stubs) {
    await runInDurableObject(stub, (instance: ConversionObject) => {
      const real = instance.eventsQueue;
      let calls = 0;
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          calls++;
          if (calls === 1) {
            injected.refused++;
            throw new Error("injected: queue refused the send");
          }
          if (calls === 2) {
            injected.swallowed++;
            return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
          }
          injected.passed++;
          return real.sendBatch(messages, options);
        },
      };
    });
  }

  const resends = async () =>
    (
      await env.DB.prepare(
        "SELECT coalesce(sum(value), 0) AS n FROM metric_counters WHERE name = 'postback_hub_outbox_resends'",
      ).first<{
        n: number;
      }>()
    )?.n ?? 0;
  const resendsBefore = await resends();
  const answers = await Promise.all(bodies.map((body) => postback(network, body)));
  const acknowledged = answers.filter((response) => response.status === 200).length;
  // The refused sends retry on their own (1 s backoff); the lost ones wait OUTBOX_RESEND_SECONDS
  // (300 s), which the test skips by making every row due and running each object's alarm.
  await eventually(async () => (injected.swallowed === CONVERSIONS ? true : null), 20_000);
  for (const stub of stubs) {
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE events SET due_at = 0 WHERE message IS NOT NULL");
    });
    await runDurableObjectAlarm(stub);
  }

  const ids = bodies.map((body) => String(body.transaction_id));
  const stored = await eventually(async () => {
    const { results } = await env.DB.prepare(
      "SELECT transaction_id FROM conversions WHERE network_id = ? AND transaction_id IN (SELECT value FROM json_each(?))",
    )
      .bind(network.id, JSON.stringify(ids))
      .all<{ transaction_id: string }>();
    return results.length === CONVERSIONS ? results : null;
  }, 20_000);
  const received = await eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= CONVERSIONS ? log : null;
  }, 20_000);
  const deliveredIds = received.map((request) => new URL(request.url).searchParams.get("tx"));
  // Each event's receipt empties its object's outbox.
  await Promise.all(stubs.map((stub) => eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null))));
  const outboxes = await Promise.all(stubs.map(async (stub) => (await stub.inspect()).outbox));
  const counts = {
    sent: bodies.length,
    acknowledged,
    ...injected,
    stored: stored.length,
    delivered: new Set(deliveredIds).size,
    lost: ids.filter((id) => !deliveredIds.includes(id) || !stored.some((row) => row.transaction_id === id)).length,
    outbox_rows_left: outboxes.reduce((sum, n) => sum + n, 0),
  };
  console.log("[reliability] queue send failures in the outbox flush", JSON.stringify(counts));

  expect(acknowledged).toBe(CONVERSIONS);
  expect(injected).toEqual({ refused: CONVERSIONS, swallowed: CONVERSIONS, passed: CONVERSIONS });
  expect(counts.lost).toBe(0);
  expect(deliveredIds.toSorted()).toEqual(ids.toSorted());
  expect(counts.outbox_rows_left).toBe(0);
  // Each lost send was sent again once, and D1 was told (GET /metrics, the outbox_unconfirmed rule).
  expect((await resends()) - resendsBefore).toBe(CONVERSIONS);
  // Sent again was not yet confirmed, so the objects reported them; each confirmation took its row away.
  await eventually(async () => ((await unconfirmedGauge()).events === 0 ? true : null));
  expect(await unconfirmedRows(stubs.map((stub) => stub.id.toString()))).toEqual([]);
});

it("keeps a gauge of events unconfirmed past their deadline, back to 0 once D1 confirms them, across a restart", async () => {
  const count = 5;
  const network = await createNetwork();
  const bodies = Array.from({ length: count }, () => makePostback());
  const stubs = bodies.map((body) =>
    env.CONVERSIONS.getByName(conversionObjectName(network.id, String(body.transaction_id), false)),
  );
  const ids = stubs.map((stub) => stub.id.toString());
  let lost = 0;
  for (const stub of stubs) {
    await runInDurableObject(stub, (instance: ConversionObject) => {
      // Takes every send and loses it: nothing reaches D1, so nothing is confirmed.
      instance.eventsQueue = {
        sendBatch: async () => {
          lost++;
          return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
        },
      };
    });
  }
  await eventually(async () => ((await unconfirmedGauge()).events === 0 ? true : null));
  const answers = await Promise.all(bodies.map((body) => postback(network, body)));
  expect(answers.map((response) => response.status)).toEqual(bodies.map(() => 200));
  await eventually(async () => (lost === count ? true : null));
  // Sent once and lost: not overdue before the resend deadline, so no object has told D1 anything.
  expect(await unconfirmedRows(ids)).toEqual([]);

  // Past the deadline (every row made due): sent again, lost again, and now overdue.
  const resendAll = async () => {
    for (const stub of stubs) {
      await runInDurableObject(stub, (_instance, state) => {
        state.storage.sql.exec("UPDATE events SET due_at = 0 WHERE message IS NOT NULL");
      });
      await runDurableObjectAlarm(stub);
    }
  };
  await resendAll();
  expect(lost).toBe(2 * count);
  expect((await unconfirmedRows(ids)).map((row) => row.events)).toEqual(ids.map(() => 1));
  const risen = await unconfirmedGauge();
  expect(risen.events).toBe(count);
  expect(risen.oldest_age_seconds).toBeGreaterThanOrEqual(0);
  // Sent again and lost once more: still the same events, counted once.
  await resendAll();
  expect(lost).toBe(3 * count);
  expect((await unconfirmedGauge()).events).toBe(count);

  // The objects restart: a new instance over the same storage, without the lossy queue or any memory
  // (workerd's abort() cannot be caught in a test). What they reported stays in D1 meanwhile.
  expect((await unconfirmedGauge()).events).toBe(count);
  for (const stub of stubs) {
    await runInDurableObject(stub, async (_instance, state) => {
      state.storage.sql.exec("UPDATE events SET due_at = 0 WHERE message IS NOT NULL");
      await new ConversionObject(state, env).alarm();
    });
  }
  // Sent through the real queue: D1 confirms, and each object's alarm takes its row away.
  await Promise.all(stubs.map((stub) => eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null))));
  await eventually(async () => ((await unconfirmedRows(ids)).length === 0 ? true : null));
  expect(lost).toBe(3 * count);
  expect(await unconfirmedGauge()).toEqual({ events: 0, oldest_age_seconds: 0 });
});

it("counts an event the queue refused for longer than the resend delay, and stops once the queue takes it", async () => {
  const network = await createNetwork();
  const body = makePostback();
  const stub = env.CONVERSIONS.getByName(conversionObjectName(network.id, String(body.transaction_id), false));
  const id = stub.id.toString();
  let refused = 0;
  await runInDurableObject(stub, (instance: ConversionObject) => {
    instance.eventsQueue = {
      sendBatch: async () => {
        refused++;
        throw new Error("injected: queue refused the send");
      },
    };
  });
  expect((await postback(network, body)).status).toBe(200);
  await eventually(async () => (refused > 0 ? true : null));
  // Refused just now: not overdue yet.
  expect(await unconfirmedRows([id])).toEqual([]);

  // An hour of refusals (the row's receipt time moved back an hour): the alarm reports it, unsent.
  const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
  const original = await runInDurableObject(stub, (_instance, state) => {
    const { message } = state.storage.sql
      .exec<{ message: string }>("SELECT message FROM events WHERE message IS NOT NULL")
      .one();
    state.storage.sql.exec(
      "UPDATE events SET message = json_set(message, '$.received_at', ?) WHERE message IS NOT NULL",
      hourAgo,
    );
    return message;
  });
  await runDurableObjectAlarm(stub);
  expect(await unconfirmedRows([id])).toEqual([{ object_id: id, events: 1 }]);
  const gauge = await unconfirmedGauge();
  expect(gauge.events).toBe(1);
  expect(gauge.oldest_age_seconds).toBeGreaterThanOrEqual(3_600);

  // The queue takes it: sent, within its resend deadline again, so no longer counted; D1 confirms it.
  await runInDurableObject(stub, (instance: ConversionObject, state) => {
    state.storage.sql.exec("UPDATE events SET message = ?, due_at = 0 WHERE message IS NOT NULL", original);
    instance.eventsQueue = env.EVENTS;
  });
  await runDurableObjectAlarm(stub);
  await eventually(async () => ((await unconfirmedRows([id])).length === 0 ? true : null));
  await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
  expect(await unconfirmedGauge()).toEqual({ events: 0, oldest_age_seconds: 0 });
});

it("counts an event a lost instance never sent, when the new instance's queue refuses it past the resend delay", async () => {
  const network = await createNetwork();
  const body = makePostback();
  const stub = env.CONVERSIONS.getByName(conversionObjectName(network.id, String(body.transaction_id), false));
  const id = stub.id.toString();
  let refused = 0;
  const refusing = {
    sendBatch: async () => {
      refused++;
      throw new Error("injected: queue refused the send");
    },
  };
  await runInDurableObject(stub, (instance: ConversionObject) => {
    instance.eventsQueue = refusing;
  });
  expect((await postback(network, body)).status).toBe(200);
  await eventually(async () => (refused > 0 ? true : null));

  // An hour later, a new instance (workerd's abort() cannot be caught in a test) finds the row as
  // it was recorded, charged for a send it never got, and the queue still refuses. The old
  // instance's retries are stopped, so that only the new one reports.
  const hourAgo = Date.now() - 3_600_000;
  await runInDurableObject(stub, async (_instance, state) => {
    state.storage.sql.exec(
      "UPDATE events SET message = json_set(message, '$.received_at', ?), due_at = ? WHERE message IS NOT NULL",
      new Date(hourAgo).toISOString(),
      hourAgo + Number(env.OUTBOX_RESEND_SECONDS) * 1000,
    );
    const instance = new ConversionObject(state, env);
    instance.eventsQueue = refusing;
    await instance.alarm();
    await state.storage.deleteAlarm();
  });
  expect(await unconfirmedRows([id])).toEqual([{ object_id: id, events: 1 }]);

  await runInDurableObject(stub, (instance: ConversionObject) => {
    instance.eventsQueue = env.EVENTS;
    return instance.alarm();
  });
  await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
  await eventually(async () => ((await unconfirmedRows([id])).length === 0 ? true : null));
});
