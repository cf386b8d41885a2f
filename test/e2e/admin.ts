/** Admin calls to a running hub, shared by the e2e tests and the reliability scenarios. */
import { expect } from "vitest";
import { sleep, type WranglerDev } from "./wrangler-dev";

/** A request to an admin route with the hub's token (JSON when it has a body). */
export function adminRequest(
  hub: Pick<WranglerDev, "baseUrl" | "adminToken">,
  route: string,
  init: RequestInit = {},
): Promise<Response> {
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
