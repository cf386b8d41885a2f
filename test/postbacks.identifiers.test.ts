/**
 * Identifiers are what they look like: an id written in two Unicode forms names one conversion
 * (one Durable Object, one D1 row), and an id with invisible characters is refused before it can
 * name anything.
 */
import { describe, expect, it } from "vitest";
import {
  admin,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  uniqueId,
} from "./support/helpers";
import { expectNothingStored, expectProblem } from "./support/problems";

interface Answer {
  status: string;
  event_id: string;
  transaction_id: string;
}

describe("postback identifiers", () => {
  it("treats an id in NFC and in NFD as the same transaction", async () => {
    const network = await createNetwork();
    const stem = uniqueId("café");
    const composed = stem.normalize("NFC");
    const decomposed = stem.normalize("NFD");
    expect(decomposed).not.toBe(composed);
    const body = makePostback({ transaction_id: decomposed });
    const first = await expectStatus<Answer>(await postback(network, body), 200);
    expect(first).toMatchObject({ status: "accepted", transaction_id: composed });
    const again = await expectStatus<Answer>(await postback(network, { ...body, transaction_id: composed }), 200);
    expect(again).toEqual({ ...first, status: "duplicate" });
    const row = await eventually(() => conversionInD1(network.id, composed));
    expect(row.transaction_id).toBe(composed);
    expect(await conversionInD1(network.id, decomposed)).toBeNull();
    const detail = await admin(`/v1/conversions/${network.id}/${encodeURIComponent(composed)}`);
    expect((await expectStatus<{ events: unknown[] }>(detail, 200)).events).toHaveLength(1);
    // An operator who types the decomposed form finds the same conversion.
    const typed = await admin(`/v1/conversions/${network.id}/${encodeURIComponent(decomposed)}`);
    expect((await expectStatus<{ transaction_id: string }>(typed, 200)).transaction_id).toBe(composed);
  });

  it.each([
    ["transaction_id", "zero-width space", "\u200B"],
    ["transaction_id", "right-to-left override", "\u202E"],
    ["click_id", "zero-width joiner", "\u200D"],
    ["campaign_id", "left-to-right mark", "\u200E"],
  ])("refuses a %s with a %s and stores nothing", async (field, _, character) => {
    const network = await createNetwork();
    const transactionId = uniqueId("tx");
    const value = field === "transaction_id" ? `${transactionId}${character}` : `id${character}1`;
    const body = makePostback({ transaction_id: transactionId, [field]: value });
    const problem = await expectProblem(await postback(network, body), 422, "validation_failed");
    expect(problem.errors).toEqual([
      {
        location: `body.${field}`,
        message: "must not contain invisible format characters (zero-width or bidi controls)",
      },
    ]);
    await expectNothingStored(network, [transactionId, value]);
  });
});
