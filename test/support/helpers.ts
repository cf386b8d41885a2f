/** Factories for tests running inside workerd: networks, postbacks, signed requests, admin calls. */
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { type EventMessage, EventMessageSchema } from "../../src/domain/messages";
import { utf8 } from "../../src/lib/bytes";
import { importSigningKey, sign } from "../../src/lib/standard-webhooks";

export const BASE = "https://hub.test";
export const ADMIN_TOKEN = env.ADMIN_TOKEN;

let counter = 0;
/** A unique id per call, so tests sharing a file's storage never collide. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}`;
}

export function admin(path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  if (init.body !== undefined && !headers.has("content-type")) headers.set("content-type", "application/json");
  return exports.default.fetch(new Request(`${BASE}${path}`, { ...init, headers }));
}

/** Asserts the status, showing the body when it is not the expected one. */
export async function expectStatus<T = unknown>(response: Response, status: number): Promise<T> {
  const text = await response.text();
  expect(response.status, `expected ${status}, got ${response.status}: ${text}`).toBe(status);
  return (text ? JSON.parse(text) : null) as T;
}

export interface TestNetwork {
  id: string;
  secret: string;
}

export async function createNetwork(id: string = uniqueId("net")): Promise<TestNetwork> {
  const body = await expectStatus<{ id: string; secret: string }>(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id, name: `Network ${id}` }) }),
    201,
  );
  return { id: body.id, secret: body.secret };
}

export function makePostback(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    transaction_id: uniqueId("tx"),
    status: "approved",
    amount: "29.99",
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-1",
    click_id: "clk-1",
    platform: "web",
    ...overrides,
  };
}

export interface SignOptions {
  id?: string;
  /** Unix seconds; now by default. */
  timestamp?: number;
  /** Replaces the computed signature header. */
  signature?: string;
  contentType?: string | null;
  headers?: Record<string, string>;
}

/** A postback request signed the Standard Webhooks way with `secret`; `body` is sent byte for byte. */
export async function signedRequest(
  networkId: string,
  body: string | Record<string, unknown>,
  secret: string,
  options: SignOptions = {},
): Promise<Request> {
  const raw = typeof body === "string" ? body : JSON.stringify(body);
  const id = options.id ?? uniqueId("msg");
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  const signature = options.signature ?? (await sign(await importSigningKey(secret), id, timestamp, utf8(raw)));
  const headers = new Headers({ "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature });
  if (options.contentType !== null) headers.set("content-type", options.contentType ?? "application/json");
  for (const [name, value] of Object.entries(options.headers ?? {})) headers.set(name, value);
  return new Request(`${BASE}/v1/postbacks/${networkId}`, { method: "POST", headers, body: raw });
}

export async function postback(
  network: TestNetwork,
  body: string | Record<string, unknown>,
  options: SignOptions = {},
): Promise<Response> {
  return exports.default.fetch(await signedRequest(network.id, body, network.secret, options));
}

/** Polls until `probe` returns a value (D1 is written asynchronously, through the queue). */
export async function eventually<T>(probe: () => Promise<T | null | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== null && value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** The transaction's conversion row in D1: the test or the live one, or either when `test` is not given. */
export async function conversionInD1(networkId: string, transactionId: string, test?: boolean) {
  return env.DB.prepare(
    "SELECT * FROM conversions WHERE network_id = ? AND transaction_id = ? AND (?3 IS NULL OR test = ?3)",
  )
    .bind(networkId, transactionId, test === undefined ? null : test ? 1 : 0)
    .first<Record<string, unknown>>();
}

export const PARTNER = "https://partner.test";

export interface PartnerRequestLog {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

/** Requests the fake partner (test/setup/fake-partner.ts) received under a path prefix. */
export async function partnerLog(prefix: string): Promise<PartnerRequestLog[]> {
  const response = await fetch(`${PARTNER}/__log${prefix}`);
  return (await response.json()) as PartnerRequestLog[];
}

/** Outbound requests to hosts other than the fake partner's (answered 599) whose path starts with `prefix`. */
export async function unexpectedRequests(prefix: string): Promise<PartnerRequestLog[]> {
  const response = await fetch(`${PARTNER}/__unexpected${prefix}`);
  return (await response.json()) as PartnerRequestLog[];
}

/**
 * What the partner's server hands the Standard Webhooks library for this request: the raw body of a
 * POST, and for a GET (no body) its request line without the version, `GET /path?query`, exactly as
 * the request target arrived (the URL without its origin).
 */
export function signedContentOf(request: { method: string; url: string; body: string | null }): string {
  if (request.method !== "GET") return request.body ?? "";
  return `GET ${request.url.slice(new URL(request.url).origin.length)}`;
}

export interface TestPartner {
  id: string;
  signing_secret?: string;
}

export async function createPartner(fields: Record<string, unknown>): Promise<TestPartner> {
  return expectStatus<TestPartner>(
    await admin("/v1/partners", { method: "POST", body: JSON.stringify({ name: uniqueId("partner"), ...fields }) }),
    201,
  );
}

/** An offer as the admin API answers it (POST and GET /v1/offers/{offer_id}). */
export interface TestOffer {
  id: string;
  network_id: string;
  name: string;
  status: "active" | "paused";
  landing_url: string;
  attribution_window_days: number;
  campaign_id: string | null;
  revenue: Record<string, unknown>[];
  payouts: { default: Record<string, unknown>[]; partners: Record<string, Record<string, unknown>[]> };
  partners: string[] | null;
  pixel: { allowed_origins: string[]; notify_before_confirmation: boolean };
  tracking_link: string;
  clicks: number;
  created_at: string;
  updated_at: string;
}

/** Creates an offer through the admin API; without a `network_id`, of a network created for it. */
export async function createOffer(fields: Record<string, unknown> = {}): Promise<TestOffer> {
  const networkId = typeof fields.network_id === "string" ? fields.network_id : (await createNetwork()).id;
  const body = {
    name: uniqueId("offer"),
    landing_url: "https://shop.test/landing?clickid={click_id}",
    ...fields,
    network_id: networkId,
  };
  return expectStatus<TestOffer>(await admin("/v1/offers", { method: "POST", body: JSON.stringify(body) }), 201);
}

/** A valid EVENTS message, as a conversion's outbox sends it; fields can be overridden. */
export function makeEventMessage(overrides: Partial<EventMessage> = {}): EventMessage {
  const transactionId = overrides.transaction_id ?? uniqueId("tx");
  const receivedAt = new Date().toISOString();
  return EventMessageSchema.parse({
    v: 1,
    event_id: uniqueId("evt"),
    network_id: "acme",
    transaction_id: transactionId,
    seq: 1,
    verdict: "accepted",
    received_at: receivedAt,
    event: { status: "pending", amount: "5.00", currency: "USD" },
    conversion: {
      status: "pending",
      amount: "5.00",
      currency: "USD",
      event_time: receivedAt,
      first_seen_at: receivedAt,
      version: 1,
    },
    ...overrides,
  });
}

/** Lowercase hex SHA-256 of text (as UTF-8) or bytes, written apart from the hub's own helpers. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export interface DeliveryRow {
  id: string;
  event_id: string;
  state: string;
  attempts: number;
  last_error: string | null;
  created_at: string;
}

/** A partner's deliveries as D1 holds them, oldest first. */
export async function deliveriesOf(partnerId: string): Promise<DeliveryRow[]> {
  const { results } = await env.DB.prepare(
    "SELECT id, event_id, state, attempts, last_error, created_at FROM deliveries WHERE partner_id = ? ORDER BY created_at, id",
  )
    .bind(partnerId)
    .all<DeliveryRow>();
  return results;
}
