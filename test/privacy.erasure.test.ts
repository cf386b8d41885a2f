/**
 * POST /v1/erasure (docs/privacy.md): one person's user_id, device_id or click_id erased from
 * everything the hub keeps, D1 and the conversions' Durable Objects, with an answer that says what
 * it did, a record that never holds the identifier, a proof that still verifies, bounded runs that
 * continue, idempotent repeats, and events still on their way erased when they arrive.
 */
import { runInDurableObject } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Proof } from "../src/conversions/chain";
import type { ConversionObject } from "../src/conversions/conversion-object";
import type { EventMessage } from "../src/domain/messages";
import { partnersOf } from "../src/storage/erasures";
import { pendingDelivery } from "./support/deliveries";
import {
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makeEventMessage,
  makePostback,
  PARTNER,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { conversionObject, d1RowsContaining, expectedHash } from "./support/privacy";
import { expectProblem } from "./support/problems";

interface Counts {
  d1: Record<string, number>;
  objects: Record<string, number>;
}

interface ErasureRun {
  id: string;
  kind: string;
  identifier_hash: string;
  network_id: string | null;
  requested_at: string;
  last_run_at: string;
  runs: number;
  status: "partial" | "complete";
  counts: Counts;
  run: { counts: Counts; remaining: number; inbound_remaining: boolean; partners: string[] };
}

async function erase(body: Record<string, unknown>, status: 200 | 201 = 201): Promise<ErasureRun> {
  return expectStatus<ErasureRun>(await admin("/v1/erasure", { method: "POST", body: JSON.stringify(body) }), status);
}

/** Waits until D1 holds `events` events of the transaction, its object has their receipts, and its deliveries are done. */
async function settled(network: TestNetwork, transactionId: string, events: number) {
  await eventually(async () => {
    const row = await env.DB.prepare(
      "SELECT count(*) AS n FROM conversion_events WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, transactionId)
      .first<{ n: number }>();
    return (row?.n ?? 0) >= events ? true : null;
  });
  await eventually(async () =>
    (await conversionObject(network.id, transactionId).inspect()).outbox === 0 ? true : null,
  );
  await eventually(async () => {
    const row = await env.DB.prepare(
      "SELECT count(*) AS n FROM deliveries WHERE network_id = ? AND transaction_id = ? AND state != 'delivered'",
    )
      .bind(network.id, transactionId)
      .first<{ n: number }>();
    return row?.n === 0 ? true : null;
  });
}

async function inboundLogged(networkId: string, count: number) {
  await eventually(async () => {
    const row = await env.DB.prepare("SELECT count(*) AS n FROM inbound_requests WHERE network_id = ?")
      .bind(networkId)
      .first<{ n: number }>();
    return (row?.n ?? 0) >= count ? true : null;
  });
}

async function proofOf(network: TestNetwork, transactionId: string): Promise<Proof> {
  return expectStatus<Proof>(await admin(`/v1/conversions/${network.id}/${transactionId}/proof`), 200);
}

async function erasureCount(): Promise<number> {
  return (await env.DB.prepare("SELECT count(*) AS n FROM erasures").first<{ n: number }>())?.n ?? 0;
}

/** A network with a partner of its own that receives every event with the identifiers in its URL. */
async function networkWithPartner() {
  const network = await createNetwork();
  const partner = await createPartner({
    url_template: `${PARTNER}/ok/${uniqueId("erasure")}?tx={transaction_id}&u={user_id}&d={device_id}&c={click_id}`,
    filters: { networks: [network.id] },
  });
  return { network, partner };
}

describe("erasure by user_id", () => {
  it("erases the value from D1 and the objects, answers what it did, and records it without the value", async () => {
    const { network, partner } = await networkWithPartner();
    const person = uniqueId("person");
    const other = uniqueId("other");
    const first = makePostback({ user_id: person, status: "pending" });
    const second = makePostback({ user_id: person });
    const unrelated = makePostback({ user_id: other });
    for (const body of [first, second, unrelated]) await expectStatus(await postback(network, body), 200);
    await expectStatus(await postback(network, { transaction_id: first.transaction_id, status: "approved" }), 200);
    // Rejected, and logged with the value in its body.
    await expectStatus(await postback(network, { ...first, amount: "-1" }), 422);
    await settled(network, String(first.transaction_id), 2);
    await settled(network, String(second.transaction_id), 1);
    await settled(network, String(unrelated.transaction_id), 1);
    await inboundLogged(network.id, 5);
    expect(Object.keys(await d1RowsContaining(person)).sort()).toEqual(
      ["conversion_events", "conversions", "deliveries", "inbound_requests"].sort(),
    );

    const answer = await erase({ user_id: person });
    const marker = `erased:${answer.id}`;
    expect(answer).toMatchObject({
      id: expect.stringMatching(/^ers_[0-9a-hjkmnp-tv-z]{26}$/),
      kind: "user_id",
      identifier_hash: await expectedHash("user_id", person),
      network_id: null,
      runs: 1,
      status: "complete",
      run: { remaining: 0, inbound_remaining: false, partners: [partner.id] },
    });
    expect(answer.run.counts.d1).toEqual({
      conversions: 2,
      conversion_events: 2,
      deliveries: 3,
      delivery_attempts: 0,
      inbound_requests: 3,
      dead_letters: 0,
      clicks: 0,
    });
    expect(answer.run.counts.objects).toEqual({
      touched: 2,
      held: 2,
      states: 2,
      fingerprints: 2,
      outbox: 0,
      in_flight: 0,
      attested: 2,
      unverified_chains: 0,
    });
    expect(answer.counts).toEqual(answer.run.counts);

    expect(await d1RowsContaining(person)).toEqual({});
    for (const body of [first, second]) {
      const transactionId = String(body.transaction_id);
      expect((await conversionInD1(network.id, transactionId))?.user_id).toBe(marker);
      expect((await conversionObject(network.id, transactionId).inspect()).state?.fields.user_id).toBe(marker);
    }
    expect((await conversionInD1(network.id, String(unrelated.transaction_id)))?.user_id).toBe(other);
    const { results: deliveries } = await env.DB.prepare(
      "SELECT payload ->> '$.conversion.user_id' AS user_id FROM deliveries WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, first.transaction_id)
      .all<{ user_id: string }>();
    expect(deliveries.map((d) => d.user_id)).toEqual([marker, marker]);

    const record = await expectStatus<Record<string, unknown>>(await admin(`/v1/erasures/${answer.id}`), 200);
    const { run: _run, ...stored } = answer;
    expect(record).toEqual(stored);
    const list = await expectStatus<{ data: { id: string }[] }>(await admin("/v1/erasures"), 200);
    expect(list.data.map((erasure) => erasure.id)).toContain(answer.id);
    expect(JSON.stringify(await env.DB.prepare("SELECT * FROM erasures").all())).not.toContain(person);
  });

  it("leaves the proof verified, the erased events attested, and later edits still detected", async () => {
    const { network } = await networkWithPartner();
    const body = makePostback({ user_id: uniqueId("person"), status: "pending" });
    const transactionId = String(body.transaction_id);
    await expectStatus(await postback(network, body), 200);
    await expectStatus(await postback(network, { transaction_id: transactionId, status: "approved" }), 200);
    await settled(network, transactionId, 2);
    expect((await proofOf(network, transactionId)).status).toBe("verified");

    const answer = await erase({ user_id: body.user_id });
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([]);
    expect(proof.status).toBe("verified");
    const [erased, untouched] = proof.events;
    expect(erased?.content?.event.user_id).toBe(`erased:${answer.id}`);
    expect(erased?.erased).toEqual({
      erasure_ids: [answer.id],
      fields: ["user_id"],
      content_hash: erased?.computed_hash,
    });
    expect(erased?.computed_hash).not.toBe(erased?.hash);
    expect(untouched?.erased).toBeUndefined();
    expect(proof.notes.join(" ")).toContain("Erasures rewrote seq 1");

    // An edit after the erasure is not passed off as one.
    await env.DB.prepare(
      "UPDATE conversion_events SET payload = json_set(payload, '$.amount', '0.01') WHERE network_id = ? AND transaction_id = ? AND seq = 1",
    )
      .bind(network.id, transactionId)
      .run();
    const tampered = await proofOf(network, transactionId);
    expect(tampered.status).toBe("broken");
    expect(tampered.breaks[0]?.reason).toContain("it changed after the erasure");
  });

  it("is idempotent: the same request again is another run of the same erasure, which finds nothing", async () => {
    const { network } = await networkWithPartner();
    const body = makePostback({ user_id: uniqueId("person") });
    await expectStatus(await postback(network, body), 200);
    await settled(network, String(body.transaction_id), 1);
    const first = await erase({ user_id: body.user_id });
    const again = await erase({ user_id: body.user_id }, 200);
    expect(again.id).toBe(first.id);
    expect(again).toMatchObject({ runs: 2, status: "complete", requested_at: first.requested_at });
    expect(Object.values(again.run.counts.d1).every((n) => n === 0)).toBe(true);
    expect(Object.values(again.run.counts.objects).every((n) => n === 0)).toBe(true);
    expect(again.counts).toEqual(first.counts);
    expect((await proofOf(network, String(body.transaction_id))).status).toBe("verified");
  });

  it("keeps an erased conversion erased: a re-sent postback is a duplicate, an update does not bring the value back", async () => {
    const { network } = await networkWithPartner();
    const body = makePostback({ user_id: uniqueId("person"), status: "pending" });
    const transactionId = String(body.transaction_id);
    const original = await expectStatus<{ event_id: string }>(await postback(network, body), 200);
    await settled(network, transactionId, 1);
    const answer = await erase({ user_id: body.user_id });

    const resent = await expectStatus<{ status: string; event_id: string }>(await postback(network, body), 200);
    expect(resent).toMatchObject({ status: "duplicate", event_id: original.event_id });
    const update = await expectStatus<{ status: string }>(
      await postback(network, { ...body, status: "approved" }),
      200,
    );
    expect(update.status).toBe("updated");
    await settled(network, transactionId, 2);
    expect((await conversionInD1(network.id, transactionId))?.user_id).toBe(`erased:${answer.id}`);
    // The re-sent and updating requests are logged as they arrived (after the erasure), moments
    // after their answers: the original, the re-sent one and the update.
    await inboundLogged(network.id, 3);
    expect(await d1RowsContaining(String(body.user_id)).then((found) => Object.keys(found))).toEqual([
      "inbound_requests",
    ]);
    expect((await proofOf(network, transactionId)).status).toBe("verified");
  });

  it("finds a hashing network's rows by the raw value, and only the network it is scoped to", async () => {
    const hashing = await createNetwork();
    await expectStatus(
      await admin(`/v1/networks/${hashing.id}`, {
        method: "PATCH",
        body: JSON.stringify({ hash_identifiers: ["user_id"] }),
      }),
      200,
    );
    const plain = await createNetwork();
    const person = uniqueId("person");
    const hashed = makePostback({ user_id: person });
    const raw = makePostback({ user_id: person });
    await expectStatus(await postback(hashing, hashed), 200);
    await expectStatus(await postback(plain, raw), 200);
    await settled(hashing, String(hashed.transaction_id), 1);
    await settled(plain, String(raw.transaction_id), 1);
    await inboundLogged(hashing.id, 1);
    await inboundLogged(plain.id, 1);
    const hash = await expectedHash("user_id", person);

    const scoped = await erase({ user_id: person, network_id: hashing.id });
    expect(scoped).toMatchObject({ network_id: hashing.id, run: { remaining: 0 } });
    expect(scoped.run.counts.d1.conversions).toBe(1);
    expect((await conversionInD1(hashing.id, String(hashed.transaction_id)))?.user_id).toBe(`erased:${scoped.id}`);
    expect((await conversionInD1(plain.id, String(raw.transaction_id)))?.user_id).toBe(person);
    // The hash is left only in the erasure's own record.
    expect(Object.keys(await d1RowsContaining(hash))).toEqual(["erasures"]);

    const everywhere = await erase({ user_id: person });
    expect(everywhere.id).not.toBe(scoped.id);
    expect((await conversionInD1(plain.id, String(raw.transaction_id)))?.user_id).toBe(`erased:${everywhere.id}`);
  });

  it("works in bounded runs: `remaining` says what is left, and the same request again continues", async () => {
    const network = await createNetwork();
    const person = uniqueId("person");
    const bodies = [
      makePostback({ user_id: person }),
      makePostback({ user_id: person }),
      makePostback({ user_id: person }),
    ];
    for (const body of bodies) await expectStatus(await postback(network, body), 200);
    for (const body of bodies) await settled(network, String(body.transaction_id), 1);
    await inboundLogged(network.id, 3);

    const first = await erase({ user_id: person, limit: 2 });
    expect(first).toMatchObject({ status: "partial", run: { remaining: 1 } });
    expect(first.run.counts.d1.conversions).toBe(2);
    const second = await erase({ user_id: person, limit: 2 }, 200);
    expect(second).toMatchObject({ id: first.id, status: "complete", runs: 2, run: { remaining: 0 } });
    expect(second.run.counts.d1.conversions).toBe(1);
    expect(second.counts.d1.conversions).toBe(3);
    expect(await d1RowsContaining(person)).toEqual({});
  });
});

describe("erasure by device_id and click_id", () => {
  it("erases a device id from the conversion, its history, its deliveries, their attempts, dead letters and its object", async () => {
    const { network } = await networkWithPartner();
    const device = uniqueId("device");
    const body = makePostback({ device_id: device, user_id: uniqueId("person") });
    await expectStatus(await postback(network, body), 200);
    await settled(network, String(body.transaction_id), 1);
    await inboundLogged(network.id, 1);
    // A partner that echoed the value in its answer, and an event message an operator still holds.
    await env.DB.prepare(
      `UPDATE delivery_attempts SET response_excerpt = ?
       WHERE delivery_id IN (SELECT id FROM deliveries WHERE network_id = ? AND transaction_id = ?)`,
    )
      .bind(`{"received":"${device}","device":"${device}-2"}`, network.id, body.transaction_id)
      .run();
    const deadLetter = makeEventMessage({ network_id: network.id, event: { status: "pending", device_id: device } });
    await env.DB.prepare(
      "INSERT INTO dead_letters (id, queue, body, reason, attempts, created_at) VALUES (?, 'postback-events-dlq', ?, 'test', 1, ?)",
    )
      .bind(uniqueId("dead"), JSON.stringify(deadLetter), new Date().toISOString())
      .run();

    const answer = await erase({ device_id: device });
    expect(answer).toMatchObject({ kind: "device_id", identifier_hash: await expectedHash("device_id", device) });
    expect(answer.run.counts.d1).toMatchObject({
      conversions: 1,
      conversion_events: 1,
      deliveries: 1,
      delivery_attempts: 1,
      inbound_requests: 1,
      dead_letters: 1,
    });
    const attempt = await env.DB.prepare(
      "SELECT response_excerpt FROM delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE network_id = ?)",
    )
      .bind(network.id)
      .first<{ response_excerpt: string }>();
    // Undelimited in free text: the value goes wherever it appears.
    expect(attempt?.response_excerpt).toBe(`{"received":"erased:${answer.id}","device":"erased:${answer.id}-2"}`);
    const row = await conversionInD1(network.id, String(body.transaction_id));
    expect(row).toMatchObject({ device_id: `erased:${answer.id}`, user_id: body.user_id });
    const state = (await conversionObject(network.id, String(body.transaction_id)).inspect()).state;
    expect(state?.fields.device_id).toBe(`erased:${answer.id}`);
    expect(await d1RowsContaining(device)).toEqual({});
  });

  it("erases a click id, and the click's record keeps only what counts it", async () => {
    const { network } = await networkWithPartner();
    const clickId = uniqueId("clk");
    await env.DB.prepare(
      `INSERT INTO clicks (click_id, offer_id, partner_id, clicked_at, sub1, country, device, os, browser, referrer,
         ip_prefix, recorded_at)
       VALUES (?, 'ofr_1', 'ptn_1', '2026-11-01T00:00:00.000Z', 'spring', 'DE', 'mobile', 'Android', 'Chrome',
         'https://news.example', '203.0.113.0/24', '2026-11-01T00:00:01.000Z')`,
    )
      .bind(clickId)
      .run();
    const body = makePostback({ click_id: clickId });
    await expectStatus(await postback(network, body), 200);
    await settled(network, String(body.transaction_id), 1);
    await inboundLogged(network.id, 1);

    const answer = await erase({ click_id: clickId });
    const marker = `erased:${answer.id}`;
    expect(answer.run.counts.d1).toMatchObject({ conversions: 1, conversion_events: 1, deliveries: 1, clicks: 1 });
    expect((await conversionInD1(network.id, String(body.transaction_id)))?.click_id).toBe(marker);
    const click = await env.DB.prepare("SELECT * FROM clicks WHERE click_id = ?").bind(marker).first();
    expect(click).toMatchObject({
      offer_id: "ofr_1",
      partner_id: "ptn_1",
      clicked_at: "2026-11-01T00:00:00.000Z",
      sub1: null,
      country: null,
      device: null,
      os: null,
      browser: null,
      referrer: null,
      ip_prefix: null,
    });
    expect(await d1RowsContaining(clickId)).toEqual({});
    expect((await proofOf(network, String(body.transaction_id))).status).toBe("verified");
  });
});

describe("events on their way", () => {
  it("are erased when they reach D1 after the erasure ran, in the object's outbox too", async () => {
    const network = await createNetwork();
    const body = makePostback({ user_id: uniqueId("person") });
    const transactionId = String(body.transaction_id);
    const stub = conversionObject(network.id, transactionId);
    // The object's first send is held back: the copy is "in the queue" while the erasure runs.
    const held: { body: EventMessage }[] = [];
    await runInDurableObject(stub, (instance: ConversionObject) => {
      const real = instance.eventsQueue;
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          if (held.length === 0) {
            held.push(...([...messages] as { body: EventMessage }[]));
            return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
          }
          return real.sendBatch(messages, options);
        },
      };
    });
    await expectStatus(await postback(network, body), 200);
    await eventually(async () => (held.length > 0 ? true : null));
    expect(held[0]?.body.event.user_id).toBe(body.user_id);
    await inboundLogged(network.id, 1);

    const answer = await erase({ user_id: body.user_id });
    // D1 had nothing yet: no conversion was found, and the record is what catches the copy.
    expect(answer.run.counts.objects.touched).toBe(0);
    await env.EVENTS.send(held[0]?.body as EventMessage, { contentType: "json" });
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    expect(row.user_id).toBe(`erased:${answer.id}`);
    const state = await stub.inspect();
    expect(state.state?.fields.user_id).toBe(`erased:${answer.id}`);
    await eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null));
    expect(await d1RowsContaining(String(body.user_id))).toEqual({});
    const proof = await proofOf(network, transactionId);
    expect(proof.breaks).toEqual([]);
    expect(proof.events[0]?.erased?.erasure_ids).toEqual([answer.id]);
  });

  it("but an event received after the erasure's run is new data, stored as sent", async () => {
    const person = uniqueId("person");
    const answer = await erase({ user_id: person });
    const before = makeEventMessage({
      received_at: new Date(Date.parse(answer.last_run_at) - 1000).toISOString(),
      event: { status: "pending", user_id: person },
    });
    const after = makeEventMessage({
      received_at: new Date(Date.parse(answer.last_run_at) + 1000).toISOString(),
      event: { status: "pending", user_id: person },
    });
    for (const message of [before, after]) {
      await env.EVENTS.send(
        { ...message, conversion: { ...message.conversion, user_id: person } },
        { contentType: "json" },
      );
    }
    const rows = await Promise.all(
      [before, after].map((message) => eventually(() => conversionInD1(message.network_id, message.transaction_id))),
    );
    expect(rows.map((row) => row.user_id)).toEqual([`erased:${answer.id}`, person]);
  });
});

describe("refused requests", () => {
  it.each([
    ["no identifier", {}, "body.user_id"],
    ["two identifiers", { user_id: "u-1", device_id: "d-1" }, "body.device_id"],
    ["an empty identifier", { user_id: "" }, "body.user_id"],
    ["an unknown field", { user_id: "u-1", email: "a@example.com" }, "body.email"],
    ["a marker", { click_id: "erased:ers_x" }, "body.click_id"],
    ["a limit too large", { user_id: "u-1", limit: 100_000 }, "body.limit"],
    ["an unknown network", { user_id: "u-1", network_id: "no-such-network" }, "body.network_id"],
  ])("answers 422 to %s, naming the field, and stores nothing", async (_, body, location) => {
    const before = await erasureCount();
    const problem = await expectProblem(
      await admin("/v1/erasure", { method: "POST", body: JSON.stringify(body) }),
      422,
      "validation_failed",
    );
    expect(problem.errors.map((error) => error.location)).toContain(location);
    expect(await erasureCount()).toBe(before);
  });

  it("refuses a request without the admin token, and stores nothing", async () => {
    const before = await erasureCount();
    for (const authorization of [null, "Bearer wrong-token-0123456789abcdefgh"]) {
      const headers = new Headers({ "content-type": "application/json" });
      if (authorization) headers.set("authorization", authorization);
      const request = new Request(`${BASE}/v1/erasure`, {
        method: "POST",
        headers,
        body: JSON.stringify({ user_id: "u-1" }),
      });
      await expectProblem(await exports.default.fetch(request), 401, "unauthorized");
    }
    for (const path of ["/v1/erasures", "/v1/erasures/ers_x"]) {
      await expectProblem(await exports.default.fetch(new Request(`${BASE}${path}`)), 401, "unauthorized");
    }
    expect(await erasureCount()).toBe(before);
  });

  it("answers 404 for an erasure that does not exist", async () => {
    await expectProblem(await admin("/v1/erasures/ers_nope"), 404, "not_found");
  });
});

describe("the partners an erasure names", () => {
  it("include one whose first attempt has not recorded itself yet, not one superseded unsent", async () => {
    const tx = uniqueId("tx");
    const [waiting, superseded, sent] = await Promise.all([
      createPartner({ url_template: "https://partner.test/ok" }),
      createPartner({ url_template: "https://partner.test/ok" }),
      createPartner({ url_template: "https://partner.test/ok" }),
    ]);
    // An attempt counts itself with its result: until then its delivery says 0 attempts.
    await pendingDelivery(waiting.id, { transaction_id: tx });
    await pendingDelivery(superseded.id, { transaction_id: tx, state: "superseded" });
    await pendingDelivery(sent.id, { transaction_id: tx, state: "delivered", attempts: 1 });
    expect(await partnersOf(env.DB, [{ network_id: "acme", transaction_id: tx, test: 0 }])).toEqual(
      [waiting.id, sent.id].sort(),
    );
  });
});
