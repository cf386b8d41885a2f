/**
 * Keyed hashes of identifiers (docs/privacy.md): a network with `hash_identifiers` has its
 * postbacks' user_id and device_id hashed at ingest, so that the raw value reaches no store (the
 * conversion's object, D1, the inbound log) and no partner; the same value always hashes the same,
 * duplicates still dedupe, and other networks are unchanged.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { hashJsonMembers } from "../src/ingest/log-identifiers";
import {
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  signedRequest,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, getPostback, TOKEN_ONLY, tokenOf } from "./support/inbound";
import { conversionObject, d1RowsContaining, expectedHash } from "./support/privacy";
import { expectProblem } from "./support/problems";

async function hashing(fields: string[], network?: TestNetwork): Promise<TestNetwork> {
  const target = network ?? (await createNetwork());
  const updated = await expectStatus<{ hash_identifiers: string[] }>(
    await admin(`/v1/networks/${target.id}`, { method: "PATCH", body: JSON.stringify({ hash_identifiers: fields }) }),
    200,
  );
  expect(updated.hash_identifiers).toEqual(fields);
  return target;
}

/** A partner that hears only this network, with both identifiers in its URL. */
async function identifierPartner(network: TestNetwork, prefix: string) {
  return createPartner({
    url_template: `${PARTNER}${prefix}?tx={transaction_id}&u={user_id}&d={device_id}`,
    filters: { networks: [network.id] },
  });
}

async function received(prefix: string, count: number) {
  return eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= count ? log : null;
  }, 20_000);
}

/** Waits until the inbound log holds `count` records of the network. */
async function inboundRecords(networkId: string, count: number) {
  return eventually(async () => {
    const { results } = await env.DB.prepare("SELECT * FROM inbound_requests WHERE network_id = ? ORDER BY received_at")
      .bind(networkId)
      .all<Record<string, unknown>>();
    return results.length >= count ? results : null;
  });
}

describe("a network that hashes user_id and device_id", () => {
  it("stores and delivers only their keyed hashes: in the object, in D1, in the inbound log, to partners", async () => {
    const network = await hashing(["user_id", "device_id"]);
    const prefix = `/ok/${uniqueId("hashed")}`;
    await identifierPartner(network, prefix);
    const userId = uniqueId("person");
    const deviceId = uniqueId("device");
    const body = makePostback({ user_id: userId, device_id: deviceId });
    expect((await expectStatus<{ status: string }>(await postback(network, body), 200)).status).toBe("accepted");
    // A rejected postback with the same identifiers is logged too, before any field was validated.
    await expectStatus(await postback(network, { ...body, amount: "-1" }), 422);

    const userHash = await expectedHash("user_id", userId);
    const deviceHash = await expectedHash("device_id", deviceId);
    const row = await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    expect(row).toMatchObject({ user_id: userHash, device_id: deviceHash });

    const state = (await conversionObject(network.id, String(body.transaction_id)).inspect()).state;
    expect(state?.fields).toMatchObject({ user_id: userHash, device_id: deviceHash });

    const [delivered] = await received(prefix, 1);
    const query = new URL(delivered?.url ?? "").searchParams;
    expect([query.get("u"), query.get("d")]).toEqual([userHash, deviceHash]);

    const records = await inboundRecords(network.id, 2);
    expect(records.map((record) => record.status)).toEqual([200, 422]);
    for (const record of records) {
      const excerpt = JSON.parse(String(record.excerpt)) as { body: string };
      expect(excerpt.body).toContain(`"user_id":"${userHash}"`);
      expect(excerpt.body).toContain(`"device_id":"${deviceHash}"`);
    }
    expect(await d1RowsContaining(userId)).toEqual({});
    expect(await d1RowsContaining(deviceId)).toEqual({});
  });

  it("hashes the same value the same way in every conversion, so duplicates still dedupe and joins still work", async () => {
    const network = await hashing(["user_id"]);
    const userId = uniqueId("person");
    const first = makePostback({ user_id: userId });
    const second = makePostback({ user_id: userId });
    expect((await expectStatus<{ status: string }>(await postback(network, first), 200)).status).toBe("accepted");
    expect((await expectStatus<{ status: string }>(await postback(network, first), 200)).status).toBe("duplicate");
    expect((await expectStatus<{ status: string }>(await postback(network, second), 200)).status).toBe("accepted");
    const rows = await Promise.all(
      [first, second].map((body) => eventually(() => conversionInD1(network.id, String(body.transaction_id)))),
    );
    const expected = await expectedHash("user_id", userId);
    expect(rows.map((row) => row.user_id)).toEqual([expected, expected]);
    const { results } = await env.DB.prepare("SELECT transaction_id FROM conversions WHERE user_id = ? ORDER BY 1")
      .bind(expected)
      .all<{ transaction_id: string }>();
    expect(results.map((r) => r.transaction_id)).toEqual([first.transaction_id, second.transaction_id].sort());
    const { results: events } = await env.DB.prepare(
      "SELECT count(*) AS n FROM conversion_events WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, first.transaction_id)
      .all<{ n: number }>();
    expect(events[0]?.n).toBe(1);
  });

  it("hashes only the fields it names, and hashes a batch's events too", async () => {
    const network = await hashing(["device_id"]);
    const userId = uniqueId("person");
    const deviceId = uniqueId("device");
    const events = [makePostback({ user_id: userId, device_id: deviceId }), makePostback({ device_id: deviceId })];
    const request = await signedRequest(network.id, { events }, network.secret);
    const batch = new Request(`${BASE}/v1/postbacks/${network.id}/batch`, request);
    const answer = await expectStatus<{ results: { status: number }[] }>(await exports.default.fetch(batch), 200);
    expect(answer.results.map((result) => result.status)).toEqual([200, 200]);
    const deviceHash = await expectedHash("device_id", deviceId);
    const rows = await Promise.all(
      events.map((body) => eventually(() => conversionInD1(network.id, String(body.transaction_id)))),
    );
    expect(rows.map((row) => [row.user_id, row.device_id])).toEqual([
      [userId, deviceHash],
      [null, deviceHash],
    ]);
    await inboundRecords(network.id, 1);
    expect(await d1RowsContaining(deviceId)).toEqual({});
  });

  it("hashes a GET postback's mapped parameter, and keeps only its hash in the log, also for a request refused", async () => {
    const network = await createInboundNetwork({
      auth: TOKEN_ONLY,
      mapping: { preset: "generic", fields: { user_id: ["uid"] } },
    });
    await hashing(["user_id"], network);
    const userId = uniqueId("person");
    const transactionId = uniqueId("tx");
    await expectStatus(
      await getPostback(network.id, { txid: transactionId, uid: userId, token: tokenOf(network) }),
      200,
    );
    await expectStatus(await getPostback(network.id, { txid: transactionId, uid: userId, token: "pbt_wrong" }), 401);
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    const hash = await expectedHash("user_id", userId);
    expect(row.user_id).toBe(hash);
    const records = await inboundRecords(network.id, 2);
    for (const record of records) {
      const query = new URLSearchParams((JSON.parse(String(record.excerpt)) as { query: string }).query);
      expect(query.get("uid")).toBe(hash);
    }
    expect(await d1RowsContaining(userId)).toEqual({});
  });

  it("explains as it records: the decision and the partner's request are made with the hash", async () => {
    const network = await hashing(["user_id"]);
    const prefix = `/ok/${uniqueId("explain")}`;
    const partner = await identifierPartner(network, prefix);
    const userId = uniqueId("person");
    const body = makePostback({ user_id: userId });
    await expectStatus(await postback(network, body), 200);
    const explained = await expectStatus<{
      decision: { verdict: string };
      partners: { partner_id: string; request: { url: string } | null }[];
    }>(
      await admin(`/v1/postbacks/${network.id}/explain`, {
        method: "POST",
        body: JSON.stringify({ ...body, status: "paid" }),
      }),
      200,
    );
    // The recorded state holds the hash, so only a hash of the same value makes this an update.
    expect(explained.decision.verdict).toBe("updated");
    const request = explained.partners.find((p) => p.partner_id === partner.id)?.request;
    expect(new URL(request?.url ?? "").searchParams.get("u")).toBe(await expectedHash("user_id", userId));
  });
});

describe("networks without hash_identifiers", () => {
  it("store user_id and device_id as sent", async () => {
    const network = await createNetwork();
    const created = await expectStatus<{ hash_identifiers: string[] }>(await admin(`/v1/networks/${network.id}`), 200);
    expect(created.hash_identifiers).toEqual([]);
    const body = makePostback({ user_id: uniqueId("person"), device_id: uniqueId("device") });
    await expectStatus(await postback(network, body), 200);
    const row = await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    expect(row).toMatchObject({ user_id: body.user_id, device_id: body.device_id });
  });

  it("and the setting is validated, naming the field", async () => {
    const network = await createNetwork();
    for (const bad of [["email"], ["user_id", "user_id"], "user_id"]) {
      const response = await admin(`/v1/networks/${network.id}`, {
        method: "PATCH",
        body: JSON.stringify({ hash_identifiers: bad }),
      });
      const problem = await expectProblem(response, 422, "validation_failed");
      expect(problem.errors.map((e) => e.location)[0]).toMatch(/^body\.hash_identifiers/);
    }
    const unchanged = await expectStatus<{ hash_identifiers: string[] }>(
      await admin(`/v1/networks/${network.id}`),
      200,
    );
    expect(unchanged.hash_identifiers).toEqual([]);
  });
});

describe("the inbound log's body excerpt of a hashing network", () => {
  const hash = async (field: string, value: string) => `H(${field}:${value})`;

  it("hashes every member of a hashed field, whatever the JSON's spelling, and leaves the rest as sent", async () => {
    const text =
      '{ "amount" : 29.90,\n "user_id" :\t"a\\"b\\u00e9", "events":[{"user_id": 42}], "note": "user_id", "device_id":"d" }';
    expect(await hashJsonMembers(text, ["user_id"], hash)).toBe(
      '{ "amount" : 29.90,\n "user_id" :\t"H(user_id:a\\"bé)", "events":[{"user_id": "H(user_id:42)"}], "note": "user_id", "device_id":"d" }',
    );
  });

  it("hashes in a body that is not valid JSON, and withholds what it cannot delimit", async () => {
    expect(await hashJsonMembers('{"user_id":"abc",', ["user_id"], hash)).toBe('{"user_id":"H(user_id:abc)",');
    expect(await hashJsonMembers('{"user_id":"abc', ["user_id"], hash)).toBeNull();
    expect(await hashJsonMembers('{"user_id":{"id":"abc"}}', ["user_id"], hash)).toBeNull();
    expect(await hashJsonMembers('{"note":"unterminated', ["user_id"], hash)).toBe('{"note":"unterminated');
    expect(await hashJsonMembers('{"user_id":null}', ["user_id"], hash)).toBe('{"user_id":null}');
  });
});
