/** GET /metrics: the hub's counters and gauges for a Prometheus-compatible scraper (docs/monitoring.md). */
import { createRoute, z } from "@hono/zod-openapi";
import { METRICS_CONTENT_TYPES, metricsFormat, renderMetrics } from "../reports/metrics";
import { counterRows, gauges } from "../storage/metrics";
import { ADMIN_PROBLEMS, type App } from "./common";

export function registerMetricsRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/metrics",
      operationId: "getMetrics",
      tags: ["Monitoring"],
      summary: "Metrics for a Prometheus scraper",
      description:
        "Postbacks by network and verdict, unlogged postbacks, delivery attempts by partner and outcome, delivery latency and attempts per delivery as histograms, clicks by offer (counters kept in D1, exact across isolates and restarts), and the delivery backlog, its oldest age, open dead letters, partner states and outbox events D1 has not confirmed (gauges). `Accept: application/openmetrics-text` answers OpenMetrics 1.0. Scrape with a read-only key.",
      responses: {
        200: {
          description: "Every metric, with HELP and TYPE.",
          content: {
            [METRICS_CONTENT_TYPES.prometheus]: { schema: z.string() },
            [METRICS_CONTENT_TYPES.openmetrics]: { schema: z.string() },
          },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const format = metricsFormat(c.req.header("accept"));
      const [counters, current] = await Promise.all([counterRows(c.env.DB), gauges(c.env.DB)]);
      c.header("vary", "Accept");
      c.header("cache-control", "no-store");
      return c.body(renderMetrics(counters, current, Date.now(), format), 200, {
        "content-type": METRICS_CONTENT_TYPES[format],
      });
    },
  );
}
