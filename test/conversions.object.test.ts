import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConversionObject, type EventsQueue } from "../src/conversions/conversion-object";
import { conversionObjectName } from "../src/domain/conversion";
import type { EventMessage } from "../src/domain/messages";
import { PostbackSchema } from "../src/domain/postback";
import {
  admin,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makeEventMessage,
  makePostback,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { countSqlWrites, type SqlWrite } from "./support/sql-writes";

interface Answer {
  status: string;
  event_id: string;
  conversion_status: string;
}

function stubFor(networkId: string, transactionId: string, test = false) {
  return env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, test));
}

async function send(network: TestNetwork, body: Record<string, unknown>, expected = 200) {
  return expectStatus<Answer>(await postback(network, body), expected);
}

async function history(network: TestNetwork, transactionId: string, count: number) {
  return eventually(async () => {
    const { results } = await env.DB.prepare(
      "SELECT verdict, status FROM conversion_events WHERE network_id = ? AND transaction_id = ? ORDER BY seq",
    )
      .bind(network.id, transactionId)
      .all<{ verdict: string; status: string }>();
    return results.length >= count ? results : null;
  });
}

describe("ConversionObject decisions through the ingest route", () => {
  it("replays the original answer for a duplicate and records nothing new", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const first = await send(network, body);
    const response = await postback(network, body);
    const again = await expectStatus<Answer>(response, 200);
    expect(again).toEqual({ ...first, status: "duplicate" });
    expect(response.headers.get("idempotent-replayed")).toBe("true");
    const inside = await stubFor(network.id, String(body.transaction_id)).inspect();
    expect(inside.events).toBe(1);
  });

  it("treats a re-sent postback with a fresh event_time and an equal amount as a duplicate", async () => {
    const network = await createNetwork();
    const body = makePostback({ amount: "29.90", event_time: "2026-01-01T00:00:00Z" });
    const first = await send(network, body);
    const again = await send(network, { ...body, amount: "29.9", event_time: "2026-01-01T00:05:00Z" });
    expect(again.status).toBe("duplicate");
    expect(again.event_id).toBe(first.event_id);
  });

  it("updates on an allowed transition and keeps both events in the history", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    await send(network, body);
    const updated = await send(network, { ...body, status: "approved" });
    expect(updated).toMatchObject({ status: "updated", conversion_status: "approved" });
    const events = await history(network, String(body.transaction_id), 2);
    expect(events).toEqual([
      { verdict: "accepted", status: "pending" },
      { verdict: "updated", status: "approved" },
    ]);
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, String(body.transaction_id));
      return found?.status === "approved" ? found : null;
    });
    expect(row.status).toBe("approved");
  });

  it("keeps the recorded fields an update leaves out, and treats a repeat of it as a duplicate", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending", meta: { sub1: "spring" } });
    await send(network, body);
    const update = { transaction_id: body.transaction_id, status: "paid" };
    const updated = await send(network, update);
    expect(updated).toMatchObject({ status: "updated", conversion_status: "paid" });
    expect(await send(network, update)).toEqual({ ...updated, status: "duplicate" });
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, String(body.transaction_id));
      return found?.status === "paid" ? found : null;
    });
    expect(row).toMatchObject({
      amount: "29.99",
      currency: "USD",
      campaign_id: "camp-1",
      click_id: "clk-1",
      platform: "web",
      meta: JSON.stringify({ sub1: "spring" }),
    });
  });

  it("keeps a late, older event as stale without rolling the conversion back", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved", event_time: "2026-11-01T12:00:00Z" });
    await send(network, body);
    const late = await send(network, { ...body, status: "pending", event_time: "2026-11-01T11:00:00Z" });
    expect(late).toMatchObject({ status: "stale", conversion_status: "approved" });
    const events = await history(network, String(body.transaction_id), 2);
    expect(events.map((e) => e.verdict)).toEqual(["accepted", "stale"]);
    const row = await conversionInD1(network.id, String(body.transaction_id));
    expect(row?.status).toBe("approved");
  });

  it("answers 409 naming the differing fields for the same status with another amount", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved", amount: "10.00" });
    await send(network, body);
    const problem = await expectStatus<{ code: string; errors: { location: string }[] }>(
      await postback(network, { ...body, amount: "12.00", currency: "EUR" }),
      409,
    );
    expect(problem.code).toBe("conversion_conflict");
    expect(problem.errors.map((e) => e.location)).toEqual(["body.amount", "body.currency"]);
    expect((await stubFor(network.id, String(body.transaction_id)).inspect()).events).toBe(1);
  });

  // With the network's own times: without them, approved after reversed is a late arrival (stale),
  // since approved can only come before reversed (see "whose clock" below).
  it("answers 409 for a transition the table forbids", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "reversed", event_time: "2026-11-01T10:00:00Z" });
    await send(network, body);
    const problem = await expectStatus<{ errors: { location: string; message: string }[] }>(
      await postback(network, { ...body, status: "approved", event_time: "2026-11-01T11:00:00Z" }),
      409,
    );
    expect(problem.errors).toEqual([
      { location: "body.status", message: expect.stringContaining("reversed is final") },
    ]);
  });

  it("gives exactly one accepted and 49 duplicates for 50 simultaneous copies", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const answers = await Promise.all(Array.from({ length: 50 }, () => send(network, body)));
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === "accepted")).toHaveLength(1);
    expect(statuses.filter((s) => s === "duplicate")).toHaveLength(49);
    expect(new Set(answers.map((a) => a.event_id)).size).toBe(1);
    const events = await history(network, String(body.transaction_id), 1);
    expect(events).toHaveLength(1);
  });
});

describe("whose clock: a receipt time is not the network's", () => {
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

  it("applies approved (1 h ago) → paid (no time) → reversed (10 min ago), ending reversed", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved", event_time: minutesAgo(60) });
    const transactionId = String(body.transaction_id);
    expect((await send(network, body)).status).toBe("accepted");
    // No event_time: the receipt time (now) stands in, which is later than the network's own clock below.
    expect(await send(network, { transaction_id: transactionId, status: "paid" })).toMatchObject({
      status: "updated",
      conversion_status: "paid",
    });
    const reversedAt = minutesAgo(10);
    expect(
      await send(network, { transaction_id: transactionId, status: "reversed", event_time: reversedAt }),
    ).toMatchObject({
      status: "updated",
      conversion_status: "reversed",
    });
    expect((await stubFor(network.id, transactionId).inspect()).state).toMatchObject({
      status: "reversed",
      event_time: reversedAt,
      event_time_supplied: true,
    });
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, transactionId);
      return found?.status === "reversed" ? found : null;
    });
    expect(row).toMatchObject({ event_time: reversedAt, event_time_supplied: 1 });
    expect((await history(network, transactionId, 3)).map((e) => e.verdict)).toEqual([
      "accepted",
      "updated",
      "updated",
    ]);
  });

  it("keeps a late pending without times as stale, not a conflict: it can only have come before approved", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    await send(network, body);
    const late = await send(network, { ...body, status: "pending" });
    expect(late).toMatchObject({ status: "stale", conversion_status: "approved" });
    // A status that neither follows nor precedes is still a conflict.
    await send(network, { transaction_id: body.transaction_id, status: "declined" });
    await expectStatus(await postback(network, { transaction_id: body.transaction_id, status: "reversed" }), 409);
  });

  it("still judges two times the network supplied: an older one is stale", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "paid", event_time: minutesAgo(10) });
    await send(network, body);
    const reversal = { transaction_id: body.transaction_id, status: "reversed", event_time: minutesAgo(60) };
    expect(await send(network, reversal)).toMatchObject({ status: "stale", conversion_status: "paid" });
  });

  /** An object as main left it: no schema_version, no event_time_supplied, a paid state. */
  async function legacyObject(networkId: string, transactionId: string, eventTime: string, receivedAt: string) {
    const stub = stubFor(networkId, transactionId);
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec(`
        CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), network_id TEXT NOT NULL,
          transaction_id TEXT NOT NULL, status TEXT NOT NULL, event_time TEXT NOT NULL, fields TEXT NOT NULL,
          version INTEGER NOT NULL, first_seen_at TEXT NOT NULL, last_event_at TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
          fingerprint TEXT NOT NULL, verdict TEXT NOT NULL, answer TEXT NOT NULL, received_at TEXT NOT NULL);
        CREATE INDEX events_by_fingerprint ON events (fingerprint);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, message TEXT NOT NULL, due_at INTEGER NOT NULL DEFAULT 0,
          sends INTEGER NOT NULL DEFAULT 0);
      `);
      const answer = {
        status: "accepted",
        event_id: "evt_legacy",
        network_id: networkId,
        transaction_id: transactionId,
      };
      state.storage.sql.exec(
        "INSERT INTO events (event_id, fingerprint, verdict, answer, received_at) VALUES ('evt_legacy', 'f', 'accepted', ?, ?)",
        JSON.stringify({ ...answer, conversion_status: "paid" }),
        receivedAt,
      );
      state.storage.sql.exec(
        "INSERT INTO state VALUES (1, ?, ?, 'paid', ?, ?, 1, ?, ?)",
        networkId,
        transactionId,
        eventTime,
        JSON.stringify({ status: "paid", amount: "5.00", currency: "USD" }),
        receivedAt,
        receivedAt,
      );
    });
    return stub;
  }

  it("upgrades an object from before: a state time equal to its event's receipt time counts as inferred", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    const receivedAt = minutesAgo(5);
    const stub = await legacyObject(network.id, transactionId, receivedAt, receivedAt);
    expect((await stub.inspect()).state).toMatchObject({ status: "paid", event_time_supplied: false });
    const reversal = { transaction_id: transactionId, status: "reversed", event_time: minutesAgo(30) };
    expect(await send(network, reversal)).toMatchObject({ status: "updated", conversion_status: "reversed" });
  });

  it("upgrades an object from before: any other state time was the network's", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    const stub = await legacyObject(network.id, transactionId, minutesAgo(20), minutesAgo(5));
    expect((await stub.inspect()).state).toMatchObject({ status: "paid", event_time_supplied: true });
    const reversal = { transaction_id: transactionId, status: "reversed", event_time: minutesAgo(30) };
    expect(await send(network, reversal)).toMatchObject({ status: "stale", conversion_status: "paid" });
  });
});

describe("ConversionObject outbox", () => {
  it("keeps the event and retries when the queue refuses it, until it reaches D1", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const stub = stubFor(network.id, String(body.transaction_id));
    let failures = 0;
    await runInDurableObject(stub, (instance: ConversionObject) => {
      const real = instance.eventsQueue;
      const flaky: EventsQueue = {
        sendBatch: async (messages, options) => {
          if (failures < 2) {
            failures++;
            throw new Error("injected queue failure");
          }
          return real.sendBatch(messages, options);
        },
      };
      instance.eventsQueue = flaky;
    });

    await send(network, body);
    const row = await eventually(() => conversionInD1(network.id, String(body.transaction_id)), 20_000);
    expect(failures).toBe(2);
    expect(row.status).toBe("approved");
    expect((await stub.inspect()).outbox).toBe(0);
  });

  it("holds the outbox row while the queue keeps failing", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const stub = stubFor(network.id, String(body.transaction_id));
    await runInDurableObject(stub, (instance: ConversionObject) => {
      instance.eventsQueue = {
        sendBatch: async () => {
          throw new Error("queue down");
        },
      };
    });
    await send(network, body);
    await runDurableObjectAlarm(stub);
    expect((await stub.inspect()).outbox).toBe(1);
    expect(await conversionInD1(network.id, String(body.transaction_id))).toBeNull();
  });

  it("keeps the row after the queue took it, and sends it again until D1 confirms it", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    const stub = stubFor(network.id, transactionId);
    // The first two sends are taken and lost, as by wrangler dev's in-memory queue when it is killed.
    let lost = 0;
    await runInDurableObject(stub, (instance: ConversionObject) => {
      const real = instance.eventsQueue;
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          if (lost < 2) {
            lost++;
            return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
          }
          return real.sendBatch(messages, options);
        },
      };
    });
    const resendMs = Number(env.OUTBOX_RESEND_SECONDS) * 1000;

    const sentAt = Date.now();
    await send(network, body);
    await eventually(async () => (lost === 1 ? true : null));
    expect(await stub.inspect()).toMatchObject({ outbox: 1 });
    const firstResend = await alarmOf(stub);
    expect(firstResend).toBeGreaterThanOrEqual(sentAt + resendMs);
    expect(firstResend).toBeLessThanOrEqual(Date.now() + resendMs);

    // Time passes: the row is due again, and this send is lost too; the next wait doubles.
    await makeOutboxDue(stub);
    const secondSentAt = Date.now();
    await runDurableObjectAlarm(stub);
    expect(lost).toBe(2);
    expect(await stub.inspect()).toMatchObject({ outbox: 1 });
    expect(await alarmOf(stub)).toBeGreaterThanOrEqual(secondSentAt + 2 * resendMs);
    expect(await conversionInD1(network.id, transactionId)).toBeNull();

    await makeOutboxDue(stub);
    await runDurableObjectAlarm(stub);
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    expect(row.status).toBe("approved");
    // The events consumer's receipt empties the outbox, and the next wake-up is the dedupe window's end
    // (after one at once: the object had told D1 of an overdue event, and takes that back first).
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    const windowMs = Number(env.DEDUPE_WINDOW_DAYS) * 86_400_000;
    await eventually(async () => (((await alarmOf(stub)) ?? 0) >= sentAt + windowMs ? true : null));
    expect(
      await env.DB.prepare("SELECT count(*) AS n FROM outbox_unconfirmed WHERE object_id = ?")
        .bind(stub.id.toString())
        .first<{ n: number }>(),
    ).toEqual({ n: 0 });
  });

  it("sends a new event at once without writing its event row again", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const stub = stubFor(network.id, String(body.transaction_id));
    const sent: EventMessage[] = [];
    const writes = await runInDurableObject(stub, (instance: ConversionObject, state) => {
      instance.eventsQueue = losingQueue(sent);
      return countSqlWrites(state);
    });
    const resendMs = Number(env.OUTBOX_RESEND_SECONDS) * 1000;
    const recordedFrom = Date.now();
    await send(network, body);
    await eventually(async () => (sent.length === 1 ? true : null));
    // The alarm is done once it set the next one: the resend, when D1 has not confirmed the event.
    await eventually(async () => (((await alarmOf(stub)) ?? 0) >= recordedFrom + resendMs ? true : null));
    expect(eventWrites(writes())).toEqual(["INSERT INTO events: 1"]);
    expect(await outboxRow(stub)).toMatchObject({ sends: 1, due_at: await alarmOf(stub) });
  });

  it("sends a new event the queue refused at its next try, still without writing its row again", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const stub = stubFor(network.id, String(body.transaction_id));
    const sent: EventMessage[] = [];
    let refused = 0;
    const writes = await runInDurableObject(stub, (instance: ConversionObject, state) => {
      const losing = losingQueue(sent);
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          if (refused === 0) {
            refused++;
            throw new Error("injected: queue refused the send");
          }
          return losing.sendBatch(messages, options);
        },
      };
      return countSqlWrites(state);
    });
    const resendMs = Number(env.OUTBOX_RESEND_SECONDS) * 1000;
    const recordedFrom = Date.now();
    await send(network, body);
    // The retry after the refusal (a second later) sends it: it was never sent, so it is not waiting for its due time.
    await eventually(async () => (sent.length === 1 ? true : null));
    expect(refused).toBe(1);
    await eventually(async () => (((await alarmOf(stub)) ?? 0) >= recordedFrom + resendMs ? true : null));
    expect(eventWrites(writes())).toEqual(["INSERT INTO events: 1"]);
    expect(await outboxRow(stub)).toMatchObject({ sends: 1 });
  });

  it("sends an event its lost instance never sent from a new instance at its first alarm, writing nothing", async () => {
    const { network, body, stub, refusedSends } = await refusingObject(makePostback());
    const resendMs = Number(env.OUTBOX_RESEND_SECONDS) * 1000;
    const recordedFrom = Date.now();
    await send(network, body);
    await eventually(async () => (refusedSends() > 0 ? true : null));
    const recorded = await outboxRow(stub);
    expect(recorded).toMatchObject({ sends: 1 });
    expect(recorded.due_at).toBeGreaterThanOrEqual(recordedFrom + resendMs);
    // A new instance over the same storage, without the memory of the row it was to send first
    // (workerd's abort() cannot be caught in a test). Its send goes through the real queue.
    const sent: EventMessage[] = [];
    const writes = await runInDurableObject(stub, async (_instance, state) => {
      const writes = countSqlWrites(state);
      const instance = new ConversionObject(state, env);
      instance.eventsQueue = forwardingQueue(sent);
      await instance.alarm();
      return writes;
    });
    expect(sent.map((message) => message.transaction_id)).toEqual([body.transaction_id]);
    expect(Date.now()).toBeLessThan(recorded.due_at);
    // D1 has the event, and its receipt takes the row away: the send itself wrote nothing.
    const row = await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    expect(row.status).toBe("approved");
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    expect(eventWrites(writes())).toEqual(["UPDATE events: 1"]);
  });

  it("sends every row again from a new instance whose first send the queue refused", async () => {
    const { network, body, stub, refusedSends } = await refusingObject(makePostback({ status: "pending" }));
    const first = await send(network, body);
    await send(network, { ...body, status: "approved" });
    await eventually(async () => (refusedSends() > 0 ? true : null));
    const sent: EventMessage[] = [];
    await runInDurableObject(stub, async (_instance, state) => {
      const instance = new ConversionObject(state, env);
      let refusals = 0;
      const losing = losingQueue(sent);
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          if (refusals++ === 0) throw new Error("injected: queue refused the send");
          return losing.sendBatch(messages, options);
        },
      };
      await instance.alarm();
      expect(sent).toEqual([]);
      // A receipt for the first event, before any send: the wake-up it sets is at once, not the other row's due time.
      await instance.confirm([first.event_id]);
      expect(await state.storage.getAlarm()).toBeLessThanOrEqual(Date.now());
      await instance.alarm();
    });
    expect(sent.map((message) => message.conversion.status)).toEqual(["approved"]);
    expect(await outboxRow(stub)).toMatchObject({ sends: 1 });
  });

  it("sends every row its lost instance left at once from a new instance, more than one batch of them", async () => {
    const { network, body, stub, refusedSends } = await refusingObject(makePostback());
    await send(network, body);
    await eventually(async () => (refusedSends() > 0 ? true : null));
    // The lost instance recorded 150 events (more than the alarm's batch of 100), none sent: each
    // row charged for its first send, due a resend delay later, as `append` leaves it.
    const sent: EventMessage[] = [];
    await runInDurableObject(stub, async (_instance, state) => {
      const sql = state.storage.sql;
      const first = sql
        .exec<{ message: string; due_at: number }>("SELECT message, due_at FROM events WHERE seq = 1")
        .one();
      for (let seq = 2; seq <= 150; seq++) {
        const message = { ...(JSON.parse(first.message) as EventMessage), event_id: `evt_lost_${seq}` };
        sql.exec(
          `INSERT INTO events (seq, event_id, fingerprint, verdict, answer, received_at, hash, prev_hash, message, due_at, sends)
           SELECT ?, ?, 'fp-' || ?, verdict, answer, received_at, NULL, NULL, ?, due_at, 1 FROM events WHERE seq = 1`,
          seq,
          message.event_id,
          seq,
          JSON.stringify(message),
        );
      }
      const instance = new ConversionObject(state, env);
      instance.eventsQueue = losingQueue(sent);
      await instance.alarm();
      // The rest were never sent either: they are due at once, not a resend delay later.
      expect(await state.storage.getAlarm()).toBeLessThanOrEqual(Date.now());
      await instance.alarm();
      expect(Date.now()).toBeLessThan(first.due_at);
    });
    expect(new Set(sent.map((message) => message.event_id)).size).toBe(150);
  });

  it("upgrades an object written before receipts existed and still sends its row", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    const stub = stubFor(network.id, transactionId);
    const message = makeEventMessage({ network_id: network.id, transaction_id: transactionId });
    await runInDurableObject(stub, (_instance, state) => {
      // The schema as it was: an outbox without due_at and sends.
      state.storage.sql.exec(`
        CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), network_id TEXT NOT NULL,
          transaction_id TEXT NOT NULL, status TEXT NOT NULL, event_time TEXT NOT NULL, fields TEXT NOT NULL,
          version INTEGER NOT NULL, first_seen_at TEXT NOT NULL, last_event_at TEXT NOT NULL);
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
          fingerprint TEXT NOT NULL, verdict TEXT NOT NULL, answer TEXT NOT NULL, received_at TEXT NOT NULL);
        CREATE TABLE outbox (seq INTEGER PRIMARY KEY, message TEXT NOT NULL);
      `);
      state.storage.sql.exec(
        "INSERT INTO events (seq, event_id, fingerprint, verdict, answer, received_at) VALUES (1, ?, 'f', 'accepted', '{}', ?)",
        message.event_id,
        message.received_at,
      );
      state.storage.sql.exec("INSERT INTO outbox (seq, message) VALUES (1, ?)", JSON.stringify(message));
      // Its alarm was pending when the new code arrived.
      return state.storage.setAlarm(Date.now());
    });
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    expect(row.status).toBe("pending");
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
  });

  it("leaves no object behind for a read: a peek, an inspection, a stray receipt, an alarm", async () => {
    const stub = stubFor("nobody", uniqueId("tx"));
    const peeked = await stub.peek({
      network_id: "nobody",
      transaction_id: "tx-1",
      postback: PostbackSchema.parse(makePostback({ transaction_id: "tx-1" })),
      received_at: new Date().toISOString(),
    });
    expect(peeked).toMatchObject({ ok: true, current_status: null, answer: { status: "accepted" } });
    expect(await stub.inspect()).toEqual({ state: null, events: 0, outbox: 0 });
    await stub.confirm(["evt_none"]);
    await runInDurableObject(stub, (instance: ConversionObject) => instance.alarm());
    const tables = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray(),
    );
    expect(tables).toEqual([]);
  });

  // The object used to clear itself entirely here; it now keeps a one-row tail (state and chain
  // head), so that the lifecycle and the hash chain continue after the window.
  it("keeps only its tail once the dedupe window has passed and the outbox is empty", async () => {
    const network = await createNetwork();
    const body = makePostback();
    await send(network, body);
    const stub = stubFor(network.id, String(body.transaction_id));
    await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    await endDedupeWindow(stub);
    expect(await stub.inspect()).toEqual({
      state: expect.objectContaining({ status: "approved" }),
      events: 0,
      outbox: 0,
    });
    expect(await alarmOf(stub)).toBeNull();
    // D1 keeps the record.
    expect((await conversionInD1(network.id, String(body.transaction_id)))?.status).toBe("approved");
  });

  it("continues the lifecycle, the seqs and the hash chain after the dedupe window", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    const transactionId = String(body.transaction_id);
    const first = await send(network, body);
    const stub = stubFor(network.id, transactionId);
    await eventually(() => conversionInD1(network.id, transactionId));
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    const head = await stub.chainHead();
    const firstSeenAt = (await conversionInD1(network.id, transactionId))?.first_seen_at;
    await endDedupeWindow(stub);

    // A re-sent copy of the current postback is still its duplicate, with its original answer.
    expect(await send(network, body)).toEqual({ ...first, status: "duplicate" });
    // A re-sent older status is a late arrival against the real state, not a new conversion.
    expect(await send(network, { ...body, status: "pending" })).toMatchObject({
      status: "stale",
      conversion_status: "approved",
    });
    // A real change months later applies, and reaches D1 as the next link of the same chain.
    expect(await send(network, { transaction_id: transactionId, status: "reversed" })).toMatchObject({
      status: "updated",
      conversion_status: "reversed",
    });
    const rows = await eventually(async () => {
      const { results } = await env.DB.prepare(
        "SELECT seq, verdict, hash, prev_hash FROM conversion_events WHERE network_id = ? AND transaction_id = ? ORDER BY seq",
      )
        .bind(network.id, transactionId)
        .all<{ seq: number; verdict: string; hash: string; prev_hash: string | null }>();
      return results.length === 3 ? results : null;
    });
    expect(rows.map((r) => [r.seq, r.verdict])).toEqual([
      [1, "accepted"],
      [2, "stale"],
      [3, "updated"],
    ]);
    expect(rows[1]?.prev_hash).toBe(head?.hash);
    expect(rows[2]?.prev_hash).toBe(rows[1]?.hash);
    expect((await stubFor(network.id, transactionId).chainHead())?.seq).toBe(3);
    const row = await eventually(async () => {
      const found = await conversionInD1(network.id, transactionId);
      return found?.status === "reversed" ? found : null;
    });
    // The same life of the conversion: D1 applies it as the next state, not as a reborn object's.
    expect(row.first_seen_at).toBe(firstSeenAt);
    const proof = await expectStatus<{ status: string }>(
      await admin(`/v1/conversions/${network.id}/${transactionId}/proof`),
      200,
    );
    expect(proof.status).toBe("verified");
  });

  it("keeps where its chain begins and where retention cut it in the tail, and vouches for a cut by its head's time", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    const transactionId = String(body.transaction_id);
    await send(network, body);
    await send(network, { transaction_id: transactionId, status: "paid" });
    const stub = stubFor(network.id, transactionId);
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    await endDedupeWindow(stub);
    const head = await stub.chainHead();
    expect(head).toMatchObject({ seq: 2, chain_from: 1, retention: null, in_flight: [] });
    expect(head?.state).toMatchObject({
      status: "paid",
      fields: { status: "paid", amount: "29.99" },
      version: expect.any(Number),
    });
    const seq1 = await env.DB.prepare(
      "SELECT hash FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND seq = 1",
    )
      .bind(network.id, transactionId)
      .first<{ hash: string }>();
    const cut = { seq: 1, hash: String(seq1?.hash), before: new Date().toISOString() };
    // The tail no longer knows when seq 1 was received; its last event (seq 2) was received "now".
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE state SET last_event_at = ?", new Date(Date.now() + 60_000).toISOString());
    });
    expect(await stub.cutChain(cut)).toMatchObject({ accepted: false });
    // Once even its last event is older than the cutoff, any cut on its chain is within retention's rule.
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE state SET last_event_at = ?", "2000-01-01T00:00:00.000Z");
    });
    expect(await stub.cutChain(cut)).toMatchObject({ accepted: true });
    expect(await stub.cutChain({ ...cut, seq: 3 })).toMatchObject({ accepted: false });
    expect(await stub.chainHead()).toMatchObject({ chain_from: 1, retention: cut });
  });

  it("keeps the tail through a shortened DEDUPE_WINDOW_DAYS, as configured", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    await send(network, body);
    const stub = stubFor(network.id, transactionId);
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    // A window of about 1 ms: the next alarm finds it over.
    await runInDurableObject(stub, (instance: ConversionObject) => {
      Object.assign(instance, { env: { ...env, DEDUPE_WINDOW_DAYS: String(1 / 86_400_000) } });
    });
    await runInDurableObject(stub, (instance: ConversionObject) => instance.alarm());
    expect(await stub.inspect()).toMatchObject({ events: 0, outbox: 0, state: { status: "approved" } });
  });
});

/** Makes the object's last event older than any window, and runs its alarm. */
async function endDedupeWindow(stub: ConversionStub): Promise<void> {
  await runInDurableObject(stub, (_instance, state) => {
    state.storage.sql.exec("UPDATE state SET last_event_at = ?", "2000-01-01T00:00:00.000Z");
    return state.storage.setAlarm(Date.now());
  });
  await runDurableObjectAlarm(stub);
}

type ConversionStub = ReturnType<typeof stubFor>;

function alarmOf(stub: ConversionStub): Promise<number | null> {
  return runInDurableObject(stub, (_instance, state) => state.storage.getAlarm());
}

function outboxRow(stub: ConversionStub): Promise<{ sends: number; due_at: number }> {
  return runInDurableObject(stub, (_instance, state) =>
    state.storage.sql
      .exec<{ sends: number; due_at: number }>("SELECT sends, due_at FROM events WHERE message IS NOT NULL")
      .one(),
  );
}

/** The statements that wrote event rows (the outbox is in them), by their first words, with the rows each wrote. */
function eventWrites(writes: readonly SqlWrite[]): string[] {
  return writes.flatMap((write) => {
    const statement = /^(INSERT INTO|UPDATE|DELETE FROM) events\b/.exec(write.sql)?.[0];
    return statement ? [`${statement}: ${write.rows}`] : [];
  });
}

/** Takes every send and loses it (nothing reaches D1), keeping what it was sent. */
function losingQueue(sent: EventMessage[]): EventsQueue {
  return {
    sendBatch: async (messages) => {
      sent.push(...[...messages].map((message) => message.body));
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
    },
  };
}

/** Refuses every send, telling `onRefusal` each time. */
/** A new conversion's object whose queue refuses every send, so that its instance can be "lost" before sending. */
async function refusingObject(body: Record<string, unknown>) {
  const network = await createNetwork();
  const stub = stubFor(network.id, String(body.transaction_id));
  let refused = 0;
  await runInDurableObject(stub, (instance: ConversionObject) => {
    instance.eventsQueue = refusingQueue(() => refused++);
  });
  return { network, body, stub, refusedSends: () => refused };
}

function refusingQueue(onRefusal: () => void): EventsQueue {
  return {
    sendBatch: async () => {
      onRefusal();
      throw new Error("injected: queue refused the send");
    },
  };
}

/** Passes every send on to the real EVENTS queue, keeping what it was sent. */
function forwardingQueue(sent: EventMessage[]): EventsQueue {
  return {
    sendBatch: async (messages, options) => {
      const batch = [...messages];
      sent.push(...batch.map((message) => message.body));
      return env.EVENTS.sendBatch(batch, options);
    },
  };
}

function makeOutboxDue(stub: ConversionStub): Promise<void> {
  return runInDurableObject(stub, (_instance, state) => {
    state.storage.sql.exec("UPDATE events SET due_at = 0 WHERE message IS NOT NULL");
  });
}

describe("admin reads after ingest", () => {
  it("shows the conversion with its history", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending", meta: { sub1: "spring" } });
    await send(network, body);
    await send(network, { ...body, status: "paid" });
    const detail = await eventually(async () => {
      const response = await admin(`/v1/conversions/${network.id}/${body.transaction_id}`);
      if (response.status !== 200) return null;
      const json = (await response.json()) as { status: string; events: { verdict: string }[] };
      return json.events.length === 2 ? json : null;
    });
    expect(detail).toMatchObject({ status: "paid", meta: { sub1: "spring" }, amount: "29.99" });
    expect(detail.events.map((e) => e.verdict)).toEqual(["accepted", "updated"]);
  });
});
