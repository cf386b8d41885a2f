/** Delivery rows as the events consumer makes them, and queue batches as the runtime hands them over. */
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { deliveryIdFor } from "../../src/delivery/partner";
import { uniqueId } from "./helpers";

interface FakeMessage {
  id: string;
  body: unknown;
  attempts: number;
  timestamp: Date;
  ack: ReturnType<typeof vi.fn>;
  retry: ReturnType<typeof vi.fn>;
}

export function batchOf(bodies: unknown[], queue = "postback-deliveries") {
  const messages: FakeMessage[] = bodies.map((body) => ({
    id: uniqueId("m"),
    body,
    attempts: 1,
    timestamp: new Date(),
    ack: vi.fn(),
    retry: vi.fn(),
  }));
  const batch = { queue, messages, ackAll: vi.fn(), retryAll: vi.fn() };
  return { batch: batch as unknown as MessageBatch<unknown>, messages, raw: batch };
}

/** A pending delivery row for `partnerId`, as the events consumer would have made it. */
export async function pendingDelivery(
  partnerId: string,
  overrides: {
    next_attempt_at?: string;
    amount?: string;
    transaction_id?: string;
    /** The conversion's version after the delivery's event (its place among the conversion's). */
    version?: number;
    status?: string;
    previous_status?: string | null;
    test?: boolean;
    state?: string;
    attempts?: number;
  } = {},
) {
  const eventId = uniqueId("evt");
  const id = await deliveryIdFor(eventId, partnerId);
  const now = new Date().toISOString();
  const payload = {
    network_id: "acme",
    transaction_id: overrides.transaction_id ?? uniqueId("tx"),
    event_id: eventId,
    verdict: "accepted",
    received_at: now,
    previous_status: overrides.previous_status ?? null,
    ...(overrides.test ? { test: true } : {}),
    conversion: {
      status: overrides.status ?? "approved",
      amount: overrides.amount ?? "12.50",
      currency: "USD",
      event_time: now,
      first_seen_at: now,
      version: overrides.version ?? 1,
    },
  };
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, attempts, payload, next_attempt_at,
       created_at, updated_at, delivered_at)
     VALUES (?1, ?2, ?3, 'acme', ?4, ?5, ?6, ?7, ?8, ?9, ?10, CASE WHEN ?5 = 'delivered' THEN ?10 END)`,
  )
    .bind(
      id,
      eventId,
      partnerId,
      payload.transaction_id,
      overrides.state ?? "pending",
      overrides.attempts ?? 0,
      JSON.stringify(payload),
      overrides.next_attempt_at ?? null,
      now,
      now,
    )
    .run();
  return id;
}

export async function deliveryRow(id: string) {
  return env.DB.prepare("SELECT * FROM deliveries WHERE id = ?").bind(id).first<Record<string, unknown>>();
}

export async function attemptsOf(id: string) {
  const { results } = await env.DB.prepare("SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt")
    .bind(id)
    .all<Record<string, unknown>>();
  return results;
}

export const message = (delivery_id: string) => ({ v: 1, delivery_id });
