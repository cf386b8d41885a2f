/**
 * Every way the ingest route rejects a postback: the status, the problem+json body with its stable
 * code and the offending fields, and proof that nothing reached storage. Then the edge cases that
 * must be accepted exactly as sent.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { utf8 } from "../src/lib/bytes";
import {
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  signedRequest,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectNothingStored, expectProblem, postBytes, signedHeaders } from "./support/problems";

const MAX_BODY_BYTES = Number(env.MAX_BODY_BYTES);

interface Answer {
  status: string;
  transaction_id: string;
  conversion_status: string;
}

/** A JSON object of exactly `size` bytes, padded with insignificant whitespace. */
function paddedBody(transactionId: string, size: number): string {
  const head = `{"transaction_id":"${transactionId}"`;
  return `${head}${" ".repeat(size - head.length - 1)}}`;
}

function metaWithKeys(count: number): Record<string, string> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`k${i}`, "v"]));
}

interface FieldCase {
  name: string;
  /** The body, as an object (serialised with JSON.stringify) or as raw JSON text. */
  body: (transactionId: string) => Record<string, unknown> | string;
  locations: string[];
}

const fieldCases: FieldCase[] = [
  {
    name: "an unknown top-level field",
    body: (tx) => makePostback({ transaction_id: tx, coupon: "SPRING" }),
    locations: ["body.coupon"],
  },
  {
    name: "amount as a boolean",
    body: (tx) => makePostback({ transaction_id: tx, amount: true }),
    locations: ["body.amount"],
  },
  {
    name: "transaction_id as a number",
    body: () => makePostback({ transaction_id: 8812 }),
    locations: ["body.transaction_id"],
  },
  {
    name: "a negative amount string",
    body: (tx) => makePostback({ transaction_id: tx, amount: "-5.00" }),
    locations: ["body.amount"],
  },
  {
    name: "a negative amount number",
    body: (tx) => `{"transaction_id":"${tx}","amount":-5.00,"currency":"USD"}`,
    locations: ["body.amount"],
  },
  {
    name: "an amount number with an exponent (1e3)",
    body: (tx) => `{"transaction_id":"${tx}","amount":1e3,"currency":"USD"}`,
    locations: ["body.amount"],
  },
  {
    name: 'an amount string with an exponent ("1E3")',
    body: (tx) => makePostback({ transaction_id: tx, amount: "1E3" }),
    locations: ["body.amount"],
  },
  {
    name: "an amount with nine decimals",
    body: (tx) => makePostback({ transaction_id: tx, amount: "1.123456789" }),
    locations: ["body.amount"],
  },
  {
    name: "an amount number with nine decimals",
    body: (tx) => `{"transaction_id":"${tx}","amount":0.123456789,"currency":"USD"}`,
    locations: ["body.amount"],
  },
  {
    name: "an amount with sixteen integer digits",
    body: (tx) => makePostback({ transaction_id: tx, amount: "1234567890123456" }),
    locations: ["body.amount"],
  },
  {
    name: "a currency without an amount",
    body: (tx) => ({ transaction_id: tx, currency: "USD" }),
    locations: ["body.currency"],
  },
  {
    name: "an amount without a currency",
    body: (tx) => ({ transaction_id: tx, amount: "29.99" }),
    locations: ["body.amount"],
  },
  {
    name: 'the unknown currency code "XYZ"',
    body: (tx) => makePostback({ transaction_id: tx, currency: "XYZ" }),
    locations: ["body.currency"],
  },
  {
    name: "an event_time ten minutes in the future",
    body: (tx) => makePostback({ transaction_id: tx, event_time: new Date(Date.now() + 600_000).toISOString() }),
    locations: ["body.event_time"],
  },
  {
    name: "an event_time a day in the future",
    body: (tx) => makePostback({ transaction_id: tx, event_time: new Date(Date.now() + 86_400_000).toISOString() }),
    locations: ["body.event_time"],
  },
  {
    name: "an event_time without a time zone",
    body: (tx) => makePostback({ transaction_id: tx, event_time: "2026-11-27T12:34:56" }),
    locations: ["body.event_time"],
  },
  {
    name: "an event_time in a non-RFC 3339 format",
    body: (tx) => makePostback({ transaction_id: tx, event_time: "27/11/2026 12:34" }),
    locations: ["body.event_time"],
  },
  {
    name: "an impossible calendar date in event_time (February 31)",
    body: (tx) => makePostback({ transaction_id: tx, event_time: "2026-02-31T12:00:00Z" }),
    locations: ["body.event_time"],
  },
  {
    name: "an event_time as Unix seconds",
    body: (tx) => makePostback({ transaction_id: tx, event_time: 1764246896 }),
    locations: ["body.event_time"],
  },
  {
    name: "a transaction_id of 129 characters",
    body: () => makePostback({ transaction_id: "t".repeat(129) }),
    locations: ["body.transaction_id"],
  },
  {
    name: "an empty transaction_id",
    body: () => makePostback({ transaction_id: "" }),
    locations: ["body.transaction_id"],
  },
  {
    name: "a missing transaction_id",
    body: () => {
      const { transaction_id: _, ...rest } = makePostback();
      return rest;
    },
    locations: ["body.transaction_id"],
  },
  {
    name: "a click_id of 257 characters",
    body: (tx) => makePostback({ transaction_id: tx, click_id: "c".repeat(257) }),
    locations: ["body.click_id"],
  },
  {
    name: "a NUL character in transaction_id",
    body: () => makePostback({ transaction_id: "a\u0000b" }),
    locations: ["body.transaction_id"],
  },
  {
    name: "a newline in click_id",
    body: (tx) => makePostback({ transaction_id: tx, click_id: "a\nb" }),
    locations: ["body.click_id"],
  },
  {
    name: "a control character in a meta value",
    body: (tx) => makePostback({ transaction_id: tx, meta: { sub1: "a\u0007b" } }),
    locations: ["body.meta.sub1"],
  },
  {
    name: "a platform outside the enum",
    body: (tx) => makePostback({ transaction_id: tx, platform: "windows-phone" }),
    locations: ["body.platform"],
  },
  {
    name: "a status outside the lifecycle",
    body: (tx) => makePostback({ transaction_id: tx, status: "refunded" }),
    locations: ["body.status"],
  },
  {
    name: "meta with a nested object",
    body: (tx) => makePostback({ transaction_id: tx, meta: { sub1: "ok", nested: { deep: 1 } } }),
    locations: ["body.meta.nested"],
  },
  {
    name: "meta with an array value",
    body: (tx) => makePostback({ transaction_id: tx, meta: { tags: ["a", "b"] } }),
    locations: ["body.meta.tags"],
  },
  {
    name: "meta with 33 keys",
    body: (tx) => makePostback({ transaction_id: tx, meta: metaWithKeys(33) }),
    locations: ["body.meta"],
  },
  {
    name: "a JSON array body",
    body: (tx) => `[{"transaction_id":"${tx}"}]`,
    locations: ["body"],
  },
  {
    name: "a JSON string body",
    body: () => '"ord_1"',
    locations: ["body"],
  },
  {
    name: "a JSON null body",
    body: () => "null",
    locations: ["body"],
  },
];

describe("POST /v1/postbacks/{network_id}: field validation (422 validation_failed)", () => {
  it.each(fieldCases)("rejects $name, names $locations, and stores nothing", async ({ body, locations }) => {
    const network = await createNetwork();
    const transactionId = uniqueId("bad");
    const problem = await expectProblem(await postback(network, body(transactionId)), 422, "validation_failed");
    expectLocations(problem, locations);
    for (const location of locations) expect(problem.detail).toContain(location);
    await expectNothingStored(network, [transactionId]);
  });

  it("lists every bad field of one postback in a single 422", async () => {
    const network = await createNetwork();
    const body = {
      transaction_id: "t".repeat(129),
      amount: "-1",
      currency: "XYZ",
      platform: "tv",
      event_time: "yesterday",
      click_id: "a\nb",
      meta: { nested: { deep: true } },
      coupon: "SPRING",
    };
    const problem = await expectProblem(await postback(network, body), 422, "validation_failed");
    const expected = [
      "body.transaction_id",
      "body.amount",
      "body.currency",
      "body.platform",
      "body.event_time",
      "body.click_id",
      "body.meta.nested",
      "body.coupon",
    ];
    expectLocations(problem, expected);
    for (const location of expected) expect(problem.detail).toContain(location);
    for (const error of problem.errors) expect(error.message.length, JSON.stringify(error)).toBeGreaterThan(0);
    await expectNothingStored(network);
  });

  it("tells a sender with a malformed event_time only how to format it, not that it is in the future", async () => {
    const network = await createNetwork();
    const problem = await expectProblem(
      await postback(network, makePostback({ event_time: "27/11/2026 12:34" })),
      422,
      "validation_failed",
    );
    const messages = problem.errors.filter((e) => e.location === "body.event_time").map((e) => e.message);
    expect(messages, JSON.stringify(problem)).toHaveLength(1);
    expect(messages[0]).toMatch(/RFC 3339/);
    expect(messages.join(" ")).not.toMatch(/future/);
  });

  it("never answers a 5xx to hostile shapes, and keeps serving", async () => {
    const network = await createNetwork();
    const bodies = [
      `{"transaction_id":"${"[".repeat(5000)}"}`,
      `${"[".repeat(10_000)}${"]".repeat(10_000)}`,
      '{"__proto__":{"admin":true},"transaction_id":"ord_proto"}',
      '{"transaction_id":"ord_c","constructor":{"prototype":{}}}',
      '{"transaction_id":"ord_dup","transaction_id":{"x":1}}',
      '{"transaction_id":"ord_big","amount":1e400,"currency":"USD"}',
    ];
    for (const body of bodies) {
      const response = await postback(network, body);
      const text = await response.text();
      expect(response.status, `${body.slice(0, 60)} → ${response.status}: ${text}`).toBeGreaterThanOrEqual(400);
      expect(response.status, `${body.slice(0, 60)} → ${response.status}: ${text}`).toBeLessThan(500);
    }
    await expectNothingStored(network, ["ord_proto", "ord_c", "ord_dup", "ord_big"]);
  });
});

describe("POST /v1/postbacks/{network_id}: body framing", () => {
  it("answers 400 malformed_json to a body that is not JSON, and stores nothing", async () => {
    const network = await createNetwork();
    const problem = await expectProblem(await postback(network, '{"transaction_id": "ord_1", '), 400, "malformed_json");
    expectLocations(problem, ["body"]);
    await expectNothingStored(network, ["ord_1"]);
  });

  it("answers 400 malformed_json to a body that is not UTF-8", async () => {
    const network = await createNetwork();
    const bytes = Uint8Array.from([...utf8('{"transaction_id":"ord_'), 0xff, 0xfe, ...utf8('"}')]);
    const problem = await expectProblem(await postBytes(network.id, bytes, network.secret), 400, "malformed_json");
    expectLocations(problem, ["body"]);
    await expectNothingStored(network);
  });

  it("answers 400 malformed_json to an empty body", async () => {
    const network = await createNetwork();
    const problem = await expectProblem(await postBytes(network.id, "", network.secret), 400, "malformed_json");
    expectLocations(problem, ["body"]);
    await expectNothingStored(network);
  });

  it("accepts a body of exactly MAX_BODY_BYTES", async () => {
    expect(MAX_BODY_BYTES).toBe(65_536);
    const network = await createNetwork();
    const transactionId = uniqueId("max");
    const body = paddedBody(transactionId, MAX_BODY_BYTES);
    expect(utf8(body).length).toBe(MAX_BODY_BYTES);
    await expectStatus(await postback(network, body), 200);
    await eventually(() => conversionInD1(network.id, transactionId));
  });

  it("answers 413 payload_too_large to a body one byte over the limit with an honest content-length", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("big");
    const body = paddedBody(transactionId, MAX_BODY_BYTES + 1);
    const problem = await expectProblem(
      await postBytes(network.id, body, network.secret, { headers: { "content-length": String(MAX_BODY_BYTES + 1) } }),
      413,
      "payload_too_large",
    );
    expectLocations(problem, ["body"]);
    expect(problem.detail).toContain(String(MAX_BODY_BYTES));
    await expectNothingStored(network, [transactionId]);
  });

  it("answers 413 payload_too_large to a streamed body without content-length", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("stream");
    const bytes = utf8(paddedBody(transactionId, MAX_BODY_BYTES + 4096));
    const headers = await signedHeaders(network.secret, bytes);
    const chunkBytes = 8192;
    let offset = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) {
          controller.close();
          return;
        }
        controller.enqueue(bytes.slice(offset, offset + chunkBytes));
        offset += chunkBytes;
      },
    });
    const request = new Request(`${BASE}/v1/postbacks/${network.id}`, { method: "POST", headers, body: stream });
    expect(request.headers.has("content-length")).toBe(false);
    const problem = await expectProblem(await exports.default.fetch(request), 413, "payload_too_large");
    expectLocations(problem, ["body"]);
    await expectNothingStored(network, [transactionId]);
  });

  it("answers 413 when the content-length understates a body over the limit", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("liar");
    const body = paddedBody(transactionId, MAX_BODY_BYTES * 2);
    const response = await postBytes(network.id, body, network.secret, { headers: { "content-length": "64" } });
    const problem = await expectProblem(response, 413, "payload_too_large");
    expectLocations(problem, ["body"]);
    await expectNothingStored(network, [transactionId]);
  });

  it("answers 413 without reading the body when content-length declares too much", async () => {
    const network = await createNetwork();
    let pulls = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls += 1;
        controller.enqueue(utf8(" ".repeat(1024)));
        if (pulls > 200) controller.close();
      },
    });
    const headers = await signedHeaders(network.secret, utf8("{}"), {
      headers: { "content-length": String(MAX_BODY_BYTES * 16) },
    });
    const request = new Request(`${BASE}/v1/postbacks/${network.id}`, { method: "POST", headers, body: stream });
    const problem = await expectProblem(await exports.default.fetch(request), 413, "payload_too_large");
    expectLocations(problem, ["body"]);
    expect(pulls, "chunks pulled from a body that was declared too large").toBeLessThan(8);
    await expectNothingStored(network);
  });
});

describe("POST /v1/postbacks/{network_id}: content type (415)", () => {
  it.each([
    ["text/plain", "text/plain"],
    ["multipart/form-data", "multipart/form-data; boundary=x"],
    ["a JSON look-alike", "application/jsonp"],
  ])("rejects %s with 415 unsupported_media_type and stores nothing", async (_, contentType) => {
    const network = await createNetwork();
    const body = makePostback();
    const problem = await expectProblem(await postback(network, body, { contentType }), 415, "unsupported_media_type");
    expectLocations(problem, ["header.content-type"]);
    await expectNothingStored(network, [String(body.transaction_id)]);
  });

  it("rejects a request without content type with 415 and stores nothing", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const response = await postBytes(network.id, JSON.stringify(body), network.secret, { contentType: null });
    const problem = await expectProblem(response, 415, "unsupported_media_type");
    expectLocations(problem, ["header.content-type"]);
    expect(problem.detail).toMatch(/application\/json/);
    await expectNothingStored(network, [String(body.transaction_id)]);
  });

  it.each(["application/json; charset=utf-8", "Application/JSON"])(
    "accepts the content type %j",
    async (contentType) => {
      const network = await createNetwork();
      const body = makePostback();
      await expectStatus(await postback(network, body, { contentType }), 200);
      await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    },
  );
});

describe("POST /v1/postbacks/{network_id}: the network", () => {
  it("answers 404 network_not_found for a well-formed id nobody registered", async () => {
    const network = await createNetwork();
    const missingId = uniqueId("ghost");
    const request = await signedRequest(missingId, makePostback(), network.secret);
    const problem = await expectProblem(await exports.default.fetch(request), 404, "network_not_found");
    expectLocations(problem, ["path.network_id"]);
    expect(problem.detail).toContain(missingId);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM conversions WHERE network_id = ?")
      .bind(missingId)
      .first<{ n: number }>();
    expect(rows?.n).toBe(0);
  });

  it.each([
    ["upper case", "ACME"],
    ["one character", "a"],
    ["64 characters", "a".repeat(64)],
    ["a dot", "acme.net"],
    ["a leading dash", "-acme"],
    ["a colon", "acme:1"],
    ["percent-encoded space", "acme%20net"],
  ])("answers 404 network_not_found for a malformed id (%s)", async (_, networkId) => {
    const network = await createNetwork();
    const request = await signedRequest(networkId, makePostback(), network.secret);
    const problem = await expectProblem(await exports.default.fetch(request), 404, "network_not_found");
    expectLocations(problem, ["path.network_id"]);
  });

  it("answers 403 network_disabled while a network is disabled, and accepts again once enabled", async () => {
    const network = await createNetwork();
    const before = makePostback();
    await expectStatus(await postback(network, before), 200);

    await expectStatus(await admin(`/v1/networks/${network.id}/disable`, { method: "POST" }), 200);
    const refused = makePostback();
    const problem = await expectProblem(await postback(network, refused), 403, "network_disabled");
    expect(problem.detail).toContain(network.id);

    await expectStatus(await admin(`/v1/networks/${network.id}/enable`, { method: "POST" }), 200);
    const answer = await expectStatus<Answer>(await postback(network, refused), 200);
    expect(answer).toMatchObject({ status: "accepted", transaction_id: refused.transaction_id });
    await eventually(() => conversionInD1(network.id, String(refused.transaction_id)));
    await eventually(() => conversionInD1(network.id, String(before.transaction_id)));
  });

  it("stores nothing that was posted while the network was disabled", async () => {
    const network = await createNetwork();
    await expectStatus(await admin(`/v1/networks/${network.id}/disable`, { method: "POST" }), 200);
    const refused = makePostback();
    await expectProblem(await postback(network, refused), 403, "network_disabled");
    await expectStatus(await admin(`/v1/networks/${network.id}/enable`, { method: "POST" }), 200);
    await expectNothingStored(network, [String(refused.transaction_id)]);
  });
});

describe("POST /v1/postbacks/{network_id}: accepted exactly as sent", () => {
  async function storedRow(body: Record<string, unknown> | string, transactionId: string) {
    const network = await createNetwork();
    await expectStatus(await postback(network, body), 200);
    const row = await eventually(() => conversionInD1(network.id, transactionId));
    return row;
  }

  it('keeps the JSON number 29.90 as "29.90"', async () => {
    const tx = uniqueId("num");
    const row = await storedRow(`{"transaction_id":"${tx}","amount":29.90,"currency":"USD"}`, tx);
    expect(row.amount).toBe("29.90");
  });

  it("keeps every digit of 123456789012345.12345678 sent as a JSON number", async () => {
    const tx = uniqueId("huge");
    const row = await storedRow(`{"transaction_id":"${tx}","amount":123456789012345.12345678,"currency":"USD"}`, tx);
    expect(row.amount).toBe("123456789012345.12345678");
  });

  it("keeps every digit of 123456789012345.12345678 sent as a string", async () => {
    const tx = uniqueId("huge-str");
    const row = await storedRow(makePostback({ transaction_id: tx, amount: "123456789012345.12345678" }), tx);
    expect(row.amount).toBe("123456789012345.12345678");
  });

  it("keeps a zero amount and trailing zeros", async () => {
    const tx = uniqueId("zero");
    const row = await storedRow(`{"transaction_id":"${tx}","amount":0.00,"currency":"JPY"}`, tx);
    expect(row).toMatchObject({ amount: "0.00", currency: "JPY" });
  });

  it("accepts status and platform in any case and stores them lowercase", async () => {
    const tx = uniqueId("case");
    const row = await storedRow(makePostback({ transaction_id: tx, status: "APPROVED", platform: "Android" }), tx);
    expect(row).toMatchObject({ status: "approved", platform: "android" });
  });

  it('stores currency "usd" as "USD"', async () => {
    const tx = uniqueId("cur");
    const row = await storedRow(makePostback({ transaction_id: tx, currency: "usd" }), tx);
    expect(row.currency).toBe("USD");
  });

  it("needs only transaction_id, and defaults status to approved", async () => {
    const tx = uniqueId("min");
    const network = await createNetwork();
    const answer = await expectStatus<Answer>(await postback(network, { transaction_id: tx }), 200);
    expect(answer).toMatchObject({ status: "accepted", conversion_status: "approved" });
    const row = await eventually(() => conversionInD1(network.id, tx));
    expect(row).toMatchObject({ status: "approved", amount: null, currency: null, platform: null, meta: null });
  });

  it("accepts a transaction_id of exactly 128 characters", async () => {
    const tx = `${uniqueId("long")}-`.padEnd(128, "x");
    expect(tx).toHaveLength(128);
    const row = await storedRow({ transaction_id: tx }, tx);
    expect(row.transaction_id).toBe(tx);
  });

  it("accepts meta with exactly 32 scalar keys", async () => {
    const tx = uniqueId("meta");
    const meta = { ...metaWithKeys(29), n: 1.5, yes: true, text: "ünïcode" };
    expect(Object.keys(meta)).toHaveLength(32);
    const row = await storedRow(makePostback({ transaction_id: tx, meta }), tx);
    expect(JSON.parse(String(row.meta))).toEqual(meta);
  });

  it("accepts an event_time a minute ahead of the hub's clock (sender clock skew)", async () => {
    const tx = uniqueId("skew");
    const eventTime = new Date(Date.now() + 60_000).toISOString();
    const row = await storedRow(makePostback({ transaction_id: tx, event_time: eventTime }), tx);
    expect(row.event_time).toBe(eventTime);
  });

  it("normalises an RFC 3339 event_time with an offset to UTC", async () => {
    const tx = uniqueId("offset");
    const row = await storedRow(makePostback({ transaction_id: tx, event_time: "2026-01-02T03:04:05+02:00" }), tx);
    expect(row.event_time).toBe("2026-01-02T01:04:05.000Z");
  });

  it("accepts non-ASCII text and stores it unchanged", async () => {
    const tx = uniqueId("utf8");
    const row = await storedRow(makePostback({ transaction_id: tx, campaign_id: "été-東京-🎉" }), tx);
    expect(row.campaign_id).toBe("été-東京-🎉");
  });
});
