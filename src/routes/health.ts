/** `GET /health`: liveness plus a configuration check, for load balancers and operators. */
import { createRoute, z } from "@hono/zod-openapi";
import { configOf } from "../config";
import { type App, problem } from "./common";

const HealthSchema = z.object({ status: z.literal("ok"), time: z.string() }).openapi("Health");

export function registerHealthRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/health",
      tags: ["Operations"],
      summary: "Health check",
      responses: {
        200: {
          description: "The hub is up and configured.",
          content: { "application/json": { schema: HealthSchema } },
        },
        500: problem("A var or secret is missing or malformed; `detail` names it."),
      },
    }),
    (c) => {
      configOf(c.env);
      return c.json({ status: "ok" as const, time: new Date().toISOString() }, 200);
    },
  );
}
