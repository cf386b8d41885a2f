/**
 * A conversion's proof: its hash chain as D1 and the archive hold it, checked event by event, against the
 * conversion row and against the chain head its Durable Object keeps. The proof route and the
 * console's detail page both show this one check.
 */

import { type ConversionFields, conversionObjectName, MATERIAL_FIELDS } from "../domain/conversion";
import { getConversionWithArchive } from "../storage/archive";
import type { ConversionEventRow, ConversionRow } from "../storage/d1";
import { type Proof, type StoredConversion, type StoredEvent, verifyChain } from "./chain";

/** The proof, or null when there is no such conversion (`otherWorld`: the test or live one exists). */
export async function proveConversion(
  env: Env,
  networkId: string,
  transactionId: string,
  test: boolean,
): Promise<{ proof: Proof | null; otherWorld: boolean }> {
  const { conversion, events, otherWorld, pruned } = await getConversionWithArchive(
    env.DB,
    env.ARCHIVE,
    networkId,
    transactionId,
    test,
  );
  if (!conversion && events.length === 0) return { proof: null, otherWorld };
  // One RPC, off the hot path: what the object attests (its head, where its chain begins, where
  // retention cut it, its state) is what a D1 writer cannot forge.
  const anchor = await env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, test)).chainHead();
  const proof = verifyChain({
    rows: events.map(storedEvent),
    conversion: conversion ? storedConversion(conversion) : null,
    anchor,
    pruned,
  });
  return { proof, otherWorld };
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
