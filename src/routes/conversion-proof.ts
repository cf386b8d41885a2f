/**
 * The proof of a conversion's history: its hash chain as D1 holds it, checked event by event,
 * against the conversion row, and against the chain head its Durable Object keeps, with where and
 * why it breaks (conversions/proof.ts). docs/conversion-records.md says how anyone can check the
 * same without the hub.
 */
import { createRoute } from "@hono/zod-openapi";
import { ProofSchema } from "../conversions/chain";
import { proveConversion } from "../conversions/proof";
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
    const { proof, otherWorld } = await proveConversion(c.env, network_id, transaction_id, test);
    if (!proof) throw conversionNotFound(network_id, transaction_id, test, otherWorld);
    return c.json(proof, 200);
  });
}
