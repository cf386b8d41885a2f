/**
 * Helpers for the inbound tests (affiliate GET and form postbacks, tokens, signed queries, batch,
 * explain): networks created with authentication and mapping settings, requests built the way a
 * tracker sends them, and the network's credential metadata for rotation telemetry.
 */
import { env, exports } from "cloudflare:workers";
import { expect } from "vitest";
import { signQuery } from "../../src/ingest/signed-query";
import { importSigningKey } from "../../src/lib/standard-webhooks";
import { admin, BASE, conversionInD1, eventually, expectStatus, type TestNetwork, uniqueId } from "./helpers";

export interface InboundNetwork extends TestNetwork {
  /** The static token, when the network was created with the token method. */
  token?: string;
}

export interface NetworkSettings {
  auth?: { methods: string[]; ip_allowlist?: string[] };
  mapping?: Record<string, unknown> | null;
  answer?: { content_type: string; body: string } | null;
  test_mode?: boolean;
}

/** The mapping most tests use: txid/payout/status like an affiliate tracker, USD by default, sub1 kept. */
export const TRACKER_MAPPING = {
  preset: "generic",
  status_values: { "1": "approved" },
  default_currency: "USD",
  meta_params: ["sub1"],
} as const;

export const TOKEN_ONLY = { methods: ["token"], ip_allowlist: [] };

export async function createInboundNetwork(
  settings: NetworkSettings,
  id: string = uniqueId("net"),
): Promise<InboundNetwork> {
  const created = await expectStatus<{ id: string; secret: string; token?: string }>(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id, name: `Network ${id}`, ...settings }) }),
    201,
  );
  return { id: created.id, secret: created.secret, ...(created.token === undefined ? {} : { token: created.token }) };
}

/** The network's token, failing the test when it has none. */
export function tokenOf(network: InboundNetwork): string {
  if (network.token === undefined) throw new Error(`network ${network.id} was created without a token`);
  return network.token;
}

export type Params = Record<string, string> | readonly (readonly [string, string])[];

function pairsOf(params: Params): [string, string][] {
  return Array.isArray(params)
    ? params.map(([name, value]) => [name, value] as [string, string])
    : Object.entries(params as Record<string, string>);
}

export function postbackUrl(networkId: string, params: Params = {}, suffix = ""): string {
  const query = new URLSearchParams(pairsOf(params)).toString();
  return `${BASE}/v1/postbacks/${networkId}${suffix}${query ? `?${query}` : ""}`;
}

/** An affiliate GET postback, as a tracker fires it. */
export function getPostback(networkId: string, params: Params, headers: Record<string, string> = {}) {
  return exports.default.fetch(new Request(postbackUrl(networkId, params), { headers }));
}

/** A form-encoded POST postback; `query` goes into the URL, `fields` into the body. */
export function formPostback(
  networkId: string,
  fields: Params,
  options: { query?: Params; headers?: Record<string, string>; path?: string } = {},
) {
  const headers = new Headers(options.headers);
  headers.set("content-type", "application/x-www-form-urlencoded");
  return exports.default.fetch(
    new Request(postbackUrl(networkId, options.query ?? {}, options.path ?? ""), {
      method: "POST",
      headers,
      body: new URLSearchParams(pairsOf(fields)).toString(),
    }),
  );
}

export interface SignedQueryOptions {
  id?: string;
  /** Unix seconds; now by default. */
  timestamp?: number;
}

/** The pairs with pb_id, pb_ts and pb_sig added, signed with `secret` as docs/signed-query.md says. */
export async function signedQuery(
  secret: string,
  params: Params,
  options: SignedQueryOptions = {},
): Promise<[string, string][]> {
  const id = options.id ?? uniqueId("pb");
  const timestamp = String(options.timestamp ?? Math.floor(Date.now() / 1000));
  const unsigned: [string, string][] = [...pairsOf(params), ["pb_id", id], ["pb_ts", timestamp]];
  const signature = await signQuery(await importSigningKey(secret), id, timestamp, unsigned);
  return [...unsigned, ["pb_sig", signature]];
}

export function replaceParam(pairs: Params, name: string, value: string): [string, string][] {
  return pairsOf(pairs).map(([n, v]) => [n, n === name ? value : v]);
}

export function withoutParam(pairs: Params, name: string): [string, string][] {
  return pairsOf(pairs).filter(([n]) => n !== name);
}

export interface CredentialInfo {
  id: string;
  kind: "signing" | "token";
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export interface NetworkDetail {
  id: string;
  auth: { methods: string[]; ip_allowlist: string[] };
  mapping: Record<string, unknown> | null;
  answer: { content_type: string; body: string } | null;
  test_mode: boolean;
  secrets: CredentialInfo[];
}

export async function networkDetail(networkId: string): Promise<NetworkDetail> {
  return expectStatus<NetworkDetail>(await admin(`/v1/networks/${networkId}`), 200);
}

export async function patchNetwork(networkId: string, patch: Record<string, unknown>): Promise<Response> {
  return admin(`/v1/networks/${networkId}`, { method: "PATCH", body: JSON.stringify(patch) });
}

export interface IngestAnswer {
  status: "accepted" | "duplicate" | "updated" | "stale";
  event_id: string;
  network_id: string;
  transaction_id: string;
  conversion_status: string;
}

/**
 * The test flags D1 holds for a transaction: the conversion's and each of its events', of one world
 * (test or live) when `test` is given, of either otherwise.
 */
export async function testFlags(networkId: string, transactionId: string, test?: boolean) {
  const world = test === undefined ? null : test ? 1 : 0;
  const conversion = await env.DB.prepare(
    "SELECT test FROM conversions WHERE network_id = ? AND transaction_id = ? AND (?3 IS NULL OR test = ?3)",
  )
    .bind(networkId, transactionId, world)
    .first<{ test: number }>();
  const { results } = await env.DB.prepare(
    "SELECT test FROM conversion_events WHERE network_id = ? AND transaction_id = ? AND (?3 IS NULL OR test = ?3) ORDER BY seq",
  )
    .bind(networkId, transactionId, world)
    .all<{ test: number }>();
  return { conversion: conversion?.test ?? null, events: results.map((row) => row.test) };
}

/**
 * Proves that rejected postbacks stored nothing: a control postback sent after them (with
 * `sendControl`, since a token or signed-query network cannot take the Standard Webhooks control of
 * test/problems.ts) is awaited in D1 first; once it is there, the pipeline has flushed.
 */
export async function expectNotStored(
  networkId: string,
  rejectedTransactionIds: readonly string[],
  sendControl: (transactionId: string) => Promise<Response>,
): Promise<void> {
  const control = uniqueId("control");
  await expectStatus(await sendControl(control), 200);
  await eventually(() => conversionInD1(networkId, control));
  for (const rejected of rejectedTransactionIds) {
    expect(await conversionInD1(networkId, rejected), `transaction ${rejected} was stored`).toBeNull();
  }
}
