/**
 * Shared pieces of the reliability suite: the e2e `wrangler dev` (killable and restartable on the
 * same state), admin and signed-postback helpers, a bounded-concurrency runner, and the counts table
 * every scenario prints.
 */
import { randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { adminRequest, pollUntil } from "../support";

export { pollUntil };

import { sleep, startWranglerDev, type WranglerDev } from "../wrangler-dev";

/**
 * Multiplies every scenario's load: 1 by default (`npm run test:reliability`), 0.25 for the short
 * form in `npm test`, 5 or 10 for a thorough run. Waits for recovery never shrink with it.
 */
export const SCALE = Math.max(0.1, Number(process.env.RELIABILITY_SCALE ?? "1") || 1);

/** `count` at the current scale, at least `minimum`. */
export function scaled(count: number, minimum = 1): number {
  return Math.max(minimum, Math.round(count * SCALE));
}

/** The real `wrangler dev`, killable and restartable on the same state (see ../wrangler-dev.ts). */
export type Hub = WranglerDev;
export const startHub = startWranglerDev;
export { sleep };

/** An admin request to the hub (see ../admin.ts). */
export const admin = adminRequest;

export async function adminJson<T>(hub: Hub, route: string, status: number, init: RequestInit = {}): Promise<T> {
  const response = await admin(hub, route, init);
  const text = await response.text();
  if (response.status !== status) throw new Error(`${route}: expected ${status}, got ${response.status}: ${text}`);
  return JSON.parse(text) as T;
}

export interface Network {
  id: string;
  secret: string;
  token?: string;
}

export async function createNetwork(hub: Hub, prefix: string, extra: Record<string, unknown> = {}): Promise<Network> {
  const id = `${prefix}-${randomUUID().slice(0, 8)}`;
  const created = await adminJson<{ secret: string; token?: string }>(hub, "/v1/networks", 201, {
    method: "POST",
    body: JSON.stringify({ id, name: `Reliability ${prefix}`, ...extra }),
  });
  return { id, secret: created.secret, token: created.token };
}

export interface Partner {
  id: string;
  signingSecret: string;
}

/** A partner's breaker settings (docs/partners-and-delivery.md, "Health and alerts"); any left out keep their defaults. */
export interface BreakerSettings {
  window_seconds?: number;
  min_attempts?: number;
  failure_percent?: number;
  cooldown_seconds?: number;
  disable_after_seconds?: number;
}

export async function createPartner(
  hub: Hub,
  origin: string,
  networkIds: string[],
  options: { timeoutMs?: number; retrySchedule?: number[]; breaker?: BreakerSettings } = {},
): Promise<Partner> {
  const created = await adminJson<{ id: string; signing_secret?: string }>(hub, "/v1/partners", 201, {
    method: "POST",
    body: JSON.stringify({
      name: `Reliability partner ${randomUUID().slice(0, 6)}`,
      url_template: `${origin}/pb?tx={transaction_id}&status={status}&event={event_id}`,
      method: "GET",
      sign: true,
      retry_schedule_seconds: options.retrySchedule ?? [1, 1, 1, 2, 2, 2, 3, 3, 3, 5],
      timeout_ms: options.timeoutMs ?? 5_000,
      filters: { networks: networkIds },
      breaker: options.breaker,
    }),
  });
  if (created.signing_secret === undefined) throw new Error("a signed partner came back without a signing_secret");
  return { id: created.id, signingSecret: created.signing_secret };
}

export interface IngestAnswer {
  status: string;
  event_id: string;
  transaction_id: string;
  conversion_status: string;
}

export interface PostResult {
  /** HTTP status, or 0 when the request failed (connection refused or reset, timeout). */
  status: number;
  answer?: IngestAnswer;
  error?: string;
}

/** Posts `body` signed with Standard Webhooks, as a network would; never throws. */
export async function postSigned(hub: Hub, network: Network, body: Record<string, unknown>): Promise<PostResult> {
  const payload = JSON.stringify(body);
  const msgId = `msg_${randomUUID()}`;
  const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
  try {
    const response = await fetch(`${hub.baseUrl}/v1/postbacks/${network.id}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "webhook-id": msgId,
        "webhook-timestamp": String(timestamp.getTime() / 1000),
        "webhook-signature": new Webhook(network.secret).sign(msgId, timestamp, payload),
      },
      body: payload,
      signal: AbortSignal.timeout(60_000),
    });
    const text = await response.text();
    if (response.status >= 200 && response.status < 300) {
      return { status: response.status, answer: JSON.parse(text) as IngestAnswer };
    }
    return { status: response.status, error: text.slice(0, 500) };
  } catch (error) {
    return { status: 0, error: String(error) };
  }
}

export function makePostback(transactionId: string, overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    transaction_id: transactionId,
    status: "approved",
    amount: "10.00",
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-rel",
    ...overrides,
  };
}

/** Runs `count` tasks with at most `concurrency` in flight; results in task order. */
export async function runPool<T>(
  count: number,
  concurrency: number,
  task: (index: number) => Promise<T>,
): Promise<T[]> {
  const results: T[] = new Array(count);
  let next = 0;
  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= count) return;
      results[index] = await task(index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return results;
}

interface ListPage<T> {
  data: T[];
  next_cursor: string | null;
}

/** Every row of a list route, page by page (bounded). */
export async function listAll<T>(hub: Hub, route: string): Promise<T[]> {
  const rows: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1_000; page++) {
    const separator = route.includes("?") ? "&" : "?";
    const url = `${route}${separator}limit=200${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
    const body: ListPage<T> = await adminJson<ListPage<T>>(hub, url, 200);
    rows.push(...body.data);
    cursor = body.next_cursor;
    if (cursor === null) return rows;
  }
  throw new Error(`${route}: more than 1000 pages`);
}

export interface ConversionRow {
  network_id: string;
  transaction_id: string;
  status: string;
}

export interface DeliveryRow {
  id: string;
  event_id: string;
  partner_id: string;
  transaction_id: string;
  state: string;
  attempts: number;
}

export function conversions(hub: Hub, networkId: string): Promise<ConversionRow[]> {
  return listAll<ConversionRow>(hub, `/v1/conversions?network_id=${encodeURIComponent(networkId)}`);
}

export function deliveries(hub: Hub, partnerId: string): Promise<DeliveryRow[]> {
  return listAll<DeliveryRow>(hub, `/v1/deliveries?partner_id=${encodeURIComponent(partnerId)}`);
}

export interface Counts {
  sent: number;
  acknowledged: number;
  stored: number;
  delivered: number;
  lost: number;
  [extra: string]: number;
}

/** Prints one scenario's counts as a table, and as a JSON line for machines. */
export function report(scenario: string, counts: Counts, durationMs: number): void {
  console.log(`\n[reliability] ${scenario} (${(durationMs / 1000).toFixed(1)} s, scale ${SCALE})`);
  console.table(counts);
  console.log(`RELIABILITY_RESULT ${JSON.stringify({ scenario, scale: SCALE, durationMs, ...counts })}`);
}

/** Counts per status code, e.g. { "200": 95, "0": 5 }. */
export function statusHistogram(results: PostResult[]): Record<string, number> {
  const histogram: Record<string, number> = {};
  for (const result of results) histogram[result.status] = (histogram[result.status] ?? 0) + 1;
  return histogram;
}
