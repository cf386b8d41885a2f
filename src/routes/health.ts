/**
 * `GET /health`: configuration parsed and D1 reachable with its schema in place, for load
 * balancers and operators (a hub whose migrations were never applied is not healthy).
 */
import { createRoute, z } from "@hono/zod-openapi";
import { configOf } from "../config";
import { ProblemError } from "../errors";
import { logLine } from "../lib/log";
import { checkSchema } from "../storage/d1";
import { type App, problem } from "./common";

const HealthSchema = z.object({ status: z.literal("ok"), time: z.string() }).openapi("Health");

export function registerHealthRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/health",
      operationId: "getHealth",
      tags: ["Operations"],
      summary: "Health check",
      // Public, so that a load balancer can ask.
      security: [],
      responses: {
        200: {
          description: "The hub is up and configured.",
          content: { "application/json": { schema: HealthSchema } },
        },
        500: problem("A var or secret is missing or malformed; `detail` names it."),
        503: problem("D1 is unreachable or its migrations are not applied."),
      },
    }),
    async (c) => {
      configOf(c.env);
      try {
        await checkSchema(c.env.DB.withSession("first-unconstrained"));
      } catch (error) {
        // The cause goes to the log only: this route is public.
        logLine("error", { message: "health: D1 check failed", error: String(error) });
        throw new ProblemError(
          "storage_unavailable",
          "D1 does not answer with the hub's schema; apply the migrations (npm run db:migrate:local, or :remote).",
        );
      }
      return c.json({ status: "ok" as const, time: new Date().toISOString() }, 200);
    },
  );
}
