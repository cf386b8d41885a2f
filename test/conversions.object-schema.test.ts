/**
 * What a new conversion object creates (issue 16: every table, index and row is paid for once per
 * conversion): `state`, `events` and `outbox`, its version in its `state` table's definition, no
 * `schema_version` row, no index, no AUTOINCREMENT, `erased_events` only once an erasure needs it.
 * A new object reopened by a new instance is not taken for one from before `schema_version` (which
 * would run every upgrade again, and fail); an object created by the code before keeps its layout
 * and works as it did.
 */
import { runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ConversionObject } from "../src/conversions/conversion-object";
import { openSchema, SCHEMA_VERSION } from "../src/conversions/object-schema";
import { conversionObjectName } from "../src/domain/conversion";
import { createNetwork, expectStatus, makePostback, postback, type TestNetwork } from "./support/helpers";

interface Answer {
  status: string;
  event_id: string;
  conversion_status: string;
}

function stubFor(networkId: string, transactionId: string) {
  return env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, false));
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
  it("creates state, events and outbox only, and is recognised at its version when reopened", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const first = await send(network, body);
    const stub = stubFor(network.id, String(body.transaction_id));
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      expect(schemaOf(state.storage.sql)).toEqual(["table events", "table outbox", "table state"]);
      // A new instance over the same storage (a restart): no upgrade runs, nothing is written.
      const reopened = new ConversionObject(state, env);
      expect(reopened).toBeDefined();
      expect(openSchema(state.storage)).toBe(true);
      expect(schemaOf(state.storage.sql)).toEqual(["table events", "table outbox", "table state"]);
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
});

describe("an object created by the code before", () => {
  it("keeps its tables, indexes and schema_version, and decides as before", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const stub = stubFor(network.id, String(body.transaction_id));
    // The layout a new object had at schema version 6, before issue 16.
    await runInDurableObject(stub, (_instance: ConversionObject, state) => {
      state.storage.sql.exec(`
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
      `);
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
      expect(state.storage.sql.exec<{ version: number }>("SELECT version FROM schema_version").one().version).toBe(6);
    });
  });
});
