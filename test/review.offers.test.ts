/**
 * Review of the offers admin API's validation: every bad field is a 422 naming it (never a 500),
 * and an amount an offer pays is one the currency can pay.
 */
import { describe, expect, it } from "vitest";
import { admin, createNetwork } from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

async function create(fields: Record<string, unknown>) {
  const network = await createNetwork();
  return admin("/v1/offers", {
    method: "POST",
    body: JSON.stringify({
      network_id: network.id,
      name: "Review offer",
      landing_url: "https://shop.example/landing?clickid={click_id}",
      ...fields,
    }),
  });
}

describe("review: offer validation", () => {
  it("refuses a pixel origin the URL parser cannot read with a 422, not a 500", async () => {
    // z.url accepts it; new URL() throws on the port.
    const response = await create({ pixel: { allowed_origins: ["https://shop.example:99999"] } });
    expectLocations(await expectProblem(response, 422, "validation_failed"), ["body.pixel.allowed_origins[0]"]);
  });

  it("refuses a fixed amount finer than its currency's minor unit, rather than paying a rounded one", async () => {
    // 2.505 USD would pay 2.50 (half to even), 0.4 JPY would pay 0: the operator meant something else.
    const response = await create({
      payouts: {
        default: [
          { fixed: { amount: "2.505", currency: "USD" } },
          { event_type: "lead", fixed: { amount: "0.4", currency: "JPY" } },
        ],
      },
      revenue: [{ fixed: { amount: "1.50", currency: "USD" } }],
    });
    const problem = await expectProblem(response, 422, "validation_failed");
    expectLocations(problem, ["body.payouts.default[0].fixed.amount", "body.payouts.default[1].fixed.amount"]);
    expect(problem.errors[0]?.message).toContain("USD");
  });
});
