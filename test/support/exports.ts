/** Helpers for the export tests: many rows written straight to D1, exports read chunk by chunk and parsed back. */
import { env } from "cloudflare:workers";
import { parse } from "csv-parse/sync";
import { expect } from "vitest";
import { unguardFormula } from "../../src/lib/export-stream";
import { recordEventStatements } from "../../src/storage/d1";
import { makeEventMessage, uniqueId } from "./helpers";

/** D1 takes a batch of this many statements comfortably. */
const BATCH_STATEMENTS = 400;

async function runInBatches(statements: D1PreparedStatement[]): Promise<void> {
  for (let start = 0; start < statements.length; start += BATCH_STATEMENTS) {
    await env.DB.batch(statements.slice(start, start + BATCH_STATEMENTS));
  }
}

export interface SeededConversion {
  transaction_id: string;
  first_seen_at: string;
  status: string;
  amount: string;
  campaign_id: string;
}

/**
 * `count` conversions of `networkId`, recorded through the events consumer's own statements, with
 * first_seen_at one second apart from `startMs` (every tenth one sharing its neighbour's time, so
 * the keyset's tie-breaks are exercised across page boundaries).
 */
export async function seedConversions(
  networkId: string,
  count: number,
  startMs: number,
  shape: (index: number) => Partial<SeededConversion> = () => ({}),
): Promise<SeededConversion[]> {
  const seeded: SeededConversion[] = [];
  const statements: D1PreparedStatement[] = [];
  for (let index = 0; index < count; index += 1) {
    const tick = index - Math.floor(index / 10);
    const firstSeenAt = new Date(startMs + tick * 1000).toISOString();
    const statuses = ["pending", "approved", "declined", "paid"] as const;
    const conversion: SeededConversion = {
      transaction_id: uniqueId(`tx${index}`),
      first_seen_at: firstSeenAt,
      status: statuses[index % statuses.length] ?? "pending",
      amount: `${index}.${String(index % 1000).padStart(3, "0")}`,
      campaign_id: `camp-${index % 3}`,
      ...shape(index),
    };
    seeded.push(conversion);
    const fields = {
      status: conversion.status as "pending",
      amount: conversion.amount,
      currency: "EUR",
      campaign_id: conversion.campaign_id,
    };
    const message = makeEventMessage({
      network_id: networkId,
      transaction_id: conversion.transaction_id,
      received_at: firstSeenAt,
      event: fields,
      conversion: { ...fields, event_time: firstSeenAt, first_seen_at: firstSeenAt, version: 1 },
    });
    statements.push(...recordEventStatements(env.DB, message));
  }
  await runInBatches(statements);
  return seeded;
}

/** Sets columns of stored conversions directly (values no postback could carry, attribution). */
export async function updateConversion(
  networkId: string,
  transactionId: string,
  columns: Record<string, string | number | null>,
): Promise<void> {
  const names = Object.keys(columns);
  const result = await env.DB.prepare(
    `UPDATE conversions SET ${names.map((name, index) => `${name} = ?${index + 3}`).join(", ")}
     WHERE network_id = ?1 AND transaction_id = ?2`,
  )
    .bind(networkId, transactionId, ...Object.values(columns))
    .run();
  expect(result.meta.changes).toBe(1);
}

/** `count` deliveries to `partnerId`, created one second apart from `startMs`. */
export async function seedDeliveries(partnerId: string, count: number, startMs: number): Promise<string[]> {
  const ids: string[] = [];
  const statements: D1PreparedStatement[] = [];
  const states = ["pending", "delivered", "failed", "dead"] as const;
  for (let index = 0; index < count; index += 1) {
    const id = uniqueId("dlv");
    const createdAt = new Date(startMs + index * 1000).toISOString();
    const payload = {
      network_id: "acme",
      transaction_id: uniqueId("tx"),
      event_id: uniqueId("evt"),
      verdict: "accepted",
      received_at: createdAt,
      previous_status: null,
      conversion: {
        status: "approved",
        amount: "1.50",
        currency: "USD",
        event_time: createdAt,
        first_seen_at: createdAt,
        version: 1,
      },
    };
    ids.push(id);
    statements.push(
      env.DB.prepare(
        `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, attempts, last_status,
           last_error, payload, created_at, updated_at)
         VALUES (?, ?, ?, 'acme', ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).bind(
        id,
        payload.event_id,
        partnerId,
        payload.transaction_id,
        states[index % states.length] ?? "pending",
        index % 5,
        index % 2 === 0 ? 500 : null,
        index % 7 === 0 ? `=HYPERLINK("https://evil.test","ok"), line\nbreak` : null,
        JSON.stringify(payload),
        createdAt,
        createdAt,
      ),
    );
  }
  await runInBatches(statements);
  return ids;
}

/** The body, chunk by chunk as the runtime handed it over. */
export async function readChunks(response: Response): Promise<Uint8Array[]> {
  const reader = response.body?.getReader();
  if (!reader) throw new Error("the answer has no body");
  const chunks: Uint8Array[] = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return chunks;
    chunks.push(value);
  }
}

export function textOf(chunks: readonly Uint8Array[]): string {
  const decoder = new TextDecoder();
  return chunks.map((chunk) => decoder.decode(chunk, { stream: true })).join("") + decoder.decode();
}

/** A CSV export parsed back with a real parser: header, and each row as an object of unguarded cells. */
export function parseCsv(text: string): { header: string[]; rows: Record<string, string>[] } {
  const records = parse(text, { relax_column_count: false }) as string[][];
  const [header = [], ...body] = records;
  return {
    header,
    rows: body.map((record) =>
      Object.fromEntries(header.map((name, index) => [name, unguardFormula(record[index] ?? "")])),
    ),
  };
}

/** An NDJSON export: one JSON value per line, each line ending with a newline. */
export function parseNdjson(text: string): unknown[] {
  if (text === "") return [];
  expect(text.endsWith("\n")).toBe(true);
  return text
    .slice(0, -1)
    .split("\n")
    .map((line) => JSON.parse(line) as unknown);
}

/** A JSON item as the CSV writes it: flat, null as an empty cell, meta as its JSON text. */
export function csvCellsOf(item: Record<string, unknown>): Record<string, string> {
  const cells: Record<string, string> = {};
  const put = (name: string, value: unknown) => {
    cells[name] =
      value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
  };
  for (const [name, value] of Object.entries(item)) {
    if (name !== "attribution") put(name, value);
  }
  if ("attribution" in item) {
    const attribution = item.attribution as Record<string, unknown> | null;
    const money = (field: string) => attribution?.[field] as { amount: string; currency: string } | null | undefined;
    put("attribution_verdict", attribution?.verdict);
    put("attribution_detail", attribution?.detail);
    put("offer_id", attribution?.offer_id);
    put("attributed_partner_id", attribution?.partner_id);
    put("clicked_at", attribution?.clicked_at);
    put("payout", money("payout")?.amount);
    put("payout_currency", money("payout")?.currency);
    put("revenue", money("revenue")?.amount);
    put("revenue_currency", money("revenue")?.currency);
  }
  return cells;
}
