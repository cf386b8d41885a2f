/**
 * Apple's install postbacks, verified in workerd: SKAdNetwork against Apple's published example
 * postbacks (test/fixtures/skadnetwork.json, which verify against Apple's own P-256 key), and
 * AdAttributionKit's compact JWS against ES256 keys made here.
 */
import { describe, expect, it, vi } from "vitest";
import page from "../docs/apple-postbacks.md?raw";
import {
  APPLE_SKADNETWORK_KEYS,
  SIGNED_FIELD_SEPARATOR,
  SIGNED_FIELDS,
  type SignedSlot,
  type SkadnetworkPostback,
  SkadnetworkPostbackSchema,
} from "../src/domain/skadnetwork";
import { verifyAdAttributionKit } from "../src/ingest/adattributionkit";
import { derToP1363, P192_REASON, signedString, verifySkadnetwork } from "../src/ingest/skadnetwork";
import fixture from "./fixtures/skadnetwork.json";

type Raw = Record<string, unknown>;

function parse(raw: Raw): SkadnetworkPostback {
  const result = SkadnetworkPostbackSchema.safeParse(raw);
  if (!result.success) throw new Error(`not a postback: ${JSON.stringify(result.error.issues)}`);
  return result.data;
}

/** The vectors file's order labels, read on their own terms (not through src/domain's declaration). */
function fieldsFromLabels(labels: readonly string[], raw: Raw): string[] {
  const values: string[] = [];
  for (const label of labels) {
    const optional = label.endsWith(" (when present)");
    const names = label.replace(" (when present)", "").split("|");
    const present = names.find((name) => raw[name] !== undefined);
    if (present === undefined) {
      if (optional || names.length > 1) continue;
      throw new Error(`${label} missing`);
    }
    values.push(String(raw[present]));
  }
  return values;
}

function label(slot: SignedSlot): string {
  if ("oneOf" in slot) return slot.oneOf.join("|");
  return slot.whenPresent ? `${slot.field} (when present)` : slot.field;
}

const orders = fixture.field_order as Record<string, string[]>;
const valid = fixture.valid as { name: string; postback: Raw; signed_string_fields?: string[] }[];
const v30Winning = valid.find((v) => v.name === "v3.0 winning")?.postback as Raw;
const v40Fine = valid.find((v) => v.name === "v4.0 web ad, fine value")?.postback as Raw;

describe("SKAdNetwork: Apple's example postbacks", () => {
  it.each(valid.map((v) => [v.name, v] as const))("%s verifies with Apple's key", async (_, vector) => {
    const postback = parse(vector.postback);
    const verdict = await verifySkadnetwork(postback);
    expect(verdict).toEqual({ ok: true, signed: signedString(postback), key: 0 });
    const order = orders[postback.version] ?? [];
    expect(signedString(postback)).toBe(fieldsFromLabels(order, vector.postback).join(SIGNED_FIELD_SEPARATOR));
    if (vector.signed_string_fields) {
      expect(signedString(postback)).toBe(vector.signed_string_fields.join("\u2063"));
    }
  });

  it("signs booleans as true/false and numbers as decimal text", () => {
    const signed = signedString(parse(v30Winning)).split("\u2063");
    expect(signed).toEqual([
      "3.0",
      "example123.skadnetwork",
      "42",
      "525463029",
      v30Winning["transaction-id"],
      "true",
      "1234567891",
      "1",
      "true",
    ]);
  });
});

/** A value changed the smallest way that keeps its type (and the schema's shape). */
function tampered(value: unknown): unknown {
  if (typeof value === "boolean") return !value;
  if (typeof value === "number") return value === 0 ? 1 : value - 1;
  if (typeof value === "string") {
    const last = value.at(-1) ?? "";
    const swapped = /\d/.test(last) ? String((Number(last) + 1) % 10) : last === "a" ? "b" : "a";
    return value.slice(0, -1) + swapped;
  }
  throw new Error(`cannot tamper with ${String(value)}`);
}

describe("SKAdNetwork: tampering", () => {
  const cases = valid.flatMap((vector) =>
    (SIGNED_FIELDS[parse(vector.postback).version] ?? [])
      .flatMap((slot) => ("oneOf" in slot ? slot.oneOf : [slot.field]))
      .filter((field) => field !== "version" && vector.postback[field] !== undefined)
      .map((field) => [vector.name, field, vector.postback] as const),
  );

  it.each(cases)("%s: changing %s fails", async (_, field, raw) => {
    const postback = parse({ ...raw, [field]: tampered(raw[field]) });
    const verdict = await verifySkadnetwork(postback);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.reason).toMatch(/does not verify against Apple's P-256 key/);
      expect(verdict.signed).toBe(signedString(postback));
    }
  });

  it("did-win flipped, transaction-id changed, source-identifier changed: each fails", async () => {
    for (const [raw, field, value] of [
      [v30Winning, "did-win", false],
      [v30Winning, "transaction-id", "6aafb7a5-0170-41b5-bbe4-fe71dedf1e29"],
      [v40Fine, "did-win", false],
      [v40Fine, "source-identifier", "5238"],
      [v40Fine, "source-domain", "example.org"],
    ] as const) {
      expect((await verifySkadnetwork(parse({ ...raw, [field]: value }))).ok, field).toBe(false);
    }
  });

  it("dropping a signed optional field (source-app-id) or moving it to source-domain fails", async () => {
    const { "source-app-id": _, ...withoutSource } = v30Winning;
    expect((await verifySkadnetwork(parse(withoutSource))).ok).toBe(false);
    const { "source-domain": domain, ...appAd } = v40Fine;
    expect((await verifySkadnetwork(parse({ ...appAd, "source-app-id": 1234567891 }))).ok).toBe(false);
    expect(domain).toBe("example.com");
  });

  it("changing the unsigned conversion values still verifies", async () => {
    expect((await verifySkadnetwork(parse({ ...v30Winning, "conversion-value": 63 }))).ok).toBe(true);
    const { "conversion-value": _, ...noValue } = v30Winning;
    expect((await verifySkadnetwork(parse(noValue))).ok).toBe(true);
    expect((await verifySkadnetwork(parse({ ...v40Fine, "conversion-value": 0 }))).ok).toBe(true);
    const coarse = valid.find((v) => v.name === "v4.0 web ad, coarse value")?.postback as Raw;
    expect((await verifySkadnetwork(parse({ ...coarse, "coarse-conversion-value": "low" }))).ok).toBe(true);
  });
});

describe("SKAdNetwork: what the hub refuses", () => {
  const v1 = {
    "ad-network-id": "com.example",
    "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28",
    "campaign-id": 42,
    "app-id": 1229670720,
    "attribution-signature": "MDYCGQCsQ4y8d4BlYU9b8Qb9BPWPi+ixk/OiRysCGQDZZ8fpJnuqs9my8iSQVbJO/oU1AXUROYU=",
  };

  it("1.0 (no version field) and 2.0 are refused as P-192, never accepted unverified", async () => {
    const v20 = { ...v1, version: "2.0", redownload: false, "source-app-id": 1234567891, "conversion-value": 20 };
    for (const raw of [v1, v20]) {
      const verdict = await verifySkadnetwork(parse(raw));
      expect(verdict.ok).toBe(false);
      if (!verdict.ok) {
        expect(verdict.reason).toBe(P192_REASON);
        expect(verdict.reason).toMatch(
          /^SKAdNetwork 1\.0 and 2\.0 are signed with P-192, which the hub cannot verify; /,
        );
      }
    }
    expect(parse(v1).version).toBe("1.0");
    expect(signedString(parse(v1))).toBe(["com.example", "42", "1229670720", v1["transaction-id"]].join("\u2063"));
  });

  it.each([
    ["not base64", "not base64!", /not standard padded base64/],
    ["unpadded base64", "MEUCIQ", /not standard padded base64/],
    ["base64 of no DER", btoa("hello, this is not DER at all"), /not a DER-encoded ECDSA P-256 signature/],
    [
      "DER with a trailing byte",
      `${String(v30Winning["attribution-signature"]).replace(/=*$/, "")}AA==`,
      /not a DER-encoded/,
    ],
    ["another postback's signature", v40Fine["attribution-signature"], /does not verify/],
  ])("a malformed signature (%s) fails cleanly", async (_, signature, reason) => {
    const postback = parse({ ...v30Winning, "attribution-signature": signature });
    const verdict = await verifySkadnetwork(postback);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok && reason) expect(verdict.reason).toMatch(reason);
  });

  it("imports a key once and keeps the CryptoKey for the next postbacks", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer).toBase64();
    const importKey = vi.spyOn(crypto.subtle, "importKey");
    try {
      for (let i = 0; i < 3; i++) await verifySkadnetwork(parse(v30Winning), { p256: [spki] });
      expect(importKey).toHaveBeenCalledTimes(1);
    } finally {
      importKey.mockRestore();
    }
  });

  it("a bad key fails cleanly too", async () => {
    for (const p256 of ["not base64!", btoa("not a key")]) {
      const verdict = await verifySkadnetwork(parse(v30Winning), { p256: [p256] });
      expect(verdict.ok).toBe(false);
    }
  });

  it("the schema refuses a separator inside a text field and a 4.0 postback with both sources", () => {
    expect(SkadnetworkPostbackSchema.safeParse({ ...v30Winning, "ad-network-id": "a\u2063b" }).success).toBe(false);
    expect(SkadnetworkPostbackSchema.safeParse({ ...v40Fine, "source-app-id": 1 }).success).toBe(false);
    expect(SkadnetworkPostbackSchema.safeParse({ ...v40Fine, "source-identifier": "12345" }).success).toBe(false);
    expect(SkadnetworkPostbackSchema.safeParse({ ...v30Winning, version: "9.9" }).success).toBe(false);
  });
});

describe("SKAdNetwork: the signed field order", () => {
  it("SIGNED_FIELDS matches the vectors file's field_order for every version it lists", () => {
    for (const [version, order] of Object.entries(orders)) {
      expect(SIGNED_FIELDS[version as SkadnetworkPostback["version"]]?.map(label), version).toEqual(order);
    }
    expect(SIGNED_FIELDS["2.0"]).toEqual(SIGNED_FIELDS["2.1"]);
  });

  /** A postback of the version with a distinct value in every field it can carry. */
  function synthetic(version: string, source: "source-app-id" | "source-domain" | null): Raw {
    const raw: Raw = {
      version,
      "ad-network-id": "net.example",
      "campaign-id": 42,
      "source-identifier": "4321",
      "app-id": 111,
      "transaction-id": "tx-1",
      redownload: false,
      "fidelity-type": 0,
      "did-win": true,
      "postback-sequence-index": 2,
      "conversion-value": 63,
      "attribution-signature": "MEUCIQ==",
    };
    if (source === "source-app-id") raw["source-app-id"] = 222;
    if (source === "source-domain") raw["source-domain"] = "example.com";
    if (version === "1.0") delete raw.version;
    return raw;
  }

  const cases = Object.keys(orders).flatMap((version) =>
    (version === "1.0"
      ? [null]
      : version === "4.0"
        ? ["source-app-id", "source-domain", null]
        : ["source-app-id", null]
    ).map((source) => [version, source ?? "no source"] as const),
  );

  it.each(cases)("%s with %s signs the fields in the vectors file's order", (version, source) => {
    const raw = synthetic(version, source === "no source" ? null : (source as "source-app-id" | "source-domain"));
    const postback = parse(raw);
    expect(signedString(postback).split("\u2063")).toEqual(fieldsFromLabels(orders[version] ?? [], raw));
    expect(signedString(postback)).not.toContain("63"); // conversion-value is never signed
  });
});

describe("DER to IEEE P1363", () => {
  const int = (bytes: number[]) => [0x02, bytes.length, ...bytes];
  const der = (r: number[], s: number[]) => {
    const body = [...int(r), ...int(s)];
    return new Uint8Array([0x30, body.length, ...body]);
  };
  const full = (byte: number) => Array.from({ length: 32 }, () => byte);

  it("drops DER's sign byte and pads short integers", () => {
    const out = derToP1363(der([0x00, ...full(0x80)], [0x01]));
    expect(out && [...out]).toEqual([...full(0x80), ...Array(31).fill(0), 0x01]);
    const padded = derToP1363(der([0x00, 0x00, 0x05], full(0x7f)));
    expect(padded && [...padded]).toEqual([...Array(31).fill(0), 0x05, ...full(0x7f)]);
  });

  it("refuses what is no P-256 signature", () => {
    expect(derToP1363(der([0x80], [0x01]))).toBeNull(); // negative
    expect(derToP1363(der([0x01, ...full(0x01)], [0x01]))).toBeNull(); // 33 bytes of value
    expect(derToP1363(der([], [0x01]))).toBeNull(); // empty integer
    expect(derToP1363(new Uint8Array([...der([1], [1]), 0]))).toBeNull(); // trailing byte
    expect(derToP1363(new Uint8Array([0x30, 0x81, 0x06, ...int([1]), ...int([1])]))).toBeNull(); // long form
    expect(derToP1363(new Uint8Array([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x05, 0x01]))).toBeNull(); // overrun
    expect(derToP1363(new Uint8Array([]))).toBeNull();
  });

  it("round-trips signatures made by Web Crypto, verified through verifySkadnetwork with a test key", async () => {
    const pair = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const spki = new Uint8Array((await crypto.subtle.exportKey("spki", pair.publicKey)) as ArrayBuffer).toBase64();
    for (let i = 0; i < 8; i++) {
      const raw = { ...v30Winning, "transaction-id": `tx-${i}` };
      const postback = parse(raw);
      const p1363 = new Uint8Array(
        await crypto.subtle.sign(
          { name: "ECDSA", hash: "SHA-256" },
          pair.privateKey,
          new TextEncoder().encode(signedString(postback)),
        ),
      );
      const derInteger = (half: Uint8Array) => {
        let start = 0;
        while (start < half.length - 1 && half[start] === 0) start++;
        const value = [...half.subarray(start)];
        return (value[0] ?? 0) & 0x80 ? [0, ...value] : value;
      };
      const encoded = der(derInteger(p1363.subarray(0, 32)), derInteger(p1363.subarray(32)));
      expect([...(derToP1363(encoded) ?? [])]).toEqual([...p1363]);
      const signed = parse({ ...raw, "attribution-signature": encoded.toBase64() });
      expect((await verifySkadnetwork(signed, { p256: [spki] })).ok).toBe(true);
      expect((await verifySkadnetwork(signed)).ok).toBe(false); // not Apple's key
      // Keys are tried in order, and the verdict names the one that verified.
      expect(await verifySkadnetwork(signed, { p256: [APPLE_SKADNETWORK_KEYS.p256, spki] })).toMatchObject({
        ok: true,
        key: 1,
      });
    }
  });
});

const b64url = (bytes: Uint8Array) => bytes.toBase64({ alphabet: "base64url", omitPadding: true });
const json64 = (value: unknown) => b64url(new TextEncoder().encode(JSON.stringify(value)));

async function es256Pair(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, [
    "sign",
    "verify",
  ])) as CryptoKeyPair;
}

async function signJws(header: Raw, payload: Raw, key: CryptoKey): Promise<string> {
  const input = `${json64(header)}.${json64(payload)}`;
  const signature = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, new TextEncoder().encode(input));
  return `${input}.${b64url(new Uint8Array(signature))}`;
}

describe("AdAttributionKit: compact JWS, ES256, trusted by kid", () => {
  const payload = {
    "jws-version": "1.0",
    "ad-network-id": "com.example",
    "source-identifier": "5239",
    "app-id": 525463029,
    "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e30",
    "did-win": true,
    "postback-sequence-index": 0,
  };

  it("verifies a JWS signed by a trusted key, given as a CryptoKey or as a JWK, and returns its payload", async () => {
    const pair = await es256Pair();
    const jws = await signJws({ alg: "ES256", kid: "apple-1" }, payload, pair.privateKey);
    const verdict = await verifyAdAttributionKit(jws, { "apple-1": pair.publicKey });
    expect(verdict).toEqual({ ok: true, kid: "apple-1", header: { alg: "ES256", kid: "apple-1" }, payload });
    const jwk = (await crypto.subtle.exportKey("jwk", pair.publicKey)) as JsonWebKey;
    expect(await verifyAdAttributionKit(jws, { "apple-1": jwk })).toMatchObject({ ok: true, payload });
  });

  it("refuses an untrusted kid, alg none or HS256, a tampered payload, another key's signature", async () => {
    const pair = await es256Pair();
    const other = await es256Pair();
    const trusted = { "apple-1": pair.publicKey };
    const good = await signJws({ alg: "ES256", kid: "apple-1" }, payload, pair.privateKey);
    const [header = "", , signature = ""] = good.split(".");

    const jwkText = JSON.stringify(await crypto.subtle.exportKey("jwk", pair.publicKey));
    const hmac = await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(jwkText),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    const hsInput = `${json64({ alg: "HS256", kid: "apple-1" })}.${json64(payload)}`;
    const hs256 = `${hsInput}.${b64url(new Uint8Array(await crypto.subtle.sign("HMAC", hmac, new TextEncoder().encode(hsInput))))}`;

    const cases: [string, string, RegExp][] = [
      ["wrong kid", await signJws({ alg: "ES256", kid: "apple-2" }, payload, pair.privateKey), /not a trusted key/],
      [
        "inherited kid",
        await signJws({ alg: "ES256", kid: "toString" }, payload, pair.privateKey),
        /not a trusted key/,
      ],
      ["no kid", await signJws({ alg: "ES256" }, payload, pair.privateKey), /no kid/],
      ["alg none", `${json64({ alg: "none", kid: "apple-1" })}.${json64(payload)}.`, /alg must be ES256/],
      ["HS256", hs256, /alg must be ES256/],
      ["tampered payload", `${header}.${json64({ ...payload, "did-win": false })}.${signature}`, /does not verify/],
      ["another key", await signJws({ alg: "ES256", kid: "apple-1" }, payload, other.privateKey), /does not verify/],
      [
        "crit header",
        await signJws({ alg: "ES256", kid: "apple-1", crit: ["x"], x: 1 }, payload, pair.privateKey),
        /crit/,
      ],
      ["embedded jwk", await signJws({ alg: "ES256", kid: "apple-1", jwk: {} }, payload, pair.privateKey), /jwk/],
      ["four segments", `${good}.x`, /compact JWS/],
      ["bad base64url", `${header}.${json64(payload)}.${signature}=`, /64 bytes/],
      ["DER signature", `${header}.${json64(payload)}.${b64url(new Uint8Array(72))}`, /64 bytes/],
    ];
    for (const [name, jws, reason] of cases) {
      const verdict = await verifyAdAttributionKit(jws, trusted);
      expect(verdict.ok, name).toBe(false);
      if (!verdict.ok) expect(verdict.reason, name).toMatch(reason);
    }
  });

  it("refuses a trusted key that cannot verify ES256 (a private JWK, an HMAC key)", async () => {
    const pair = await es256Pair();
    const jws = await signJws({ alg: "ES256", kid: "k" }, payload, pair.privateKey);
    const privateJwk = (await crypto.subtle.exportKey("jwk", pair.privateKey)) as JsonWebKey;
    expect((await verifyAdAttributionKit(jws, { k: privateJwk })).ok).toBe(false);
    const hmac = await crypto.subtle.generateKey({ name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    expect((await verifyAdAttributionKit(jws, { k: hmac as CryptoKey })).ok).toBe(false);
  });
});

describe("docs/apple-postbacks.md", () => {
  it("shows the signed string and the P-192 refusal as the code makes them", () => {
    expect(page).toContain(`\`${signedString(parse(v30Winning))}\``);
    expect(page).toContain(P192_REASON.slice(0, P192_REASON.indexOf(";") + 1));
    expect(page).toContain("/.well-known/skadnetwork/report-attribution/");
  });
});
