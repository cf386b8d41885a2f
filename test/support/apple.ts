/**
 * Apple-format postbacks for the tests: Apple's published examples (test/fixtures/skadnetwork.json,
 * signed by Apple), and postbacks signed here with the tests' own key (test/fixtures/apple-test-key.json,
 * trusted by vitest.config.ts through APPLE_POSTBACK_KEYS), built apart from the hub's own code: the
 * signed string from Apple's order as the fixture writes it, the DER signature by hand.
 */
import { exports } from "cloudflare:workers";
import testKey from "../fixtures/apple-test-key.json";
import fixture from "../fixtures/skadnetwork.json";
import { BASE } from "./helpers";

export type Raw = Record<string, unknown>;

export const b64url = (bytes: Uint8Array) => bytes.toBase64({ alphabet: "base64url", omitPadding: true });
export const json64 = (value: unknown) => b64url(new TextEncoder().encode(JSON.stringify(value)));

export const APPLE_EXAMPLES = fixture.valid as { name: string; postback: Raw }[];

export function appleExample(name: string): Raw {
  const found = APPLE_EXAMPLES.find((example) => example.name === name);
  if (!found) throw new Error(`no Apple example "${name}"`);
  return structuredClone(found.postback);
}

/** Apple's AdAttributionKit example stanza ("Identifying the parameters in a postback"), signed by Apple's development key. */
export const AAK_EXAMPLE = {
  "jws-string":
    "eyJraWQiOiJhcHBsZS1kZXZlbG9wbWVudC1pZGVudGlmaWVyXC8xIiwiYWxnIjoiRVMyNTYifQ.eyJwb3N0YmFjay1pZGVudGlmaWVyIjoiODU1NDZFQjctRkQzOS00NEJDLTg5OTAtQzk4QTRBQzM2QTQ5IiwicHVibGlzaGVyLWl0ZW0taWRlbnRpZmllciI6MCwibWFya2V0cGxhY2UtaWRlbnRpZmllciI6ImNvbS5hcHBsZS5BcHBTdG9yZSIsImltcHJlc3Npb24tdHlwZSI6ImFwcC1pbXByZXNzaW9uIiwiYWQtbmV0d29yay1pZGVudGlmaWVyIjoiZGV2ZWxvcG1lbnQuYWRhdHRyaWJ1dGlvbmtpdCIsImRpZC13aW4iOnRydWUsInBvc3RiYWNrLXNlcXVlbmNlLWluZGV4IjowLCJjb252ZXJzaW9uLXR5cGUiOiJyZS1lbmdhZ2VtZW50Iiwic291cmNlLWlkZW50aWZpZXIiOiIxMjM0IiwiYWR2ZXJ0aXNlZC1pdGVtLWlkZW50aWZpZXIiOjEwNzM4MDI3NzU2fQ.bAdNwKd6OfHK9tofvjjua4X_JPcFTxXPQSspD9gZkinw97pY7R1aI-LSjl-oxZZF3_K2H5JK5TSEBee4_1U4oQ",
  "conversion-value": 24,
  "ad-interaction-type": "click",
  "country-code": "US",
};

export const TEST_KID = testKey.kid;

let signingKey: Promise<CryptoKey> | null = null;
function privateKey(): Promise<CryptoKey> {
  signingKey ??= crypto.subtle.importKey("jwk", testKey.private_jwk, { name: "ECDSA", namedCurve: "P-256" }, false, [
    "sign",
  ]);
  return signingKey;
}

async function sign(data: string): Promise<Uint8Array> {
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    await privateKey(),
    new TextEncoder().encode(data),
  );
  return new Uint8Array(signature);
}

/** r || s as DER: SEQUENCE { INTEGER r, INTEGER s }, each without leading zeros but one sign byte. */
function toDer(p1363: Uint8Array): Uint8Array {
  const integer = (bytes: Uint8Array) => {
    let start = 0;
    while (start < bytes.length - 1 && bytes[start] === 0) start++;
    const trimmed = bytes.subarray(start);
    const body = (trimmed[0] ?? 0) & 0x80 ? [0, ...trimmed] : [...trimmed];
    return [0x02, body.length, ...body];
  };
  const content = [...integer(p1363.subarray(0, 32)), ...integer(p1363.subarray(32))];
  return new Uint8Array([0x30, content.length, ...content]);
}

/** A 4.0 postback signed with the tests' key, over Apple's 4.0 order as the fixture writes it. */
export async function signedSkan4(fields: Raw): Promise<Raw> {
  const postback: Raw = {
    version: "4.0",
    "ad-network-id": "test.skadnetwork",
    "source-identifier": "5239",
    "app-id": 525463029,
    "transaction-id": crypto.randomUUID(),
    redownload: false,
    "source-app-id": 1234567891,
    "fidelity-type": 1,
    "did-win": true,
    "postback-sequence-index": 0,
    ...fields,
  };
  const order = (fixture.field_order as Record<string, string[]>)["4.0"] ?? [];
  const values = order.flatMap((label) => {
    const name = label.split("|").find((candidate) => postback[candidate] !== undefined);
    return name === undefined ? [] : [String(postback[name])];
  });
  const der = toDer(await sign(values.join("\u2063")));
  return { ...postback, "attribution-signature": der.toBase64() };
}

/** A postback of any P-256 version (2.1, 2.2, 3.0, 4.0) signed with the tests' key, over the fixture's order. */
export async function signedSkan(fields: Raw & { version: string }): Promise<Raw> {
  const order = (fixture.field_order as Record<string, string[]>)[fields.version] ?? [];
  const values = order.flatMap((label) => {
    const name = label
      .replace(" (when present)", "")
      .split("|")
      .find((candidate) => fields[candidate] !== undefined);
    return name === undefined ? [] : [String(fields[name])];
  });
  const der = toDer(await sign(values.join("\u2063")));
  return { ...fields, "attribution-signature": der.toBase64() };
}

/** An AdAttributionKit stanza whose JWS the tests' key signs (kid TEST_KID unless told). */
export async function signedAak(
  payload: Raw,
  siblings: Raw = {},
  header: Raw = { kid: TEST_KID, alg: "ES256" },
): Promise<Raw> {
  const input = `${json64(header)}.${json64({
    "postback-identifier": crypto.randomUUID().toUpperCase(),
    "ad-network-identifier": "test.adattributionkit",
    "source-identifier": "5239",
    "advertised-item-identifier": 525463029,
    "did-win": true,
    "postback-sequence-index": 0,
    "conversion-type": "download",
    ...payload,
  })}`;
  return { "jws-string": `${input}.${b64url(await sign(input))}`, ...siblings };
}

/** Posts a body as Apple's device does: JSON to one of the hub's Apple paths. */
export function postApple(path: string, body: unknown): Promise<Response> {
  return exports.default.fetch(
    new Request(`${BASE}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    }),
  );
}

export const SKAN_PATH = "/.well-known/skadnetwork/report-attribution/";
export const AAK_PATH = "/.well-known/appattribution/report-attribution/";
