/**
 * What the e2e tests and the reliability scenarios share, written once: admin calls to a running
 * hub, a status check that shows the body, polling, a postback signed by the official Standard
 * Webhooks library (as a network signs one, none of the hub's code), and a postback factory.
 *
 * A new e2e file gets its hub with `sharedHub()` (./shared-hub.ts: one `wrangler dev` for the run,
 * nothing to stop), or with `startWranglerDev()` (./wrangler-dev.ts) when it kills or restarts it,
 * sets vars or counts something hub-wide; ./README.md says how, and what a file on the shared hub
 * must scope. Every helper here takes either.
 */
import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { expect } from "vitest";
import { sleep, type WranglerDev } from "./wrangler-dev";

export { sleep };

type Hub = Pick<WranglerDev, "baseUrl" | "adminToken">;

/** A request to an admin route with the hub's token (JSON when it has a body). */
export function adminRequest(hub: Hub, route: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${hub.adminToken}`);
  if (init.body !== undefined) headers.set("content-type", "application/json");
  return fetch(`${hub.baseUrl}${route}`, { ...init, headers, signal: AbortSignal.timeout(30_000) });
}

/** Asserts the status with the body in the failure message, then parses the body. */
export async function expectStatus<T>(response: Response, status: number): Promise<T> {
  const text = await response.text();
  expect(response.status, `expected ${status}, got ${response.status}: ${text}`).toBe(status);
  return JSON.parse(text) as T;
}

/** Polls `probe` every 500 ms until `ready` or the deadline; returns the last value either way. */
export async function pollUntil<T>(
  probe: () => Promise<T>,
  ready: (value: T) => boolean,
  timeoutMs: number,
): Promise<{ value: T; ready: boolean; waitedMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (ready(value)) return { value, ready: true, waitedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) return { value, ready: false, waitedMs: Date.now() - started };
    await sleep(500);
  }
}

/**
 * D1 is written through the queues after the answer, so reads poll: the probe's value once it is
 * not null (and `ready` says so), or an error naming `what`, with the last value and `context()`.
 */
export async function eventually<T>(
  probe: () => Promise<T | null | undefined>,
  what: string,
  options: { ready?: (value: T) => boolean; timeoutMs?: number; context?: () => string } = {},
): Promise<T> {
  const { ready = () => true, timeoutMs = 60_000, context = () => "" } = options;
  const result = await pollUntil(probe, (value) => value !== null && value !== undefined && ready(value), timeoutMs);
  if (!result.ready || result.value === null || result.value === undefined) {
    throw new Error(
      `${what}: not within ${timeoutMs} ms; last value: ${JSON.stringify(result.value, null, 2)}\n${context()}`,
    );
  }
  return result.value;
}

/** A realistic postback with a fresh transaction id; fields can be overridden. */
export function makePostback(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    transaction_id: `tx-${randomUUID()}`,
    status: "approved",
    amount: "29.99",
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-e2e",
    ...overrides,
  };
}

/** Posts `body` byte for byte to the network, signed by the Standard Webhooks library (a fresh timestamp each time). */
export function signedPostback(
  hub: Pick<WranglerDev, "baseUrl">,
  networkId: string,
  secret: string,
  body: string | Record<string, unknown>,
  options: { path?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const payload = typeof body === "string" ? body : JSON.stringify(body);
  const msgId = `msg_${randomUUID()}`;
  const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
  return fetch(`${hub.baseUrl}/v1/postbacks/${networkId}${options.path ?? ""}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": msgId,
      "webhook-timestamp": String(timestamp.getTime() / 1000),
      "webhook-signature": new Webhook(secret).sign(msgId, timestamp, payload),
      ...options.headers,
    },
    body: payload,
    signal: AbortSignal.timeout(30_000),
  });
}
