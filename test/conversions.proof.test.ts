/**
 * A tamper-evident history through the real pipeline: the conversion's object chains each event
 * as it records it, D1 stores the chain, and GET …/proof verifies it; an outsider recomputes every
 * hash from the conversions API with WebCrypto and the `canonicalize` package; and every kind of
 * edit to what D1 holds (a payload, a status, a conversion row, a deleted or rewritten row) shows.
 */
import {
  createExecutionContext,
  createScheduledController,
  runDurableObjectAlarm,
  runInDurableObject,
} from "cloudflare:test";
import { env } from "cloudflare:workers";
import canonicalize from "canonicalize";
import { describe, expect, it } from "vitest";
import { chainHash, type Proof } from "../src/conversions/chain";
import type { ConversionObject } from "../src/conversions/conversion-object";
import { conversionObjectName } from "../src/domain/conversion";
import worker from "../src/index";
import {
  admin,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makeEventMessage,
  makePostback,
  postback,
  sha256Hex,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";

interface Detail {
  network_id: string;
  transaction_id: string;
  test: boolean;
  events: {
    event_id: string;
    seq: number;
    verdict: string;
    received_at: string;
    test: boolean;
    event: Record<string, unknown>;
    hash: string | null;
    prev_hash: string | null;
  }[];
}

function stubFor(networkId: string, transactionId: string, test = false) {
  return env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, test));
}

async function send(network: TestNetwork, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return expectStatus<{ status: string; event_id: string }>(await postback(network, body, { headers }), 200);
}

/** Waits until D1 holds `count` events of the transaction and its object has its receipts. */
async function settled(network: TestNetwork, transactionId: string, count: number, test = false) {
  await eventually(async () => {
    const { n } = (await env.DB.prepare(
      "SELECT count(*) AS n FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND test = ?",
    )
      .bind(network.id, transactionId, test ? 1 : 0)
      .first<{ n: number }>()) ?? { n: 0 };
    return n >= count ? true : null;
  });
  const stub = stubFor(network.id, transactionId, test);
  await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
}

async function proofOf(network: TestNetwork, transactionId: string, query = ""): Promise<Proof> {
  return expectStatus<Proof>(await admin(`/v1/conversions/${network.id}/${transactionId}/proof${query}`), 200);
}

/** pending → approved → (stale pending) → paid, all in D1 and confirmed. */
async function recordedHistory(network: TestNetwork) {
  const body = makePostback({ status: "pending", event_time: "2026-11-01T10:00:00Z", meta: { sub1: "spring" } });
  const transactionId = String(body.transaction_id);
  await send(network, body);
  await send(network, { transaction_id: transactionId, status: "approved", event_time: "2026-11-01T11:00:00Z" });
  await send(network, { ...body, status: "pending", event_time: "2026-11-01T09:00:00Z", amount: "1.00" });
  await send(network, { transaction_id: transactionId, status: "paid" });
  await settled(network, transactionId, 4);
  return transactionId;
}

/** Makes the transaction's events up to `seq` older than any retention window, in D1 and in its object. */
async function makeOld(network: TestNetwork, transactionId: string, seq: number) {
  await tamper(
    "UPDATE conversion_events SET received_at = '2000-01-01T00:00:00.000Z' WHERE network_id = ? AND transaction_id = ? AND seq <= ?",
    network.id,
    transactionId,
    seq,
  );
  await runInDurableObject(stubFor(network.id, transactionId), (_instance, state) => {
    state.storage.sql.exec("UPDATE events SET received_at = '2000-01-01T00:00:00.000Z' WHERE seq <= ?", seq);
    state.storage.sql.exec("UPDATE state SET last_event_at = '2000-01-01T00:00:00.000Z' WHERE head_seq <= ?", seq);
  });
}

/** A pending event as the events consumer recorded it before the chain existed (no hash), a minute ago. */
async function recordedBeforeTheChain(network: TestNetwork, transactionId: string) {
  const receivedAt = new Date(Date.now() - 60_000).toISOString();
  const old = makeEventMessage({
    network_id: network.id,
    transaction_id: transactionId,
    received_at: receivedAt,
    conversion: {
      status: "pending",
      amount: "5.00",
      currency: "USD",
      event_time: receivedAt,
      first_seen_at: receivedAt,
      version: 1,
    },
  });
  await env.EVENTS.send(old, { contentType: "json" });
  await eventually(async () => await conversionInD1(network.id, transactionId));
  return old;
}

async function runRetentionCron() {
  const handler: ExportedHandler<Env> = worker;
  await handler.scheduled?.(
    createScheduledController({ cron: "17 3 * * *", scheduledTime: Date.now() }),
    env,
    createExecutionContext(),
  );
}

async function eventsInD1(network: TestNetwork, transactionId: string): Promise<number[]> {
  const { results } = await env.DB.prepare(
    "SELECT seq FROM conversion_events WHERE network_id = ? AND transaction_id = ? ORDER BY seq",
  )
    .bind(network.id, transactionId)
    .all<{ seq: number }>();
  return results.map((row) => row.seq);
}

async function tamper(sql: string, ...params: unknown[]) {
  const result = await env.DB.prepare(sql)
    .bind(...params)
    .run();
  expect(result.meta.changes, sql).toBeGreaterThan(0);
}

describe("GET /v1/conversions/{network_id}/{transaction_id}/proof", () => {
  it("verifies an untouched history, and an outsider recomputes every hash from the conversions API", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", verified: true, breaks: [], head: { seq: 4 } });
    expect(proof.anchor).toMatchObject({ seq: 4, agrees: true, in_flight: 0 });
    expect(proof.state).toMatchObject({ checked: true, agrees: true });
    expect(proof.events.map((e) => [e.seq, e.verdict, e.ok])).toEqual([
      [1, "accepted", true],
      [2, "updated", true],
      [3, "stale", true],
      [4, "updated", true],
    ]);

    // The outsider: only the conversions API, WebCrypto and the RFC author's canonicalize package.
    const detail = await expectStatus<Detail>(await admin(`/v1/conversions/${network.id}/${transactionId}`), 200);
    let previous: string | null = null;
    for (const event of detail.events) {
      const content = {
        v: 1,
        network_id: detail.network_id,
        transaction_id: detail.transaction_id,
        test: detail.test,
        seq: event.seq,
        event_id: event.event_id,
        verdict: event.verdict,
        received_at: event.received_at,
        event: event.event,
        prev_hash: previous,
      };
      const hash = await sha256Hex(canonicalize(content) ?? "");
      expect(event.prev_hash).toBe(previous);
      expect(event.hash).toBe(hash);
      previous = hash;
    }
    expect(previous).toBe(proof.head?.hash);
  });

  it("breaks where a stored payload was edited", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "UPDATE conversion_events SET payload = json_set(payload, '$.amount', '0.01') WHERE network_id = ? AND transaction_id = ? AND seq = 1",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.status).toBe("broken");
    expect(proof.breaks).toContainEqual({
      seq: 1,
      event_id: expect.any(String),
      reason: expect.stringMatching(/changed after it was recorded$/),
    });
    expect(proof.events.find((e) => e.seq === 1)?.ok).toBe(false);
    // And the conversion row no longer is what the (edited) events add up to.
    expect(proof.state).toMatchObject({
      agrees: false,
      note: expect.stringContaining('amount is "29.99", not "0.01"'),
    });
  });

  it("breaks where an event's status column was edited", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "UPDATE conversion_events SET status = 'reversed' WHERE network_id = ? AND transaction_id = ? AND seq = 4",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([
      {
        seq: 4,
        event_id: expect.any(String),
        reason: 'its status column says "reversed" but the hashed event says "paid"',
      },
    ]);
  });

  it("breaks when the conversion row's status was edited", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "UPDATE conversions SET status = 'approved' WHERE network_id = ? AND transaction_id = ? AND test = 0",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.status).toBe("broken");
    expect(proof.state).toEqual({
      checked: true,
      agrees: false,
      note: 'the conversion row is not what its chained events add up to: status is "approved", not "paid"',
    });
  });

  it("breaks where a row was deleted from the middle", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "DELETE FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND seq = 2",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([
      { seq: 3, event_id: expect.any(String), reason: "seq 2 is missing: the chain skips from 1 to 3" },
    ]);
  });

  it("breaks when the latest row was deleted: the object's head says there was one more", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "DELETE FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND seq = 4",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.status).toBe("broken");
    expect(proof.anchor).toMatchObject({ seq: 4, agrees: false });
    expect(proof.breaks.map((b) => b.reason)).toContain(proof.anchor?.note);
  });

  it("breaks when a row lost its hash after the chain had begun", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "UPDATE conversion_events SET hash = NULL, prev_hash = NULL WHERE network_id = ? AND transaction_id = ? AND seq = 2",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([
      { seq: 3, event_id: expect.any(String), reason: "seq 2 lost its hash after the chain had begun" },
    ]);
  });

  it("breaks when the whole chain was rewritten consistently: only the object tells, by its head and its state", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    // Someone with write access to D1 lowers the first amount and recomputes every hash after it.
    const { results } = await env.DB.prepare(
      "SELECT * FROM conversion_events WHERE network_id = ? AND transaction_id = ? ORDER BY seq",
    )
      .bind(network.id, transactionId)
      .all<{ event_id: string; seq: number; verdict: "accepted"; payload: string; received_at: string }>();
    let prev: string | null = null;
    for (const row of results) {
      const event = JSON.parse(row.payload) as Record<string, unknown>;
      if (row.seq === 1) event.amount = "0.01";
      const hash = chainHash({
        network_id: network.id,
        transaction_id: transactionId,
        test: false,
        seq: row.seq,
        event_id: row.event_id,
        verdict: row.verdict,
        received_at: row.received_at,
        event,
        prev_hash: prev,
      });
      await tamper(
        "UPDATE conversion_events SET payload = ?, hash = ?, prev_hash = ? WHERE event_id = ?",
        JSON.stringify(event),
        hash,
        prev,
        row.event_id,
      );
      prev = hash;
    }
    await tamper(
      "UPDATE conversions SET amount = '0.01' WHERE network_id = ? AND transaction_id = ? AND test = 0",
      network.id,
      transactionId,
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.events.every((e) => e.ok)).toBe(true);
    expect(proof.state.agrees).toBe(true);
    expect(proof.status).toBe("broken");
    expect(proof.breaks).toEqual([
      { seq: null, event_id: null, reason: expect.stringMatching(/^the object's last event \(seq 4\) has hash/) },
      {
        seq: null,
        event_id: null,
        reason: `D1's conversion row is not the state the conversion's object holds: amount is "0.01", not "29.99"`,
      },
    ]);
    expect(proof.object_state).toEqual({ checked: true, agrees: false, note: proof.breaks[1]?.reason });
  });

  it("verifies while D1 is behind by events still in the object's outbox", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const transactionId = String(body.transaction_id);
    await send(network, body);
    await settled(network, transactionId, 1);
    const stub = stubFor(network.id, transactionId);
    await runInDurableObject(stub, (instance: ConversionObject) => {
      instance.eventsQueue = {
        sendBatch: async () => {
          throw new Error("queue down");
        },
      };
    });
    await send(network, { transaction_id: transactionId, status: "approved" });
    await runDurableObjectAlarm(stub);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", head: { seq: 1 } });
    expect(proof.anchor).toMatchObject({ seq: 2, in_flight: 1, agrees: true });
  });

  it("proves the test conversion with ?test=true, apart from the live one", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    await send(network, { ...body, test: true });
    await settled(network, transactionId, 1, true);
    const proof = await proofOf(network, transactionId, "?test=true");
    expect(proof).toMatchObject({ status: "verified", head: { seq: 1 } });
    expect(proof.events[0]?.content).toMatchObject({ test: true });
    const live = await expectStatus<{ detail: string }>(
      await admin(`/v1/conversions/${network.id}/${transactionId}/proof`),
      404,
    );
    expect(live.detail).toContain("?test=true");
  });

  it("says that events recorded before the chain have no hash, and verifies the chain that follows them", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    // An event as the consumer recorded it before the chain: no hash in the message.
    const old = await recordedBeforeTheChain(network, transactionId);
    const receivedAt = old.received_at;
    expect(await proofOf(network, transactionId)).toMatchObject({
      status: "unchained",
      verified: false,
      breaks: [],
      notes: ["All 1 events were recorded before the hash chain existed: they have no hash to verify."],
    });

    // Its object, as the code before the chain left it, takes the next event: the chain starts there.
    await runInDurableObject(stubFor(network.id, transactionId), (_instance, state) => {
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
      state.storage.sql.exec(
        "INSERT INTO events (event_id, fingerprint, verdict, answer, received_at) VALUES (?, 'f', 'accepted', ?, ?)",
        old.event_id,
        JSON.stringify({
          status: "accepted",
          event_id: old.event_id,
          network_id: network.id,
          transaction_id: transactionId,
          conversion_status: "pending",
        }),
        receivedAt,
      );
      state.storage.sql.exec(
        "INSERT INTO state VALUES (1, ?, ?, 'pending', ?, ?, 1, ?, ?)",
        network.id,
        transactionId,
        receivedAt,
        JSON.stringify({ status: "pending", amount: "5.00", currency: "USD" }),
        receivedAt,
        receivedAt,
      );
    });
    await send(network, { transaction_id: transactionId, status: "approved" });
    await settled(network, transactionId, 2);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", head: { seq: 2 }, breaks: [] });
    expect(proof.events.map((e) => [e.seq, e.chained, e.prev_hash])).toEqual([
      [1, false, null],
      [2, true, null],
    ]);
    expect(proof.notes).toEqual([
      "The chain begins at seq 2: the 1 events before it were recorded before the hash chain existed.",
    ]);
    expect(proof.state.checked).toBe(false);
    // The upgraded object knows where its chain began, and its state is D1's row.
    expect(proof.anchor).toMatchObject({ chain_from: 2 });
    expect(proof.object_state).toMatchObject({ checked: true, agrees: true });
  });

  it("refuses up front, with a 422, a string no chain can hash (a lone surrogate)", async () => {
    const network = await createNetwork();
    for (const [raw, location] of [
      [JSON.stringify(makePostback({ meta: { sub1: "x" } })).replace('"x"', '"\\ud800"'), "body.meta.sub1"],
      [JSON.stringify(makePostback()).replace('"tx-', '"\\udc00tx-'), "body.transaction_id"],
    ] as const) {
      const problem = await expectStatus<{ errors: { location: string; message: string }[] }>(
        await postback(network, raw),
        422,
      );
      expect(problem.errors).toEqual([
        { location, message: "must be valid Unicode text (it holds a lone surrogate escape)" },
      ]);
    }
  });

  it("keeps one unbroken chain when many events for one conversion arrive at once", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "paid", event_time: "2026-11-01T12:00:00Z" });
    const transactionId = String(body.transaction_id);
    await send(network, body);
    // 20 different late events at once: each is recorded (stale), each must link to the one before.
    const late = Array.from({ length: 20 }, (_, i) => ({
      ...body,
      status: "approved",
      amount: `${i + 1}.00`,
      event_time: "2026-11-01T11:00:00Z",
    }));
    const answers = await Promise.all(late.map((event) => send(network, event)));
    expect(answers.every((a) => a.status === "stale")).toBe(true);
    await settled(network, transactionId, 21);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", head: { seq: 21 } });
  });

  it("verifies the chain that remains after history retention deleted its beginning", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    // Seq 1 and 2 are older than the retention window, in D1 and by the object's own clock; the cron deletes them.
    await makeOld(network, transactionId, 2);
    await runRetentionCron();
    const proof = await proofOf(network, transactionId);
    expect(proof.events.map((e) => e.seq)).toEqual([3, 4]);
    expect(proof).toMatchObject({ status: "verified", breaks: [] });
    expect(proof.notes).toEqual([expect.stringMatching(/^History retention deleted the events up to seq 2 /)]);
    expect(proof.anchor).toMatchObject({ chain_from: 1, retention: { seq: 2, hash: proof.events[0]?.prev_hash } });
    expect(proof.object_state).toMatchObject({ checked: true, agrees: true });

    // Without retention's record, the same gap is a deletion.
    await tamper(
      "DELETE FROM conversion_chain_pruned WHERE network_id = ? AND transaction_id = ?",
      network.id,
      transactionId,
    );
    expect((await proofOf(network, transactionId)).breaks).toEqual([
      {
        seq: 3,
        event_id: expect.any(String),
        reason: expect.stringMatching(/no history retention run recorded deleting it/),
      },
    ]);
  });

  describe("what a D1 writer cannot pass off as verified (security review)", () => {
    /** approved, then paid: in D1, confirmed, and verified. */
    async function chained() {
      const network = await createNetwork();
      const body = makePostback({ status: "approved" });
      const transactionId = String(body.transaction_id);
      await send(network, body);
      await send(network, { transaction_id: transactionId, status: "paid" });
      await settled(network, transactionId, 2);
      expect((await proofOf(network, transactionId)).status).toBe("verified");
      return { network, transactionId };
    }

    it("breaks when the conversion row changed along with first_seen_at", async () => {
      const { network, transactionId } = await chained();
      await tamper(
        "UPDATE conversions SET status = 'approved', amount = '9999.00', first_seen_at = '2020-01-01T00:00:00.000Z' WHERE network_id = ? AND transaction_id = ?",
        network.id,
        transactionId,
      );
      expect((await proofOf(network, transactionId)).status).toBe("broken");
    });

    it("breaks when every hash was stripped (and a payload changed), though the object's head holds one", async () => {
      const { network, transactionId } = await chained();
      await tamper(
        "UPDATE conversion_events SET hash = NULL, prev_hash = NULL, payload = json_set(payload, '$.amount', '0.01') WHERE network_id = ? AND transaction_id = ?",
        network.id,
        transactionId,
      );
      expect((await proofOf(network, transactionId)).status).toBe("broken");
    });

    it("breaks when an unchained event was inserted after the chain began", async () => {
      const { network, transactionId } = await chained();
      await tamper(
        `INSERT INTO conversion_events (event_id, network_id, transaction_id, seq, verdict, status, event_time, payload, received_at, test, hash, prev_hash)
         VALUES (?, ?, ?, 3, 'updated', 'reversed', NULL, '{"status":"reversed"}', ?, 0, NULL, NULL)`,
        uniqueId("evt"),
        network.id,
        transactionId,
        new Date().toISOString(),
      );
      expect((await proofOf(network, transactionId)).status).toBe("broken");
    });

    it("breaks when the first event was deleted, a retention record faked and the row changed", async () => {
      const { network, transactionId } = await chained();
      const first = await env.DB.prepare(
        "SELECT event_id, hash FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND seq = 1",
      )
        .bind(network.id, transactionId)
        .first<{ event_id: string; hash: string }>();
      await env.DB.batch([
        env.DB.prepare("DELETE FROM conversion_events WHERE event_id = ?").bind(first?.event_id),
        env.DB.prepare(
          "INSERT INTO conversion_chain_pruned (network_id, transaction_id, test, seq, hash, pruned_before) VALUES (?, ?, 0, 1, ?, '2020-01-01T00:00:00.000Z')",
        ).bind(network.id, transactionId, first?.hash),
        env.DB.prepare("UPDATE conversions SET amount = '0.01' WHERE network_id = ? AND transaction_id = ?").bind(
          network.id,
          transactionId,
        ),
      ]);
      expect((await proofOf(network, transactionId)).status).toBe("broken");
    });
  });

  it("verifies a conversion whose whole chain history retention deleted, against its object", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await makeOld(network, transactionId, 4);
    await runRetentionCron();
    expect(await eventsInD1(network, transactionId)).toEqual([]);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", breaks: [], head: null, events: [] });
    expect(proof.anchor).toMatchObject({ seq: 4, agrees: true, retention: { seq: 4 } });
    expect(proof.notes).toEqual([
      expect.stringMatching(/^History retention deleted every chained event, up to seq 4 /),
    ]);
    expect(proof.object_state).toMatchObject({ checked: true, agrees: true });

    // The row is still checked against the object, though no event is left to rebuild it from.
    await tamper(
      "UPDATE conversions SET amount = '0.01' WHERE network_id = ? AND transaction_id = ?",
      network.id,
      transactionId,
    );
    const edited = await proofOf(network, transactionId);
    expect(edited.status).toBe("broken");
    expect(edited.object_state).toEqual({
      checked: true,
      agrees: false,
      note: `D1's conversion row is not the state the conversion's object holds: amount is "0.01", not "29.99"`,
    });
  });

  it("deletes no event its object cannot vouch is old: backdating received_at in D1 does not make retention cut", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      "UPDATE conversion_events SET received_at = '2000-01-01T00:00:00.000Z' WHERE network_id = ? AND transaction_id = ?",
      network.id,
      transactionId,
    );
    await runRetentionCron();
    expect(await eventsInD1(network, transactionId)).toEqual([1, 2, 3, 4]);
    expect((await stubFor(network.id, transactionId).chainHead())?.retention).toBeNull();
    // The backdated events are still there to show the edit.
    const proof = await proofOf(network, transactionId);
    expect(proof.status).toBe("broken");
    expect(proof.events.every((e) => !e.ok)).toBe(true);
  });

  it("asks the object again on the next run, and cuts no further than it agreed", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await makeOld(network, transactionId, 2);
    await runRetentionCron();
    await runRetentionCron();
    expect(await eventsInD1(network, transactionId)).toEqual([3, 4]);
    expect((await stubFor(network.id, transactionId).chainHead())?.retention).toMatchObject({ seq: 2 });
    // Asking again for the same cut, or an earlier one, changes nothing.
    const stub = stubFor(network.id, transactionId);
    const head = await stub.chainHead();
    const cut = head?.retention;
    expect(cut).toBeTruthy();
    if (!cut) return;
    expect(await stub.cutChain(cut)).toMatchObject({ accepted: true });
    expect(await stub.cutChain({ ...cut, seq: 1 })).toMatchObject({ accepted: true });
    expect((await stub.chainHead())?.retention).toEqual(cut);
    // A cut beyond what the object can vouch for is refused: seq 3 was received just now.
    expect(await stub.cutChain({ seq: 3, hash: String(head?.hash), before: cut.before })).toMatchObject({
      accepted: false,
    });
    expect((await proofOf(network, transactionId)).status).toBe("verified");
  });

  it("breaks when the first event was deleted and a retention record faked, though the row was left alone", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    const transactionId = String(body.transaction_id);
    await send(network, body);
    await send(network, { transaction_id: transactionId, status: "paid" });
    await settled(network, transactionId, 2);
    const first = await env.DB.prepare(
      "SELECT event_id, hash FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND seq = 1",
    )
      .bind(network.id, transactionId)
      .first<{ event_id: string; hash: string }>();
    await env.DB.batch([
      env.DB.prepare("DELETE FROM conversion_events WHERE event_id = ?").bind(first?.event_id),
      env.DB.prepare(
        "INSERT INTO conversion_chain_pruned (network_id, transaction_id, test, seq, hash, pruned_before) VALUES (?, ?, 0, 1, ?, '2020-01-01T00:00:00.000Z')",
      ).bind(network.id, transactionId, first?.hash),
    ]);
    const proof = await proofOf(network, transactionId);
    expect(proof.status).toBe("broken");
    expect(proof.breaks).toEqual([
      {
        seq: 2,
        event_id: expect.any(String),
        reason:
          "D1 records history retention deleting the events up to seq 1, but the conversion's object, which retention asks before every cut, agreed to no cut: they were deleted some other way",
      },
    ]);
  });

  it("breaks when an event without a hash claims a seq the chain holds", async () => {
    const network = await createNetwork();
    const transactionId = await recordedHistory(network);
    await tamper(
      `INSERT INTO conversion_events (event_id, network_id, transaction_id, seq, verdict, status, event_time, payload, received_at, test, hash, prev_hash)
       VALUES (?, ?, ?, 4, 'updated', 'reversed', NULL, '{"status":"reversed"}', ?, 0, NULL, NULL)`,
      uniqueId("evt"),
      network.id,
      transactionId,
      new Date().toISOString(),
    );
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([
      {
        seq: 4,
        event_id: expect.any(String),
        reason:
          "it claims seq 4, which a chained event holds, without a hash, though the chain began at seq 1: it was inserted",
      },
    ]);
  });

  it("says which events are from an earlier life of the conversion, whose object was cleared before the chain", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    // The first life, recorded before the chain; its object was cleared by the code before the tail.
    const { received_at: receivedAt } = await recordedBeforeTheChain(network, transactionId);
    // The next life: a new object, whose chain begins at seq 1; D1 applies it (pending → approved).
    await send(network, makePostback({ transaction_id: transactionId, status: "approved" }));
    await settled(network, transactionId, 2);
    const proof = await proofOf(network, transactionId);
    expect(proof).toMatchObject({ status: "verified", breaks: [], head: { seq: 1 } });
    expect(proof.events.map((e) => [e.seq, e.chained])).toEqual([
      [1, false],
      [1, true],
    ]);
    expect(proof.notes).toEqual([
      `1 event(s) are from an earlier life of the conversion (first seen ${receivedAt}), whose object was cleared before the hash chain existed: they have no hash to verify.`,
      expect.stringMatching(
        new RegExp(`^D1's conversion was first seen at ${receivedAt}, in an earlier life of its object`),
      ),
    ]);
    expect(proof.object_state).toMatchObject({ checked: true, agrees: true });

    // Where D1 kept the earlier life's state (its second line of defence refused the next life's
    // event), D1 and the object disagree on the state, and the proof says so.
    await tamper(
      "UPDATE conversions SET status = 'reversed' WHERE network_id = ? AND transaction_id = ?",
      network.id,
      transactionId,
    );
    const diverged = await proofOf(network, transactionId);
    expect(diverged.status).toBe("broken");
    expect(diverged.object_state.note).toMatch(
      /^D1's conversion row is not the state the conversion's object holds: status is "reversed", not "approved" \(D1's conversion was first seen at .*, in an earlier life of its object/,
    );
  });

  it("answers 404 for a conversion that does not exist", async () => {
    const problem = await expectStatus<{ code: string }>(
      await admin(`/v1/conversions/acme/${uniqueId("tx")}/proof`),
      404,
    );
    expect(problem.code).toBe("not_found");
  });
});
