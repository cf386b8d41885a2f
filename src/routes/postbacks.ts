/**
 * `POST /v1/postbacks/{network_id}`: where networks post conversions. The route is documented from
 * the zod schemas but handled by hand, because the signature covers the raw bytes: the body is
 * verified before it is parsed, never re-serialised.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { configOf } from "../config";
import { ingestPostback } from "../ingest/ingest";
import { PostbackSchema } from "../ingest/postback-schema";
import { loadNetworkAuth, refreshNetworkAuth } from "../networks/network-cache";
import { type App, problem } from "./common";

const IngestAnswerSchema = z
  .object({
    status: z.enum(["accepted", "duplicate", "updated", "stale"]).openapi({
      description:
        "accepted: a new conversion; duplicate: already recorded (the original answer, replayed); updated: a status change; stale: older than the recorded state, kept in history only.",
    }),
    event_id: z.string().openapi({ example: "evt_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
    network_id: z.string(),
    transaction_id: z.string(),
    conversion_status: z.enum(["pending", "approved", "paid", "declined", "reversed"]),
  })
  .openapi("IngestAnswer");

const signatureHeaders = z.object({
  "webhook-id": z
    .string()
    .openapi({ description: "Unique id of this message.", example: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W" }),
  "webhook-timestamp": z
    .string()
    .openapi({ description: "Unix seconds; within 300 s of the hub's clock.", example: "1764246896" }),
  "webhook-signature": z.string().openapi({
    description: "Space-separated `v1,<base64 HMAC-SHA256>` over `<webhook-id>.<webhook-timestamp>.<raw body>`.",
  }),
});

export const ingestRoute = createRoute({
  method: "post",
  path: "/v1/postbacks/{network_id}",
  tags: ["Postbacks"],
  summary: "Post a conversion",
  description:
    "Signed with the Standard Webhooks scheme using the network's secret. Idempotent per transaction_id: repeat a postback freely.",
  request: {
    params: z.object({
      network_id: z.string().openapi({ param: { name: "network_id", in: "path" }, example: "acme" }),
    }),
    headers: signatureHeaders,
    body: { required: true, content: { "application/json": { schema: PostbackSchema } } },
  },
  responses: {
    200: {
      description: "Recorded (or recognised as already recorded).",
      content: { "application/json": { schema: IngestAnswerSchema } },
    },
    400: problem("The body is not JSON."),
    401: problem("Missing or wrong signature, or a timestamp out of tolerance; `errors` names the failed check."),
    403: problem("The network is disabled."),
    404: problem("Unknown network."),
    409: problem("Contradicts the recorded conversion; `errors` names the differing fields."),
    413: problem("Body too large."),
    415: problem("Not application/json."),
    422: problem("Invalid fields; `errors` lists every one."),
  },
});

export function registerPostbackRoutes(app: App): void {
  app.openAPIRegistry.registerPath(ingestRoute);
  app.post("/v1/postbacks/:network_id", async (c) => {
    const config = configOf(c.env);
    const nowMs = Date.now();
    const source = {
      db: c.env.DB,
      encryptionKey: config.ENCRYPTION_KEY,
      ttlSeconds: config.NETWORK_CACHE_TTL_SECONDS,
      nowMs,
    };
    const answer = await ingestPostback(c.req.param("network_id"), c.req.raw, {
      nowMs,
      maxBodyBytes: config.MAX_BODY_BYTES,
      toleranceSeconds: config.SIGNATURE_TOLERANCE_SECONDS,
      loadNetwork: (id) => loadNetworkAuth(id, source),
      refreshNetwork: (id) => refreshNetworkAuth(id, source),
      conversion: (name) => c.env.CONVERSIONS.getByName(name),
    });
    if (answer.status === "duplicate") c.header("idempotent-replayed", "true");
    return c.json(answer, 200);
  });
}
