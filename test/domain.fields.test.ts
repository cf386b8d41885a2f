/**
 * A conversion field is declared once, in the postback's schema; every list of fields elsewhere is
 * derived from it. These tests hold the derived lists to the schema, so a field added there shows
 * up everywhere it must, and pin the one order that is part of stored data (the fingerprint's).
 */
import { describe, expect, it } from "vitest";
import { defaultBody, KNOWN_MACROS, SAMPLE_VALUES } from "../src/delivery/template";
import { FINGERPRINT_POSITIONAL_FIELDS, MATERIAL_FIELDS } from "../src/domain/conversion";
import { EventMessageSchema } from "../src/domain/messages";
import { PostbackFieldsSchema } from "../src/domain/postback";
import { POSTBACK_FIELDS, PRESETS } from "../src/ingest/mapping";
import { makeEventMessage } from "./support/helpers";

const schemaFields = Object.keys(PostbackFieldsSchema.shape);

describe("conversion fields, derived from the postback's schema", () => {
  it("takes the material fields from the schema, in the order the dedupe fingerprint was always built in", () => {
    // Fingerprints of events already stored depend on this order: a new field goes at the end.
    const first = [
      "status",
      "amount",
      "currency",
      "event_type",
      "campaign_id",
      "click_id",
      "user_id",
      "device_id",
      "platform",
      "meta",
    ];
    expect(FINGERPRINT_POSITIONAL_FIELDS).toEqual(first);
    expect(MATERIAL_FIELDS).toEqual([...first, "partner_id"]);
    expect(schemaFields.filter((field) => !["transaction_id", "event_time", "test"].includes(field))).toEqual(
      MATERIAL_FIELDS,
    );
  });

  it("lets a parameter map to every field but meta and test, and names each by itself in the generic preset", () => {
    expect(POSTBACK_FIELDS).toEqual(schemaFields.filter((field) => field !== "meta" && field !== "test"));
    for (const field of POSTBACK_FIELDS) expect(PRESETS.generic.fields[field][0], field).toBe(field);
  });

  it("offers every conversion field as a macro and puts it in the default body", () => {
    const body = Object.keys(JSON.parse(defaultBody(SAMPLE_VALUES)));
    for (const field of MATERIAL_FIELDS.filter((name) => name !== "meta")) {
      expect(KNOWN_MACROS, field).toContain(field);
      expect(body, field).toContain(field);
    }
  });

  it("carries every conversion field through an EVENTS message, and keeps no other", () => {
    const fields = {
      status: "paid",
      amount: "1.50",
      currency: "EUR",
      event_type: "purchase",
      campaign_id: "c",
      click_id: "k",
      user_id: "u",
      device_id: "d",
      platform: "ios",
      meta: { sub1: "x" },
      partner_id: "ptn_1",
    } as const;
    expect(Object.keys(fields).sort()).toEqual([...MATERIAL_FIELDS].sort());
    const message = makeEventMessage({
      event: { ...fields, event_time: "2026-01-01T00:00:00.000Z" },
      conversion: {
        ...fields,
        event_time: "2026-01-01T00:00:00.000Z",
        first_seen_at: "2026-01-01T00:00:00.000Z",
        version: 2,
      },
    });
    const parsed = EventMessageSchema.parse({ ...message, event: { ...message.event, unknown: 1 } });
    expect(parsed.event).toEqual({ ...fields, event_time: "2026-01-01T00:00:00.000Z" });
    expect(parsed.conversion).toMatchObject(fields);
  });
});
