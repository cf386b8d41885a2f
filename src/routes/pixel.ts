/**
 * `GET /p/{offer_id}.gif?click_id=…&transaction_id=…&amount=…&currency=…`: the browser pixel
 * (ingest/pixel.ts). Answers a 1×1 GIF that nothing may cache, or a problem naming what is wrong.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { loadClickOffer } from "../attribution/click-targets";
import { configOf } from "../config";
import { ingestPixel, PIXEL_GIF } from "../ingest/pixel";
import { hmacKey } from "../lib/keys";
import { loadNetworkAuth } from "../networks/network-cache";
import { type App, problem, RATE_LIMITED_HEADERS } from "./common";

const PixelPath = z.object({
  offer_id: z.string().openapi({ param: { name: "offer_id", in: "path" }, example: "ofr_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
});

const PixelQuery = z.object({
  click_id: z.string().openapi({ description: "The click id the landing page received (`{click_id}`)." }),
  transaction_id: z.string().openapi({ example: "ord_8812" }),
  amount: z.string().optional().openapi({ example: "29.99" }),
  currency: z.string().optional().openapi({ example: "USD" }),
  status: z
    .string()
    .optional()
    .openapi({ description: "pending, or absent: a pixel reports a pending conversion only." }),
  event_type: z.string().optional().openapi({ example: "purchase" }),
});

export function registerPixelRoutes(app: App): void {
  const route = createRoute({
    method: "get",
    path: "/p/{offer_id}.gif",
    operationId: "firePixel",
    tags: ["Tracking links"],
    summary: "Fire the offer's conversion pixel",
    // No credential: a visitor's browser follows it (the pixel proves itself by its click id and origin).
    security: [],
    description:
      "For advertisers who can only place an image on their thank-you page. Authenticated by the click id (the hub's, for this offer) and the page's origin (the offer's `pixel.allowed_origins`, from `Origin` or the `Referer`); recorded with source `pixel` in the same conversion as the network's postback for the transaction, which confirms or corrects it.",
    request: { params: PixelPath, query: PixelQuery },
    responses: {
      200: {
        description:
          "Recorded (or already recorded): a 1×1 GIF, `Cache-Control: no-store`; the verdict in `x-postback-status`.",
        headers: {
          "x-postback-status": {
            description: "accepted, duplicate, updated or stale.",
            schema: { type: "string" as const },
          },
        },
        content: { "image/gif": { schema: z.string().openapi({ format: "binary" }) } },
      },
      401: problem("No click id, or not one the hub minted for this offer."),
      403: problem("Fired from a page the offer does not allow, or the offer's network is disabled."),
      404: problem("No such offer."),
      409: problem("The transaction's recorded status forbids what the pixel says."),
      410: problem("The offer is paused."),
      422: problem("Invalid fields; `errors` names each."),
      429: { ...problem("Over the network's rate limit."), headers: RATE_LIMITED_HEADERS },
    },
  });
  app.get("/p/:file", async (c, next) => {
    const file = c.req.param("file");
    if (!file.endsWith(".gif")) return next();
    const config = configOf(c.env);
    const nowMs = Date.now();
    const source = { db: c.env.DB, ttlSeconds: config.NETWORK_CACHE_TTL_SECONDS, nowMs };
    const answer = await ingestPixel(file.slice(0, -".gif".length), c.req.raw, {
      nowMs,
      loadOffer: (id) => loadClickOffer(id, source),
      loadNetwork: (id) => loadNetworkAuth(id, { ...source, encryptionKey: config.ENCRYPTION_KEY }),
      clickKey: () => hmacKey(config.ENCRYPTION_KEY, "click-id v1"),
      // Its own budget per network: a flood of pixels (anyone can fire one) never spends the
      // network's own postbacks' budget.
      withinRateLimit: async (id) => (await c.env.INGEST_RATE_LIMITER.limit({ key: `pixel:${id}` })).success,
      conversion: (name) => c.env.CONVERSIONS.getByName(name),
    });
    return c.body(PIXEL_GIF, 200, {
      "content-type": "image/gif",
      "cache-control": "no-store",
      "x-postback-status": answer.status,
    });
  });
  app.openAPIRegistry.registerPath(route);
}
