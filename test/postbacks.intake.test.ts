import { describe, expect, it } from "vitest";
import { conversionInD1, createNetwork, eventually, expectStatus, makePostback, postback } from "./support/helpers";

describe("POST /v1/postbacks/{network_id}: decisions", () => {
  it("accepts a new conversion and records it in D1", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "pending" });
    const answer = await expectStatus<Record<string, unknown>>(await postback(network, body), 200);
    expect(answer).toMatchObject({
      status: "accepted",
      network_id: network.id,
      transaction_id: body.transaction_id,
      conversion_status: "pending",
    });
    expect(answer.event_id).toMatch(/^evt_/);
    const row = await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
    expect(row).toMatchObject({ status: "pending", amount: "29.99", currency: "USD" });
  });
});
