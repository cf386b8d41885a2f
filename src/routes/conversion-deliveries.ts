/**
 * A conversion's deliveries with every attempt, wherever they are: D1 for the recent and the
 * unfinished, the archive (R2) for finished ones older than ARCHIVE_AFTER_DAYS (docs/archive.md).
 * Operator and read-only keys only: attempts carry partners' answers, which a network's key must not
 * read, and a partner's key reads its own through the deliveries list.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { toDelivery } from "../reports/delivery-export";
import { conversionDeliveries } from "../storage/archive";
import { ADMIN_PROBLEMS, type App, problem } from "./common";
import { ConversionKeyParams, conversionNotFound, WorldQuery } from "./conversions";
import { DeliveryDetailSchema, toAttempt } from "./deliveries";

const ConversionDeliveriesSchema = z
  .object({
    network_id: z.string(),
    transaction_id: z.string(),
    test: z.boolean(),
    deliveries: z.array(DeliveryDetailSchema).openapi({ description: "Newest first, each with its attempts." }),
  })
  .openapi("ConversionDeliveries");

const route = createRoute({
  method: "get",
  path: "/v1/conversions/{network_id}/{transaction_id}/deliveries",
  operationId: "getConversionDeliveries",
  tags: ["Conversions"],
  summary: "Get a conversion's deliveries",
  description:
    "Every delivery of the conversion with every attempt, newest first: those D1 holds and the finished ones the archive moved to R2 (docs/archive.md). `?test=true` for the test conversion.",
  request: { params: ConversionKeyParams, query: WorldQuery },
  responses: {
    200: {
      description: "The conversion's deliveries.",
      content: { "application/json": { schema: ConversionDeliveriesSchema } },
    },
    404: problem("No such conversion."),
    ...ADMIN_PROBLEMS,
  },
});

export function registerConversionDeliveriesRoute(app: App): void {
  app.openapi(route, async (c) => {
    const { network_id, transaction_id } = c.req.valid("param");
    const test = c.req.valid("query").test ?? false;
    const { found, deliveries } = await conversionDeliveries(c.env.DB, c.env.ARCHIVE, network_id, transaction_id, test);
    if (!found) throw conversionNotFound(network_id, transaction_id, test, false);
    return c.json(
      {
        network_id,
        transaction_id,
        test,
        deliveries: deliveries.map((d) => ({ ...toDelivery(d), attempts_log: d.attempts_log.map(toAttempt) })),
      },
      200,
    );
  });
}
