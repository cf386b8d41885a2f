/**
 * What a new conversion object creates (issue 16: every table, index and row is paid for once per
 * conversion): `state` and `events` (the outbox is in the events' rows), its version in its `state`
 * table's definition, no `schema_version` row, no index, no AUTOINCREMENT, `erased_events` only once
 * an erasure needs it; one row written per recorded event, one per receipt. A new object reopened by
 * a new instance is not taken for one from before `schema_version` (which would run every upgrade
 * again, and fail); an object created by the code before keeps its layout and works as it did, its
 * outbox folded into `events` by upgrade 7 with every pending message still sent.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConversionObject } from "../src/conversions/conversion-object";
import { openSchema, SCHEMA_VERSION } from "../src/conversions/object-schema";
import { conversionObjectName } from "../src/domain/conversion";
import type { EventMessage } from "../src/domain/messages";
import {
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
import { countSqlWrites } from "./support/sql-writes";

interface Answer {
  status: string;
  event_id: string;
  conversion_status: string;
}

function stubFor(networkId: string, transactionId: string) {
  return env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, false));
}

/** A new conversion's object and the event message an older object would hold for it. */
async function olderObjectsEvent() {
  const network = await createNetwork();
  const transactionId = uniqueId("tx");
  const stub = stubFor(network.id, transactionId);
  const message = makeEventMessage({ network_id: network.id, transaction_id: transactionId });
  return { network, transactionId, stub, message };
}

async function send(network: TestNetwork, body: Record<string, unknown>) {
  return expectStatus<Answer>(await postback(network, body), 200);
}

function schemaOf(sql: SqlStorage): string[] {
  return sql
    .exec<{ type: string; name: string }>(
      "SELECT type, name FROM sqlite_master WHERE name NOT LIKE '_cf_%' ORDER BY type, name",
    )
    .toArray()
    .map((row) => `${row.type} ${row.name}`);
}

describe("a new conversion object", () => {
  it("creates state and events only, and is recognised at its version when reopened", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const first = await send(network, body);
    const stub = stubFor(network.id, String(body.transaction_id));
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      expect(schemaOf(state.storage.sql)).toEqual(["table events", "table state"]);
      // A new instance over the same storage (a restart): no upgrade runs, nothing is written.
      const reopened = new ConversionObject(state, env);
      expect(reopened).toBeDefined();
      expect(openSchema(state.storage)).toBe(true);
      expect(schemaOf(state.storage.sql)).toEqual(["table events", "table state"]);
      expect(
        state.storage.sql.exec<{ sql: string }>("SELECT sql FROM sqlite_master WHERE name = 'state'").one().sql,
      ).toContain(`-- created at schema version ${SCHEMA_VERSION}`);
    });
    // Found by fingerprint without an index: the original answer; then the lifecycle goes on.
    expect(await send(network, body)).toEqual({ ...first, status: "duplicate" });
    const update = { transaction_id: body.transaction_id, status: "approved" };
    expect(await send(network, update)).toMatchObject({ status: "updated", conversion_status: "approved" });
    expect(await send(network, update)).toMatchObject({ status: "duplicate", conversion_status: "approved" });
    expect((await stub.inspect()).events).toBe(2);
  });

  it("writes one row per recorded event, and one for the receipt that confirms it", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const transactionId = String(body.transaction_id);
    const stub = stubFor(network.id, transactionId);
    const sent: EventMessage[] = [];
    // The queue takes the messages and keeps them, so that the receipt is the test's to give.
    const writes = await runInDurableObject(stub, (instance: ConversionObject, state) => {
      instance.eventsQueue = {
        sendBatch: async (messages) => {
          sent.push(...[...messages].map((message) => message.body));
          return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
        },
      };
      return countSqlWrites(state);
    });
    await send(network, body);
    await send(network, { transaction_id: transactionId, status: "approved" });
    await eventually(async () => (sent.length === 2 ? true : null));
    const recorded = writes().filter((write) => !write.sql.startsWith("CREATE"));
    // Per event: the state's row and its own (the event with its message); the first send writes nothing.
    expect(recorded.map((write) => `${write.sql.split(" (")[0]}: ${write.rows}`)).toEqual([
      "INSERT INTO state: 1",
      "INSERT INTO events: 1",
      "INSERT INTO state: 1",
      "INSERT INTO events: 1",
    ]);
    expect(await stub.inspect()).toMatchObject({ events: 2, outbox: 2 });
    const receipt = await runInDurableObject(stub, async (instance: ConversionObject, state) => {
      const receiptWrites = countSqlWrites(state);
      await instance.confirm(sent.map((message) => message.event_id));
      // A repeated receipt finds nothing left to clear.
      await instance.confirm(sent.map((message) => message.event_id));
      return receiptWrites();
    });
    expect(receipt.map((write) => [write.sql.split(" SET")[0], write.rows])).toEqual([["UPDATE events", 2]]);
    // The events stay, the dedupe history, without their messages.
    expect(await stub.inspect()).toMatchObject({ events: 2, outbox: 0 });
  });
});

/** The layout a new object had at schema version 6, before the outbox was folded into `events`. */
const VERSION_6_LAYOUT = `
  CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 1), network_id TEXT NOT NULL,
    transaction_id TEXT NOT NULL, status TEXT NOT NULL, event_time TEXT NOT NULL,
    event_time_supplied INTEGER NOT NULL, fields TEXT NOT NULL, version INTEGER NOT NULL,
    first_seen_at TEXT NOT NULL, last_event_at TEXT NOT NULL, answer TEXT,
    head_seq INTEGER NOT NULL DEFAULT 0, head_hash TEXT, chain_from INTEGER, retention_seq INTEGER,
    retention_hash TEXT, retention_before TEXT, source TEXT NOT NULL DEFAULT 's2s', erased TEXT);
  CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL, verdict TEXT NOT NULL, answer TEXT NOT NULL, received_at TEXT NOT NULL,
    hash TEXT, prev_hash TEXT);
  CREATE INDEX events_by_fingerprint ON events (fingerprint);
  CREATE TABLE outbox (seq INTEGER PRIMARY KEY, message TEXT NOT NULL, due_at INTEGER NOT NULL DEFAULT 0,
    sends INTEGER NOT NULL DEFAULT 0);
  CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
  CREATE TABLE erased_events (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, content_hash TEXT,
    erasure_ids TEXT NOT NULL, fields TEXT NOT NULL);
  INSERT INTO schema_version (id, version) VALUES (1, 6);
`;

/**
 * A version 6 object holding one pending event, seq 1: its state, and its outbox row, sent once by
 * an earlier instance and waiting for D1's receipt (due in an hour); its event row unless told not.
 */
function writeVersion6Object(sql: SqlStorage, message: EventMessage, withEventRow = true): void {
  sql.exec(VERSION_6_LAYOUT);
  const answer = {
    status: message.verdict,
    event_id: message.event_id,
    network_id: message.network_id,
    transaction_id: message.transaction_id,
    conversion_status: message.conversion.status,
  };
  if (withEventRow) {
    sql.exec(
      "INSERT INTO events (seq, event_id, fingerprint, verdict, answer, received_at) VALUES (1, ?, 'f', ?, ?, ?)",
      message.event_id,
      message.verdict,
      JSON.stringify(answer),
      message.received_at,
    );
  }
  sql.exec(
    `INSERT INTO state (id, network_id, transaction_id, status, event_time, event_time_supplied, fields, version,
       first_seen_at, last_event_at, answer, head_seq) VALUES (1, ?, ?, ?, ?, 0, ?, 1, ?, ?, ?, 1)`,
    message.network_id,
    message.transaction_id,
    message.conversion.status,
    message.received_at,
    JSON.stringify({ status: "pending", amount: "5.00", currency: "USD" }),
    message.received_at,
    message.received_at,
    JSON.stringify(answer),
  );
  sql.exec(
    "INSERT INTO outbox (seq, message, due_at, sends) VALUES (1, ?, ?, 1)",
    JSON.stringify(message),
    Date.now() + 3_600_000,
  );
}

function pendingOf(sql: SqlStorage): { seq: number; message: string | null; due_at: number; sends: number }[] {
  return sql
    .exec<{ seq: number; message: string | null; due_at: number; sends: number }>(
      "SELECT seq, message, due_at, sends FROM events ORDER BY seq",
    )
    .toArray();
}

describe("an object created by the code before", () => {
  it("keeps its tables, indexes and schema_version, less the outbox upgrade 7 folds into events, and decides as before", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const stub = stubFor(network.id, String(body.transaction_id));
    // The layout a new object had at schema version 6, before issue 16.
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      state.storage.sql.exec(VERSION_6_LAYOUT);
    });
    const first = await send(network, body);
    expect(first).toMatchObject({ status: "accepted", conversion_status: "pending" });
    expect(await send(network, body)).toEqual({ ...first, status: "duplicate" });
    const update = { transaction_id: body.transaction_id, status: "approved" };
    expect(await send(network, update)).toMatchObject({ status: "updated", conversion_status: "approved" });
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      const names = schemaOf(state.storage.sql);
      expect(names).toContain("index events_by_fingerprint");
      expect(names).toContain("table schema_version");
      expect(names).toContain("table erased_events");
      expect(names).not.toContain("table outbox");
      expect(state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version).toBe(
        SCHEMA_VERSION,
      );
    });
  });

  it("upgrade 7: sends the message its outbox held, and the receipt clears it, nothing lost", async () => {
    const { network, transactionId, stub, message } = await olderObjectsEvent();
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      writeVersion6Object(state.storage.sql, message);
      // Its alarm was pending when the new code arrived.
      return state.storage.setAlarm(Date.now());
    });
    // The first alarm of the new code's instance opens (upgrades) the object and sends the message at once.
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    expect(row.status).toBe("pending");
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      expect(schemaOf(state.storage.sql)).not.toContain("table outbox");
      expect(state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version).toBe(
        SCHEMA_VERSION,
      );
      // The event row stays (the dedupe history), its message cleared by the receipt.
      expect(pendingOf(state.storage.sql)).toMatchObject([{ seq: 1, message: null, sends: 1 }]);
    });
    // The conversion goes on, its next event seq 2, sent and confirmed like any.
    const update = await send(network, { transaction_id: transactionId, status: "approved" });
    expect(update).toMatchObject({ status: "updated", conversion_status: "approved" });
    const approved = await eventually(async () => {
      const found = await conversionInD1(network.id, transactionId);
      return found?.status === "approved" ? found : null;
    });
    expect(approved.status).toBe("approved");
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    expect(await stub.inspect()).toMatchObject({ events: 2, outbox: 0 });
  });

  it("upgrade 7 moves the outbox row onto its event's row, pending, as it was", async () => {
    const { stub, message } = await olderObjectsEvent();
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      writeVersion6Object(state.storage.sql, message);
      const due = state.storage.sql.exec<{ due_at: number }>("SELECT due_at FROM outbox").one().due_at;
      expect(openSchema(state.storage)).toBe(true);
      expect(pendingOf(state.storage.sql)).toEqual([
        { seq: 1, message: JSON.stringify(message), due_at: due, sends: 1 },
      ]);
      expect(schemaOf(state.storage.sql)).not.toContain("table outbox");
    });
    expect(await stub.inspect()).toMatchObject({ events: 1, outbox: 1 });
  });

  it("upgrade 7 rebuilds the event of an outbox row without one, rather than drop its message", async () => {
    const { network, transactionId, stub, message } = await olderObjectsEvent();
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      writeVersion6Object(state.storage.sql, message, false);
      expect(openSchema(state.storage)).toBe(true);
      const rebuilt = state.storage.sql
        .exec<{ event_id: string; fingerprint: string; verdict: string; answer: string; received_at: string }>(
          "SELECT event_id, fingerprint, verdict, answer, received_at FROM events",
        )
        .one();
      expect(rebuilt).toMatchObject({
        event_id: message.event_id,
        fingerprint: "",
        verdict: "accepted",
        received_at: message.received_at,
      });
      expect(JSON.parse(rebuilt.answer)).toEqual({
        status: "accepted",
        event_id: message.event_id,
        network_id: network.id,
        transaction_id: transactionId,
        conversion_status: "pending",
      });
      return state.storage.setAlarm(Date.now());
    });
    await runDurableObjectAlarm(stub);
    expect((await eventually(() => conversionInD1(network.id, transactionId))).status).toBe("pending");
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
  });

  it("leaves an object at a later version (written by newer code, before a rollback) as it is", async () => {
    const stub = stubFor("nobody", uniqueId("tx"));
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      writeVersion6Object(state.storage.sql, makeEventMessage());
      state.storage.sql.exec("UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1);
      const before = schemaOf(state.storage.sql);
      expect(openSchema(state.storage)).toBe(true);
      expect(schemaOf(state.storage.sql)).toEqual(before);
      expect(state.storage.sql.exec<{ n: number }>("SELECT count(*) AS n FROM outbox").one().n).toBe(1);
    });
  });
});
