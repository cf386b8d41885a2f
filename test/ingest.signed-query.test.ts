/**
 * Signed query strings: the canonical form on tricky inputs, verification at its edges, and the
 * published vectors of docs/signed-query.md (which independent Node.js and Python senders reproduce).
 */
import { describe, expect, it } from "vitest";
import {
  canonicalQuery,
  percentEncode,
  type QueryPairs,
  SIGNED_QUERY_PARAMS,
  type SignedQueryResult,
  signedQueryContent,
  signQuery,
  verifySignedQuery,
} from "../src/ingest/signed-query";
import { importSigningKey } from "../src/lib/standard-webhooks";
import fixture from "./fixtures/signed-query-vectors.json";
import { sha256Hex } from "./support/helpers";

const NOW = 1_767_225_600;
const SECRET = "whsec_V+RuZ2l25nsp2UAheCv2DNmnWN9XoPJOuFstnpxmv6o=";
const OTHER_SECRET = "whsec_SNpKkKXDngGyGWvDQlBofzPd5bMWxCl0JwlgwDUgrFE=";
const THIRD_SECRET = "whsec_gMtkE30A/jW5I2pilXxFgEmclpgZuXnnF/8GXuVbnm4=";
const POSTBACK: QueryPairs = [
  ["clickid", "abc 123"],
  ["payout", "12.50"],
  ["status", "1"],
];

interface SignOptions {
  secret?: string;
  id?: string;
  timestamp?: string;
  /** Replaces pb_sig; receives the valid signature. */
  signature?: (valid: string) => string;
}

type Pair = readonly [string, string];

/** The request's pairs as a sender would send them: the parameters plus pb_id, pb_ts and pb_sig. */
async function signedPairs(params: QueryPairs = POSTBACK, options: SignOptions = {}): Promise<Pair[]> {
  const { secret = SECRET, id = "evt_1", timestamp = String(NOW), signature = (valid) => valid } = options;
  const unsigned: Pair[] = [...params, ["pb_id", id], ["pb_ts", timestamp]];
  const valid = await signQuery(await importSigningKey(secret), id, timestamp, unsigned);
  return [...unsigned, ["pb_sig", signature(valid)]];
}

async function verifyWith(pairs: QueryPairs, nowSeconds = NOW, secrets = [SECRET], tolerance?: number) {
  const keys = await Promise.all(secrets.map(importSigningKey));
  return verifySignedQuery(pairs, keys, nowSeconds, tolerance);
}

function expectFailure(result: SignedQueryResult, location: string, messagePattern: RegExp) {
  expect(result.ok, JSON.stringify(result)).toBe(false);
  if (result.ok) throw new Error("unreachable");
  expect(result.location).toBe(location);
  expect(result.message).toMatch(messagePattern);
  return result;
}

function replaceValue(pairs: QueryPairs, name: string, value: string): [string, string][] {
  return pairs.map(([n, v]) => [n, n === name ? value : v]);
}

describe("signed query: canonical form", () => {
  it.each([
    ["a space as %20, never +, and + as %2B", [["q", "a b+c"]], "q=a%20b%2Bc"],
    [
      "% & = inside values",
      [
        ["pct", "100%"],
        ["pair", "a&b=c"],
      ],
      "pair=a%26b%3Dc&pct=100%25",
    ],
    ["é and an emoji as UTF-8 bytes, uppercase hex", [["note", "café 🎉"]], "note=caf%C3%A9%20%F0%9F%8E%89"],
    [
      "an empty value as name=",
      [
        ["empty", ""],
        ["x", "1"],
      ],
      "empty=&x=1",
    ],
    [
      "unreserved characters literal, ~ included, * ' ! ( ) encoded",
      [["s", "AZaz09-._~*'!()"]],
      "s=AZaz09-._~%2A%27%21%28%29",
    ],
    [
      "names needing encoding",
      [
        ["sub[1]", "q"],
        ["a b", "c"],
      ],
      "a%20b=c&sub%5B1%5D=q",
    ],
    [
      "repeated names, all kept, sorted by value",
      [
        ["sub", "b"],
        ["sub", "a"],
        ["x", "1"],
        ["sub", "a"],
      ],
      "sub=a&sub=a&sub=b&x=1",
    ],
    ["no parameters", [], ""],
  ] satisfies [string, QueryPairs, string][])("encodes %s", (_, pairs, canonical) => {
    expect(canonicalQuery(pairs)).toBe(canonical);
  });

  it("keeps exactly A-Z a-z 0-9 - . _ ~ literal among all ASCII characters", () => {
    for (let code = 0; code < 128; code++) {
      const char = String.fromCharCode(code);
      const expected = /[A-Za-z0-9._~-]/.test(char) ? char : `%${code.toString(16).toUpperCase().padStart(2, "0")}`;
      expect(percentEncode(char), `code ${code}`).toBe(expected);
    }
  });

  it("encodes a lone surrogate, which has no UTF-8 form, as U+FFFD instead of throwing", () => {
    expect(percentEncode("a\uD800b")).toBe("a%EF%BF%BDb");
  });

  it("gives the same form whatever the order of the pairs", () => {
    const pairs: QueryPairs = [
      ["sub", "b"],
      ["clickid", "x y"],
      ["sub", "a"],
      ["empty", ""],
      ["sub", "a"],
    ];
    const expected = "clickid=x%20y&empty=&sub=a&sub=a&sub=b";
    expect(canonicalQuery(pairs)).toBe(expected);
    expect(canonicalQuery([...pairs].reverse())).toBe(expected);
    expect(canonicalQuery([...pairs.slice(2), ...pairs.slice(0, 2)])).toBe(expected);
  });

  it("sorts by the encoded name (byte order), not the decoded one", () => {
    const names = ["a~", "a_", "aB", "a.", "a-", "a%", "a b", "a1", "é", "Z"];
    const canonical = canonicalQuery(names.map((name) => [name, "v"]));
    expect(canonical).toBe("%C3%A9=v&Z=v&a%20b=v&a%25=v&a-=v&a.=v&a1=v&aB=v&a_=v&a~=v");
  });

  it("sorts by the name first, then the encoded value, not by the joined pair", () => {
    // Joined, "a-=1" would sort before "a=2" ("-" < "=").
    expect(
      canonicalQuery([
        ["a-", "1"],
        ["a", "2"],
      ]),
    ).toBe("a=2&a-=1");
    expect(
      canonicalQuery([
        ["k", "b"],
        ["k", "B"],
        ["k", "é"],
        ["k", " "],
      ]),
    ).toBe("k=%20&k=%C3%A9&k=B&k=b");
  });

  it("leaves pb_sig out and keeps the other pb_ parameters", () => {
    const pairs: QueryPairs = [
      ["x", "1"],
      ["pb_sig", "v1,abc"],
      ["pb_id", "e"],
      ["pb_ts", "5"],
    ];
    expect(canonicalQuery(pairs)).toBe("pb_id=e&pb_ts=5&x=1");
  });

  it("signs <pb_id>.<pb_ts>.<canonical>, with pb_id and pb_ts in the canonical query once", () => {
    const expected = "evt 1.1767225600.pb_id=evt%201&pb_ts=1767225600&x=1";
    expect(signedQueryContent("evt 1", "1767225600", [["x", "1"]])).toBe(expected);
    const received: QueryPairs = [
      ["pb_sig", "v1,x"],
      ["x", "1"],
      ["pb_ts", "1767225600"],
      ["pb_id", "evt 1"],
    ];
    expect(signedQueryContent("evt 1", "1767225600", received)).toBe(expected);
  });

  it("names its three parameters", () => {
    expect(SIGNED_QUERY_PARAMS).toEqual(["pb_id", "pb_ts", "pb_sig"]);
  });
});

describe("signed query: verification", () => {
  it("verifies what signQuery signed, and returns the canonical query without pb_sig", async () => {
    const result = await verifyWith(await signedPairs());
    expect(result).toEqual({
      ok: true,
      keyIndex: 0,
      canonical: "clickid=abc%20123&payout=12.50&pb_id=evt_1&pb_ts=1767225600&status=1",
    });
  });

  it("verifies the parameters in any order, pb_sig anywhere", async () => {
    const pairs = await signedPairs();
    expect((await verifyWith([...pairs].reverse())).ok).toBe(true);
  });

  it("verifies tricky values end to end", async () => {
    const params: QueryPairs = [
      ["sub", "b"],
      ["note", "café 🎉 +%&="],
      ["sub", "a"],
      ["empty", ""],
      ["sub[1]", "*'!()~"],
    ];
    expect((await verifyWith(await signedPairs(params))).ok).toBe(true);
  });

  it.each([
    ["299 s old", NOW + 299, true],
    ["300 s old", NOW + 300, true],
    ["301 s old", NOW + 301, false],
    ["299 s in the future", NOW - 299, true],
    ["300 s in the future", NOW - 300, true],
    ["301 s in the future", NOW - 301, false],
  ])("with pb_ts %s: ok is %s", async (_, now, ok) => {
    const result = await verifyWith(await signedPairs(), now);
    expect(result.ok, JSON.stringify(result)).toBe(ok);
  });

  it("names the skew and the tolerance when pb_ts is out of range, either way", async () => {
    const pairs = await signedPairs();
    expectFailure(await verifyWith(pairs, NOW + 301), "query.pb_ts", /301 s old; the tolerance is 300 s/);
    expectFailure(await verifyWith(pairs, NOW - 301), "query.pb_ts", /301 s in the future; the tolerance is 300 s/);
    expectFailure(await verifyWith(pairs, NOW + 61, [SECRET], 60), "query.pb_ts", /61 s old; the tolerance is 60 s/);
  });

  it.each(["1767225600.5", "-5", "1e9", "abc", " 1767225600", "1234567890123"])(
    "refuses pb_ts %j: not integer Unix seconds",
    async (timestamp) => {
      expectFailure(
        await verifyWith(await signedPairs(POSTBACK, { timestamp })),
        "query.pb_ts",
        /integer Unix seconds/,
      );
    },
  );

  it.each(["pb_id", "pb_ts", "pb_sig"])("names a missing or empty %s", async (name) => {
    const pairs = await signedPairs();
    expectFailure(await verifyWith(pairs.filter(([n]) => n !== name)), `query.${name}`, /missing/);
    expectFailure(await verifyWith(replaceValue(pairs, name, "")), `query.${name}`, /missing or empty/);
  });

  it.each(["pb_id", "pb_ts", "pb_sig"])(
    "refuses a repeated %s, which would leave open which was meant",
    async (name) => {
      const pairs = await signedPairs();
      const repeated = pairs.find(([n]) => n === name);
      if (!repeated) throw new Error(`no ${name}`);
      expectFailure(await verifyWith([...pairs, repeated]), `query.${name}`, /appears 2 times/);
    },
  );

  it("accepts a pb_id of 128 characters and refuses 129", async () => {
    expect((await verifyWith(await signedPairs(POSTBACK, { id: "i".repeat(128) }))).ok).toBe(true);
    const tooLong = await verifyWith(await signedPairs(POSTBACK, { id: "i".repeat(129) }));
    expectFailure(tooLong, "query.pb_id", /at most 128 characters/);
  });

  it("accepts several signatures when one is valid", async () => {
    const otherKey = await importSigningKey(OTHER_SECRET);
    const other = await signQuery(otherKey, "evt_1", String(NOW), [
      ...POSTBACK,
      ["pb_id", "evt_1"],
      ["pb_ts", String(NOW)],
    ]);
    const pairs = await signedPairs(POSTBACK, { signature: (valid) => `${other} v1,bm90IGEgc2lnbmF0dXJl ${valid}` });
    expect(await verifyWith(pairs)).toMatchObject({ ok: true, keyIndex: 0 });
  });

  it("verifies against every active key during a rotation, and says which one matched", async () => {
    const pairs = await signedPairs(POSTBACK, { secret: SECRET });
    expect(await verifyWith(pairs, NOW, [THIRD_SECRET, SECRET])).toMatchObject({ ok: true, keyIndex: 1 });
  });

  it("ignores entries of other versions", async () => {
    const v2Only = await signedPairs(POSTBACK, { signature: (valid) => valid.replace("v1,", "v2,") });
    expectFailure(await verifyWith(v2Only), "query.pb_sig", /holds no v1 signature/);
    const mixed = await signedPairs(POSTBACK, { signature: (valid) => `${valid.replace("v1,", "v2,")} ${valid}` });
    expect((await verifyWith(mixed)).ok).toBe(true);
  });

  it("checks at most 8 signatures", async () => {
    const wrong = `v1,${btoa("x".repeat(32))}`;
    const ninth = await signedPairs(POSTBACK, { signature: (valid) => `${`${wrong} `.repeat(8)}${valid}` });
    expectFailure(await verifyWith(ninth), "query.pb_sig", /no v1 signature matches/);
    const eighth = await signedPairs(POSTBACK, { signature: (valid) => `${`${wrong} `.repeat(7)}${valid}` });
    expect((await verifyWith(eighth)).ok).toBe(true);
  });

  it("refuses a signature made with another key", async () => {
    const pairs = await signedPairs(POSTBACK, { secret: OTHER_SECRET });
    expectFailure(await verifyWith(pairs), "query.pb_sig", /no v1 signature matches an active secret/);
  });

  it("refuses a tampered value, an added parameter, a removed parameter, a changed pb_id", async () => {
    const pairs = await signedPairs();
    const tampered = replaceValue(pairs, "payout", "1250.00");
    const added: QueryPairs = [...pairs, ["payout", "99"]];
    const removed = pairs.filter(([name]) => name !== "status");
    const otherId = replaceValue(pairs, "pb_id", "evt_2");
    for (const attempt of [tampered, added, removed, otherId]) {
      expectFailure(await verifyWith(attempt), "query.pb_sig", /no v1 signature matches/);
    }
  });

  it("hints at percent-encoding when a + in pb_sig arrived as a space", async () => {
    const pairs = await signedPairs(POSTBACK, { signature: () => "v1,mv BKnfUeU9tsDdAjRGXkwzXgXT4ct8Hez31DHbxhd0=" });
    expectFailure(await verifyWith(pairs), "query.pb_sig", /\+ is %2B/);
  });

  it("shows the sender what to sign on failure, but never the expected signature", async () => {
    const pairs = await signedPairs(POSTBACK, { secret: OTHER_SECRET });
    const expectedSignature = (await signedPairs()).find(([name]) => name === "pb_sig")?.[1] ?? "";
    const expectedMac = expectedSignature.slice("v1,".length);
    const content = "evt_1.1767225600.clickid=abc%20123&payout=12.50&pb_id=evt_1&pb_ts=1767225600&status=1";

    const failures = [
      await verifyWith(pairs),
      await verifyWith(pairs, NOW + 301),
      await verifyWith(pairs.filter(([name]) => name !== "pb_sig")),
      await verifyWith(replaceValue(pairs, "pb_sig", "v2,abc")),
    ];
    for (const failure of failures) {
      expect(failure).toMatchObject({ ok: false, signedContent: content });
      expect(JSON.stringify(failure)).not.toContain(expectedMac);
    }
  });

  it("has no content to show without pb_id or pb_ts", async () => {
    const pairs = await signedPairs();
    const noId = expectFailure(await verifyWith(pairs.filter(([n]) => n !== "pb_id")), "query.pb_id", /missing/);
    expect(noId.signedContent).toBeNull();
    const noTs = expectFailure(await verifyWith(pairs.filter(([n]) => n !== "pb_ts")), "query.pb_ts", /missing/);
    expect(noTs.signedContent).toBeNull();
  });

  it("refuses everything when the network has no active key", async () => {
    expectFailure(await verifyWith(await signedPairs(), NOW, []), "query.pb_sig", /no v1 signature matches/);
  });
});

describe("signed query: published vectors (docs/signed-query.md)", () => {
  /** A form body's fields are parameters; a JSON body is not (its pb_body_sha256 parameter covers it). */
  function pairsOf(url: string, body: string | null, contentType: string | null): [string, string][] {
    const form = contentType === "application/x-www-form-urlencoded" && body !== null;
    return [...new URL(url).searchParams, ...(form ? new URLSearchParams(body) : [])];
  }

  it("holds at least four vectors, one of them a POST", () => {
    expect(fixture.vectors.length).toBeGreaterThanOrEqual(4);
    expect(fixture.vectors.some((vector) => vector.method === "POST" && vector.body !== null)).toBe(true);
  });

  it.each(fixture.vectors)("$name: canonical form, signed content and signature", async (vector) => {
    const pairs = pairsOf(vector.url, vector.body, vector.content_type);
    expect(canonicalQuery(pairs)).toBe(vector.canonical);
    expect(signedQueryContent(vector.pb_id, vector.pb_ts, pairs)).toBe(vector.signed_content);
    expect(vector.signed_content).toBe(`${vector.pb_id}.${vector.pb_ts}.${vector.canonical}`);
    expect(await signQuery(await importSigningKey(vector.secret), vector.pb_id, vector.pb_ts, pairs)).toBe(
      vector.signature,
    );
  });

  it("holds a JSON POST whose body is covered by pb_body_sha256", async () => {
    const json = fixture.vectors.filter((vector) => vector.content_type === "application/json");
    expect(json.length).toBeGreaterThanOrEqual(1);
    for (const vector of json) {
      expect(new URL(vector.url).searchParams.get("pb_body_sha256")).toBe(await sha256Hex(vector.body ?? ""));
      expect(vector.signed_body).toBe(vector.body);
    }
  });

  it.each(fixture.vectors)("$name: the signed request verifies", async (vector) => {
    const pairs = pairsOf(vector.signed_url, vector.signed_body, vector.content_type);
    expect(pairs.filter(([name]) => name === "pb_sig")).toEqual([["pb_sig", vector.signature]]);
    const result = await verifyWith(pairs, Number(vector.pb_ts), [vector.secret]);
    expect(result).toEqual({ ok: true, keyIndex: 0, canonical: vector.canonical });
  });
});
