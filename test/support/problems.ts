/**
 * Helpers for rejection tests: asserting an RFC 9457 problem response, sending byte-exact signed
 * bodies (a string body would get a default text/plain content type), and proving that a rejected
 * postback left nothing in storage.
 */
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { utf8 } from "../../src/lib/bytes";
import { importSigningKey, sign } from "../../src/lib/standard-webhooks";
import {
  BASE,
  conversionInD1,
  eventually,
  expectStatus,
  makePostback,
  postback,
  type TestNetwork,
  uniqueId,
} from "./helpers";

export interface FieldError {
  location: string;
  message: string;
}

export interface ProblemBody {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  request_id: string;
  errors: FieldError[];
}

/** Asserts status (showing the body on failure), the problem+json media type and the stable code. */
export async function expectProblem(response: Response, status: number, code: string): Promise<ProblemBody> {
  const contentType = response.headers.get("content-type");
  const requestId = response.headers.get("x-request-id");
  const problem = await expectStatus<ProblemBody>(response, status);
  expect(contentType, JSON.stringify(problem)).toMatch(/^application\/problem\+json(;|$)/);
  expect(problem).toMatchObject({ status, code });
  expect(problem.request_id, "request_id matches the x-request-id header").toBe(requestId);
  expect(typeof problem.detail).toBe("string");
  expect(Array.isArray(problem.errors), JSON.stringify(problem)).toBe(true);
  return problem;
}

export function locationsOf(problem: ProblemBody): string[] {
  return problem.errors.map((error) => error.location);
}

/** Asserts that `errors` names every one of `locations` (and shows the whole problem when not). */
export function expectLocations(problem: ProblemBody, locations: readonly string[]): void {
  expect(locationsOf(problem), JSON.stringify(problem)).toEqual(expect.arrayContaining([...locations]));
}

export interface RawSignOptions {
  id?: string;
  timestamp?: number;
  /** null sends no content-type header at all. */
  contentType?: string | null;
  headers?: Record<string, string>;
}

export async function signatureFor(secret: string, id: string, timestamp: string, body: Uint8Array): Promise<string> {
  return sign(await importSigningKey(secret), id, timestamp, body);
}

/** The headers of a correctly signed postback over exactly `body`. */
export async function signedHeaders(secret: string, body: Uint8Array, options: RawSignOptions = {}): Promise<Headers> {
  const id = options.id ?? uniqueId("msg");
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  const headers = new Headers({
    "webhook-id": id,
    "webhook-timestamp": timestamp,
    "webhook-signature": await signatureFor(secret, id, timestamp, body),
  });
  const contentType = options.contentType === undefined ? "application/json" : options.contentType;
  if (contentType !== null) headers.set("content-type", contentType);
  for (const [name, value] of Object.entries(options.headers ?? {})) headers.set(name, value);
  return headers;
}

/** Posts `body` byte for byte, signed with `secret`; no header is added that the options do not ask for. */
export async function postBytes(
  networkId: string,
  body: Uint8Array | string,
  secret: string,
  options: RawSignOptions = {},
): Promise<Response> {
  const bytes = typeof body === "string" ? utf8(body) : body;
  const headers = await signedHeaders(secret, bytes, options);
  return exports.default.fetch(
    new Request(`${BASE}/v1/postbacks/${networkId}`, { method: "POST", headers, body: bytes }),
  );
}

async function countFor(table: "conversions" | "conversion_events", networkId: string): Promise<number> {
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE network_id = ?`)
    .bind(networkId)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/**
 * Proves that rejected postbacks stored nothing. D1 is written asynchronously, so a valid control
 * postback is sent after them on the same network and awaited in D1 first: once it is there the
 * pipeline has flushed, and the network must hold the control's conversion and event only.
 */
export async function expectNothingStored(network: TestNetwork, rejectedTransactionIds: readonly string[] = []) {
  const control = makePostback();
  const transactionId = String(control.transaction_id);
  await expectStatus(await postback(network, control), 200);
  await eventually(() => conversionInD1(network.id, transactionId));
  for (const rejected of rejectedTransactionIds) {
    expect(await conversionInD1(network.id, rejected), `transaction ${rejected} was stored`).toBeNull();
  }
  expect(await countFor("conversions", network.id), "conversions rows besides the control").toBe(1);
  expect(await countFor("conversion_events", network.id), "conversion_events rows besides the control").toBe(1);
}
