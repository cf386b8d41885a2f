/**
 * The proof of a conversion's history: its hash chain as D1 holds it, checked event by event,
 * against the conversion row, and against the chain head its Durable Object keeps, with where and
 * why it breaks. docs/conversion-records.md says how anyone can check the same without the hub.
 */
import { createRoute } from "@hono/zod-openapi";
import { ProofSchema, type StoredConversion, type StoredEvent, verifyChain } from "../conversions/chain";
import { type ConversionFields, conversionObjectName, MATERIAL_FIELDS } from "../domain/conversion";
import { type ConversionEventRow, type ConversionRow, getConversion } from "../storage/d1";
import { ADMIN_PROBLEMS, type App, problem } from "./common";
import { ConversionKeyParams, conversionNotFound, WorldQuery } from "./conversions";

const route = createRoute({
  method: "get",
  path: "/v1/conversions/{network_id}/{transaction_id}/proof",
  operationId: "getConversionProof",
  tags: ["Conversions"],
  summary: "Prove a conversion's history",
  description:
    "Every recorded event with the content its hash covers, recomputed from what D1 holds now; whether each links to the one before, whether D1 agrees with the chain head the conversion's Durable Object keeps, and whether the conversion row is what the events add up to. `?test=true` for the test conversion.",
  request: { params: ConversionKeyParams, query: WorldQuery },
  responses: {
    200: { description: "The proof, verified or not.", content: { "application/json": { schema: ProofSchema } } },
    404: problem("No such conversion."),
    ...ADMIN_PROBLEMS,
  },
});

export function registerConversionProofRoute(app: App): void {
  app.openapi(route, async (c) => {
    const { network_id, transaction_id } = c.req.valid("param");
    const test = c.req.valid("query").test ?? false;
    const { conversion, events, otherWorld, pruned } = await getConversion(c.env.DB, network_id, transaction_id, test);
    if (!conversion && events.length === 0) throw conversionNotFound(network_id, transaction_id, test, otherWorld);
    // One RPC, off the hot path: what the object attests (its head, where its chain begins, where
    // retention cut it, its state) is what a D1 writer cannot forge.
    const anchor = await c.env.CONVERSIONS.getByName(
      conversionObjectName(network_id, transaction_id, test),
    ).chainHead();
    const proof = verifyChain({
      rows: events.map(storedEvent),
      conversion: conversion ? storedConversion(conversion) : null,
      anchor,
      pruned,
    });
    return c.json(proof, 200);
  });
}

function storedEvent(row: ConversionEventRow): StoredEvent {
  return { ...row, test: row.test === 1 };
}

/** D1's row as fields; a meta column that no longer parses is kept as its text, so it shows as a difference. */
function storedConversion(row: ConversionRow): StoredConversion {
  let meta: unknown = row.meta;
  try {
    meta = row.meta === null ? undefined : JSON.parse(row.meta);
  } catch {
    // left as text
  }
  const fields: Record<string, unknown> = {};
  for (const field of MATERIAL_FIELDS) {
    const value = field === "meta" ? meta : row[field];
    if (value !== null && value !== undefined) fields[field] = value;
  }
  return {
    status: row.status,
    fields: fields as ConversionFields,
    event_time: row.event_time,
    event_time_supplied: row.event_time_supplied === 1,
    first_seen_at: row.first_seen_at,
    version: row.version,
  };
}
