/**
 * The Standard Webhooks verifier against the specification's published vectors, and against the
 * reference JavaScript library (`standardwebhooks`) as an independent signer.
 */
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { utf8 } from "../src/lib/bytes";
import {
  DEFAULT_TOLERANCE_SECONDS,
  importSigningKey,
  sign,
  type VerifyResult,
  verify,
  type WebhookHeaders,
} from "../src/lib/standard-webhooks";
import vectors from "./fixtures/standard-webhooks.json";

const [first, second] = vectors.valid;
if (!first || !second) throw new Error("the fixture must hold two valid vectors");
const FIRST = first;

function headersOf(vector: { id: string; timestamp: number; signature: string }): WebhookHeaders {
  return { id: vector.id, timestamp: String(vector.timestamp), signature: vector.signature };
}

async function verifyFirst(
  overrides: Partial<WebhookHeaders> = {},
  nowSeconds: number = FIRST.timestamp,
  toleranceSeconds?: number,
): Promise<VerifyResult> {
  return verify(
    { ...headersOf(FIRST), ...overrides },
    utf8(FIRST.payload),
    [await importSigningKey(FIRST.secret)],
    nowSeconds,
    toleranceSeconds,
  );
}

function expectFailure(result: VerifyResult, location: string, messagePattern: RegExp): void {
  expect(result.ok, JSON.stringify(result)).toBe(false);
  if (result.ok) return;
  expect(result.location).toBe(location);
  expect(result.message).toMatch(messagePattern);
}

/** The base64 MAC of the first vector's valid signature, under another version label. */
const FIRST_MAC = FIRST.signature.slice("v1,".length);

describe("standard webhooks: published vectors", () => {
  it.each(vectors.valid)("verifies the vector of $id with the clock at its timestamp", async (vector) => {
    const result = await verify(
      headersOf(vector),
      utf8(vector.payload),
      [await importSigningKey(vector.secret)],
      vector.timestamp,
    );
    expect(result).toEqual({ ok: true, keyIndex: 0 });
  });

  it.each(vectors.invalid_signatures_for_the_first_vector)("rejects the first vector signed %j", async (signature) => {
    expectFailure(await verifyFirst({ signature }), "header.webhook-signature", /webhook-signature|v1 signature/);
  });

  it("rejects a valid MAC labelled with an unknown version (v2)", async () => {
    expectFailure(await verifyFirst({ signature: `v2,${FIRST_MAC}` }), "header.webhook-signature", /v1/);
  });

  it("does not verify a vector's signature under another vector's secret", async () => {
    const result = await verify(
      headersOf(FIRST),
      utf8(FIRST.payload),
      [await importSigningKey(second.secret)],
      FIRST.timestamp,
    );
    expectFailure(result, "header.webhook-signature", /no v1 signature matches/);
  });
});

describe("standard webhooks: several signatures in one header", () => {
  it("verifies when the valid signature sits among invalid ones, space separated", async () => {
    const invalid = vectors.invalid_signatures_for_the_first_vector.filter((s) => s.startsWith("v1,") && s.length > 3);
    const signature = [...invalid.slice(0, 2), FIRST.signature, ...invalid.slice(2)].join(" ");
    expect(await verifyFirst({ signature })).toEqual({ ok: true, keyIndex: 0 });
  });

  it("verifies when the header also carries a v2 entry", async () => {
    const signature = `v2,${FIRST_MAC} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ${FIRST.signature}`;
    expect(await verifyFirst({ signature })).toEqual({ ok: true, keyIndex: 0 });
  });

  it("verifies when the valid signature comes last after a v2 entry", async () => {
    expect(await verifyFirst({ signature: `v2,abc ${FIRST.signature}` })).toEqual({ ok: true, keyIndex: 0 });
  });
});

describe("standard webhooks: timestamp tolerance", () => {
  it("rejects a timestamp 301 s old, naming the tolerance", async () => {
    expectFailure(
      await verifyFirst({}, FIRST.timestamp + 301),
      "header.webhook-timestamp",
      new RegExp(`301 s old.*tolerance is ${DEFAULT_TOLERANCE_SECONDS} s`),
    );
  });

  it("rejects a timestamp 301 s in the future, naming the tolerance", async () => {
    expectFailure(
      await verifyFirst({}, FIRST.timestamp - 301),
      "header.webhook-timestamp",
      new RegExp(`301 s in the future.*tolerance is ${DEFAULT_TOLERANCE_SECONDS} s`),
    );
  });

  it.each([299, -299, 300, -300])("accepts a timestamp %i s away from the clock", async (skew) => {
    expect(await verifyFirst({}, FIRST.timestamp + skew)).toEqual({ ok: true, keyIndex: 0 });
  });

  it("applies a custom tolerance and names it", async () => {
    expectFailure(await verifyFirst({}, FIRST.timestamp + 61, 60), "header.webhook-timestamp", /tolerance is 60 s/);
    expect(await verifyFirst({}, FIRST.timestamp + 59, 60)).toEqual({ ok: true, keyIndex: 0 });
  });

  it("checks the timestamp before the signature, so an expired message never reaches the HMAC", async () => {
    expectFailure(
      await verifyFirst({ signature: "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=" }, FIRST.timestamp + 10_000),
      "header.webhook-timestamp",
      /tolerance/,
    );
  });
});

describe("standard webhooks: missing and malformed headers", () => {
  it.each([
    ["webhook-id", { id: null }],
    ["webhook-timestamp", { timestamp: null }],
    ["webhook-signature", { signature: null }],
  ] as const)("fails naming header.%s when it is missing", async (name, overrides) => {
    expectFailure(await verifyFirst(overrides), `header.${name}`, new RegExp(`${name} header is missing`));
  });

  it.each([
    ["webhook-id", { id: "" }],
    ["webhook-timestamp", { timestamp: "" }],
    ["webhook-signature", { signature: "" }],
  ] as const)("fails naming header.%s when it is empty", async (name, overrides) => {
    expectFailure(await verifyFirst(overrides), `header.${name}`, new RegExp(name));
  });

  it.each(["abc", "1614265330.0", "-1614265330", "1614265330s", " 1614265330", "2021-02-25T15:02:10Z"])(
    "rejects the non-numeric timestamp %j",
    async (timestamp) => {
      expectFailure(
        await verifyFirst({ timestamp }),
        "header.webhook-timestamp",
        /webhook-timestamp must be integer Unix seconds/,
      );
    },
  );
});

describe("standard webhooks: secret rotation", () => {
  const body = utf8('{"transaction_id":"ord_1"}');
  const id = "msg_rotation";
  const timestamp = "1700000000";
  const now = 1_700_000_000;

  it("verifies a signature by either active key and says which key matched", async () => {
    const oldKey = await importSigningKey(FIRST.secret);
    const newKey = await importSigningKey(second.secret);
    const keys = [newKey, oldKey];
    const headers = (signature: string) => ({ id, timestamp, signature });

    expect(await verify(headers(await sign(newKey, id, timestamp, body)), body, keys, now)).toEqual({
      ok: true,
      keyIndex: 0,
    });
    expect(await verify(headers(await sign(oldKey, id, timestamp, body)), body, keys, now)).toEqual({
      ok: true,
      keyIndex: 1,
    });
  });

  it("rejects a signature by a key that is not active", async () => {
    const retired = await importSigningKey("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    const keys = [await importSigningKey(FIRST.secret), await importSigningKey(second.secret)];
    const signature = await sign(retired, id, timestamp, body);
    expectFailure(await verify({ id, timestamp, signature }, body, keys, now), "header.webhook-signature", /active/);
  });

  it("rejects everything when the network has no active key", async () => {
    const signature = await sign(await importSigningKey(FIRST.secret), id, timestamp, body);
    expectFailure(await verify({ id, timestamp, signature }, body, [], now), "header.webhook-signature", /active/);
  });
});

describe("standard webhooks: sign()", () => {
  it("reproduces the published signature of each vector", async () => {
    for (const vector of vectors.valid) {
      const key = await importSigningKey(vector.secret);
      expect(await sign(key, vector.id, String(vector.timestamp), utf8(vector.payload))).toBe(vector.signature);
    }
  });

  it("round-trips with verify()", async () => {
    const key = await importSigningKey(second.secret);
    const body = utf8('{"transaction_id":"ord_2","amount":"10.00","currency":"EUR"}');
    const signature = await sign(key, "msg_round_trip", "1764246896", body);
    expect(signature).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    const result = await verify({ id: "msg_round_trip", timestamp: "1764246896", signature }, body, [key], 1764246896);
    expect(result).toEqual({ ok: true, keyIndex: 0 });
  });

  it("agrees with the reference library on a vector and on a fresh message", async () => {
    const reference = new Webhook(FIRST.secret);
    expect(reference.sign(FIRST.id, new Date(FIRST.timestamp * 1000), FIRST.payload)).toBe(FIRST.signature);
    const payload = '{"transaction_id":"ord_3","status":"paid"}';
    const ours = await sign(await importSigningKey(FIRST.secret), "msg_3", "1764246896", utf8(payload));
    expect(ours).toBe(reference.sign("msg_3", new Date(1764246896 * 1000), payload));
  });
});

describe("standard webhooks: the signed content is the raw bytes", () => {
  const id = "msg_raw";
  const timestamp = "1764246896";
  const now = 1764246896;

  async function verifies(signedBody: Uint8Array, receivedBody: Uint8Array): Promise<VerifyResult> {
    const key = await importSigningKey(FIRST.secret);
    const signature = await sign(key, id, timestamp, signedBody);
    return verify({ id, timestamp, signature }, receivedBody, [key], now);
  }

  it("signs non-ASCII text as its UTF-8 bytes, like the reference library", async () => {
    const text = '{"transaction_id":"ord_ü","note":"naïve café, Zoë 🎉, 東京"}';
    const bytes = utf8(text);
    expect(bytes.length).toBeGreaterThan(text.length);
    expect(await verifies(bytes, bytes)).toEqual({ ok: true, keyIndex: 0 });
    const ours = await sign(await importSigningKey(FIRST.secret), id, timestamp, bytes);
    expect(ours).toBe(new Webhook(FIRST.secret).sign(id, new Date(now * 1000), text));
  });

  it("does not verify the same text in another encoding", async () => {
    const text = '{"note":"café"}';
    const latin1 = Uint8Array.from(text, (character) => character.charCodeAt(0));
    expectFailure(await verifies(utf8(text), latin1), "header.webhook-signature", /no v1 signature matches/);
  });

  it("does not verify a JSON-equal body with escaped characters", async () => {
    const escaped = utf8('{"note":"caf\\u00e9"}');
    const literal = utf8('{"note":"café"}');
    expect(JSON.parse(new TextDecoder().decode(escaped))).toEqual(JSON.parse(new TextDecoder().decode(literal)));
    expectFailure(await verifies(escaped, literal), "header.webhook-signature", /no v1 signature matches/);
  });

  it("verifies a body whose whitespace JSON.stringify would not reproduce, and only those bytes", async () => {
    const raw = '{ "transaction_id" : "ord_4",\n  "amount" : 29.90,\t"currency":"USD" }\n';
    const reserialised = JSON.stringify(JSON.parse(raw));
    expect(reserialised).not.toBe(raw);
    expect(await verifies(utf8(raw), utf8(raw))).toEqual({ ok: true, keyIndex: 0 });
    expectFailure(await verifies(utf8(raw), utf8(reserialised)), "header.webhook-signature", /no v1 signature matches/);
  });

  it("does not verify a body with one trailing byte more", async () => {
    expectFailure(
      await verifies(utf8('{"a":1}'), utf8('{"a":1}\n')),
      "header.webhook-signature",
      /no v1 signature matches/,
    );
  });
});
