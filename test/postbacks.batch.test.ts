/**
 * POST /v1/postbacks/{network_id}/batch: up to 100 events in one authenticated JSON request, each
 * decided on its own through the real Durable Objects, with per-item results; one bad item does
 * not reject the others, while a bad request (credentials, shape, media type) rejects all of them.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RecordInput, RecordResult } from "../src/domain/conversion";
import { type IngestDeps, ingestBatch } from "../src/ingest/ingest";
import { utf8 } from "../src/lib/bytes";
import { hmacKey } from "../src/lib/keys";
import { type NetworkAuth, tokenDigest } from "../src/networks/network-cache";
import {
  BASE,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, type IngestAnswer, TOKEN_ONLY, testFlags, tokenOf } from "./support/inbound";
import { expectLocations, expectNothingStored, expectProblem, locationsOf, signedHeaders } from "./support/problems";

interface BatchResult {
  index: number;
  status: number;
  answer?: IngestAnswer;
  code?: string;
  detail?: string;
  errors?: { location: string; message: string }[];
}

function batchUrl(networkId: string): string {
  return `${BASE}/v1/postbacks/${networkId}/batch`;
}

/** A batch body signed the Standard Webhooks way; `options.contentType` overrides application/json. */
async function postBatch(
  network: TestNetwork,
  body: unknown,
  options: { contentType?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const headers = await signedHeaders(network.secret, utf8(raw), {
    ...(options.contentType === undefined ? {} : { contentType: options.contentType }),
    ...(options.headers === undefined ? {} : { headers: options.headers }),
  });
  return exports.default.fetch(new Request(batchUrl(network.id), { method: "POST", headers, body: raw }));
}

async function results(response: Response): Promise<BatchResult[]> {
  const body = await expectStatus<{ results: BatchResult[] }>(response, 200);
  return body.results;
}

/** Every transaction_id anywhere in a batch body. */
function transactionIdsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(transactionIdsIn);
  if (value === null || typeof value !== "object") return [];
  const record = value as Record<string, unknown>;
  if (typeof record.transaction_id === "string") return [record.transaction_id];
  return Object.values(record).flatMap(transactionIdsIn);
}

const stored = (networkId: string, transactionId: unknown) =>
  eventually(() => conversionInD1(networkId, String(transactionId)));

describe("batch: each event decided on its own", () => {
  it("answers per item (200, 422, 409, duplicate) and stores only the valid ones", async () => {
    const network = await createNetwork();
    const existing = makePostback({ amount: "10.00" });
    await expectStatus(await postback(network, existing), 200);
    await stored(network.id, existing.transaction_id);

    const ok = makePostback();
    const invalid = makePostback({ amount: "ten", currency: "XXQ" });
    const conflicting = { ...existing, amount: "20.00" };
    const response = await postBatch(network, { events: [ok, invalid, conflicting, ok] });
    const items = await results(response);

    expect(items.map((item) => item.index)).toEqual([0, 1, 2, 3]);
    expect(items.map((item) => item.status)).toEqual([200, 422, 409, 200]);

    const [first, bad, conflict, repeat] = items;
    // Items 0 and 3 are one transaction: one is recorded, the other answered as its duplicate.
    expect([first?.answer?.status, repeat?.answer?.status].sort()).toEqual(["accepted", "duplicate"]);
    expect(repeat?.answer?.event_id).toBe(first?.answer?.event_id);
    expect(first?.answer).toMatchObject({ network_id: network.id, transaction_id: ok.transaction_id });

    expect(bad).toMatchObject({ code: "validation_failed" });
    expect(bad?.answer).toBeUndefined();
    expect(bad?.errors?.map((e) => e.location).sort()).toEqual(["body.events[1].amount", "body.events[1].currency"]);

    expect(conflict).toMatchObject({ code: "conversion_conflict" });
    expect(conflict?.errors?.map((e) => e.location)).toEqual(["body.events[2].amount"]);

    await stored(network.id, ok.transaction_id);
    expect(await conversionInD1(network.id, String(invalid.transaction_id))).toBeNull();
    expect(await conversionInD1(network.id, String(existing.transaction_id))).toMatchObject({ amount: "10.00" });
  });

  it("takes the largest batch, 100 events, and stores every one", async () => {
    const network = await createNetwork();
    const events = Array.from({ length: 100 }, () => makePostback());
    const items = await results(await postBatch(network, { events }));
    expect(items).toHaveLength(100);
    expect(items.every((item) => item.status === 200 && item.answer?.status === "accepted")).toBe(true);
    for (const event of events) await stored(network.id, event.transaction_id);
  });

  // A test batch used to update the live conversion of the same transaction; test and live are now
  // apart, so it starts the transaction's test conversion instead.
  it("decides a status change after an earlier batch, and keeps a test batch apart as test", async () => {
    const network = await createNetwork();
    const pending = makePostback({ status: "pending" });
    expect((await results(await postBatch(network, { events: [pending] })))[0]?.answer?.status).toBe("accepted");
    const approved = await results(await postBatch(network, { events: [{ ...pending, status: "approved" }] }));
    expect(approved[0]?.answer).toMatchObject({ status: "updated", conversion_status: "approved" });
    const items = await results(await postBatch(network, { events: [{ ...pending, status: "paid", test: true }] }));
    expect(items[0]?.answer).toMatchObject({ status: "accepted", conversion_status: "paid" });
    const tests = await eventually(async () => {
      const found = await testFlags(network.id, String(pending.transaction_id), true);
      return found.events.length === 1 ? found : null;
    });
    expect(tests).toEqual({ conversion: 1, events: [1] });
    const lives = await eventually(async () => {
      const found = await testFlags(network.id, String(pending.transaction_id), false);
      return found.events.length === 2 ? found : null;
    });
    expect(lives).toEqual({ conversion: 0, events: [0, 0] });
  });

  it("takes the network's token instead of a signature", async () => {
    const network = await createInboundNetwork({ auth: TOKEN_ONLY });
    const event = makePostback();
    const response = await exports.default.fetch(
      new Request(batchUrl(network.id), {
        method: "POST",
        headers: { "content-type": "application/json", "x-postback-token": tokenOf(network) },
        body: JSON.stringify({ events: [event] }),
      }),
    );
    expect((await results(response))[0]?.status).toBe(200);
    await stored(network.id, event.transaction_id);
  });
});

describe("batch: a bad request rejects the whole batch", () => {
  it.each([
    ["no events", { events: [] }, ["body.events"]],
    ["101 events", { events: Array.from({ length: 101 }, () => makePostback()) }, ["body.events"]],
    ["events that are not an array", { events: makePostback() }, ["body.events"]],
    ["no events field", {}, ["body.events"]],
    ["an unknown top-level field", { events: [makePostback()], dry_run: true }, ["body.dry_run"]],
    ["an array instead of an object", [makePostback()], ["body"]],
  ])("answers 422 to a batch with %s and stores nothing", async (_, body, locations) => {
    const network = await createNetwork();
    const problem = await expectProblem(await postBatch(network, body), 422, "validation_failed");
    expect(locationsOf(problem).sort()).toEqual([...locations].sort());
    await expectNothingStored(network, transactionIdsIn(body));
  });

  it("answers 400 to a batch that is not JSON", async () => {
    const network = await createNetwork();
    await expectProblem(await postBatch(network, '{"events": ['), 400, "malformed_json");
  });

  it("answers 401 to a batch with a bad signature, and stores none of its events", async () => {
    const network = await createNetwork();
    const events = [makePostback(), makePostback()];
    const raw = JSON.stringify({ events });
    const headers = await signedHeaders(network.secret, utf8(JSON.stringify({ events: [events[0]] })));
    const response = await exports.default.fetch(
      new Request(batchUrl(network.id), { method: "POST", headers, body: raw }),
    );
    expectLocations(await expectProblem(response, 401, "unauthorized"), ["header.webhook-signature"]);
    await expectNothingStored(
      network,
      events.map((event) => String(event.transaction_id)),
    );
  });

  it("answers 401 to a batch without credentials", async () => {
    const network = await createNetwork();
    const response = await exports.default.fetch(
      new Request(batchUrl(network.id), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ events: [makePostback()] }),
      }),
    );
    await expectProblem(response, 401, "unauthorized");
  });

  it("answers 415 to a form-encoded batch, even a correctly signed one", async () => {
    const network = await createNetwork();
    const txid = uniqueId("tx");
    const body = new URLSearchParams({ transaction_id: txid, amount: "1.00", currency: "USD" }).toString();
    const response = await postBatch(network, body, { contentType: "application/x-www-form-urlencoded" });
    expectLocations(await expectProblem(response, 415, "unsupported_media_type"), ["header.content-type"]);
    await expectNothingStored(network, [txid]);
  });

  it("answers 415 to a batch sent as text/plain", async () => {
    const network = await createNetwork();
    const response = await postBatch(network, { events: [makePostback()] }, { contentType: "text/plain" });
    await expectProblem(response, 415, "unsupported_media_type");
  });

  it("answers 404 to a batch for an unknown network", async () => {
    const ghost = { id: uniqueId("ghost"), secret: (await createNetwork()).secret };
    const problem = await expectProblem(await postBatch(ghost, { events: [makePostback()] }), 404, "network_not_found");
    expectLocations(problem, ["path.network_id"]);
  });
});

describe("batch order", () => {
  /**
   * A conversion recorder that answers out of order: each round, it finishes the call that started
   * last. If a batch sent one transaction's events without waiting, a later event would reach its
   * object (and finish) before the earlier one.
   */
  function outOfOrderRecorder() {
    const log: string[] = [];
    const open: (() => void)[] = [];
    const conversion = () => ({
      record(input: RecordInput): Promise<RecordResult> {
        const label = `${input.transaction_id}:${input.postback.status}`;
        log.push(`start ${label}`);
        return new Promise((resolve) => {
          open.push(() => {
            log.push(`end ${label}`);
            resolve({
              ok: true,
              answer: {
                status: "accepted",
                event_id: `evt_${label}`,
                network_id: "acme",
                transaction_id: input.transaction_id,
                conversion_status: input.postback.status,
              },
            });
          });
        });
      },
    });
    const finishLatest = () => open.pop()?.();
    return { log, conversion, finishLatest };
  }

  async function tokenAuth(token: string): Promise<NetworkAuth> {
    const now = new Date().toISOString();
    return {
      network: {
        id: "acme",
        name: "Acme",
        status: "active",
        auth: { methods: ["token"], ip_allowlist: [] },
        mapping: null,
        answer: null,
        test_mode: false,
        hash_identifiers: [],
        apple: null,
        created_at: now,
        updated_at: now,
      },
      keys: [],
      tokens: [{ id: "tok_1", digest: await tokenDigest(token), expiresAtMs: null }],
    };
  }

  it("decides one transaction's events in array order, and different transactions in parallel", async () => {
    const token = "pbt_order-test-token";
    const auth = await tokenAuth(token);
    const recorder = outOfOrderRecorder();
    const deps: IngestDeps = {
      nowMs: Date.now(),
      maxBodyBytes: 65_536,
      toleranceSeconds: 300,
      loadNetwork: async () => auth,
      refreshNetwork: async () => null,
      withinRateLimit: async () => true,
      noteCredentialUse: () => undefined,
      conversion: recorder.conversion,
      identifierKey: () => hmacKey(env.ENCRYPTION_KEY, "identifier-hash v1"),
    };
    const events = [
      { transaction_id: "a", status: "pending" },
      { transaction_id: "b", status: "pending" },
      { transaction_id: "a", status: "approved" },
      { transaction_id: "b", status: "approved" },
      { transaction_id: "a", status: "paid" },
    ];
    const request = new Request(batchUrl("acme"), {
      method: "POST",
      headers: { "content-type": "application/json", "x-postback-token": token },
      body: JSON.stringify({ events }),
    });
    let finished = false;
    const results = ingestBatch("acme", request, deps).finally(() => {
      finished = true;
    });
    while (!finished) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      recorder.finishLatest();
    }
    expect((await results).map((item) => item.status)).toEqual([200, 200, 200, 200, 200]);

    const at = (entry: string) => recorder.log.indexOf(entry);
    for (const [earlier, later] of [
      ["a:pending", "a:approved"],
      ["a:approved", "a:paid"],
      ["b:pending", "b:approved"],
    ]) {
      expect(at(`end ${earlier}`), recorder.log.join(", ")).toBeGreaterThanOrEqual(0);
      expect(at(`start ${later}`), recorder.log.join(", ")).toBeGreaterThan(at(`end ${earlier}`));
    }
    // Both transactions were in flight at once: b started before a's first event finished.
    expect(at("start b:pending"), recorder.log.join(", ")).toBeLessThan(at("end a:pending"));
  });
});
