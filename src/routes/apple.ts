/**
 * Where Apple's devices post SKAdNetwork and AdAttributionKit postbacks (docs/apple-postbacks.md):
 * Apple's well-known paths, which find the network by the signed ad network id, and a per-network
 * path for a hub that an ad network forwards to or registers by network. Apple's signature in the
 * body is the credential; documented from the zod schemas, handled by hand like every postback
 * route (the body is verified as it came).
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { AdAttributionKitStanzaSchema } from "../domain/adattributionkit";
import { IngestAnswerSchema } from "../domain/conversion";
import { SkadnetworkPostbackSchema } from "../domain/skadnetwork";
import { ingestApple } from "../ingest/apple";
import { explainApple } from "../ingest/apple-explain";
import { spendRateLimit } from "../ingest/ingest";
import { principalOf } from "./admin-auth";
import { type App, problem, RATE_LIMITED_HEADERS } from "./common";
import { appleIngestDeps, explainDeps } from "./ingest-deps";
import { traceInbound } from "./postbacks";

/** Apple's well-known paths: the developer-copy paths Apple fixes, served for ad networks too. */
export const APPLE_WELL_KNOWN_PATHS = {
  skadnetwork: "/.well-known/skadnetwork/report-attribution/",
  adattributionkit: "/.well-known/appattribution/report-attribution/",
} as const;

const NetworkPath = z.object({
  network_id: z.string().openapi({ param: { name: "network_id", in: "path" }, example: "acme-ads" }),
});

const tags = ["Apple postbacks"];

const answered = {
  description:
    "Recorded (or recognised as already recorded: the original answer, replayed). Apple's device stops retrying on a 200.",
  content: { "application/json": { schema: IngestAnswerSchema } },
};

const refusals = {
  400: problem("The body is not JSON."),
  401: problem(
    "Apple's signature does not verify (or cannot be verified: SKAdNetwork 1.0 and 2.0 are P-192); `errors` gives the reason.",
  ),
  403: problem("The network is disabled, or does not receive Apple's postbacks for the signed ad network id."),
  404: problem("No network receives Apple's postbacks for the signed ad network id."),
  409: problem("Contradicts the recorded conversion (a repeat with different unsigned values)."),
  413: problem("Body too large."),
  422: problem("Not an SKAdNetwork postback or AdAttributionKit stanza; `errors` names every bad field."),
  429: { ...problem("Over the network's rate limit."), headers: RATE_LIMITED_HEADERS },
};

const SkadnetworkBody = z.union([SkadnetworkPostbackSchema, AdAttributionKitStanzaSchema]).openapi("ApplePostback", {
  description:
    "An SKAdNetwork install-validation postback (2.1 to 4.0), or an AdAttributionKit stanza (`jws-string` and its unsigned siblings), as Apple's device sends it.",
});

const SKADNETWORK_EXAMPLE = {
  version: "3.0",
  "ad-network-id": "example123.skadnetwork",
  "campaign-id": 42,
  "transaction-id": "6aafb7a5-0170-41b5-bbe4-fe71dedf1e28",
  "app-id": 525463029,
  "attribution-signature":
    "MEYCIQD5eq3AUlamORiGovqFiHWI4RZT/PrM3VEiXUrsC+M51wIhAPMANZA9c07raZJ64gVaXhB9+9yZj/X6DcNxONdccQij",
  redownload: true,
  "source-app-id": 1234567891,
  "fidelity-type": 1,
  "conversion-value": 20,
  "did-win": true,
};

function body() {
  return {
    required: true,
    content: { "application/json": { schema: SkadnetworkBody, example: SKADNETWORK_EXAMPLE } },
  };
}

export function registerAppleRoutes(app: App): void {
  for (const [framework, path] of Object.entries(APPLE_WELL_KNOWN_PATHS)) {
    app.openAPIRegistry.registerPath(
      createRoute({
        method: "post",
        path,
        operationId: framework === "skadnetwork" ? "postSkadnetworkPostback" : "postAdAttributionKitPostback",
        tags,
        summary:
          framework === "skadnetwork" ? "Receive an SKAdNetwork postback" : "Receive an AdAttributionKit postback",
        description:
          "Apple's well-known path: the network is the one whose `apple.ad_network_ids` holds the postback's signed ad network id. Either format is taken at either path. Apple's signature is the credential; the postback becomes a conversion (see docs/apple-postbacks.md).",
        security: [],
        request: { body: body() },
        responses: { 200: answered, ...refusals },
      }),
    );
  }
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/postbacks/{network_id}/apple",
      operationId: "postApplePostback",
      tags,
      summary: "Receive an Apple postback for a network",
      description:
        "For a hub that serves several ad networks under one domain, or an ad network that forwards Apple's postbacks as they came: the postback's signed ad network id must be one of this network's `apple.ad_network_ids`.",
      security: [],
      request: { params: NetworkPath, body: body() },
      responses: { 200: answered, ...refusals },
    }),
  );
  const receive = (networkId: (c: Context) => string | null) => async (c: Context) => {
    const { answer } = await ingestApple(c.req.raw, appleIngestDeps(c), networkId(c));
    if (answer.status === "duplicate") c.header("idempotent-replayed", "true");
    return c.json(answer, 200);
  };
  for (const path of Object.values(APPLE_WELL_KNOWN_PATHS)) {
    app.use(path, traceInbound);
    app.post(
      path,
      receive(() => null),
    );
    // Without the trailing slash too: a registration that dropped it still reaches the hub.
    app.use(path.slice(0, -1), traceInbound);
    app.post(
      path.slice(0, -1),
      receive(() => null),
    );
  }
  app.post(
    "/v1/postbacks/:network_id/apple",
    receive((c) => c.req.param("network_id") ?? ""),
  );
}

/**
 * Explain, on the admin API (guarded by construction): the operator's keys, or the network's own
 * network key; Apple's signature alone does not open it, since it shows the partners' verdicts.
 */
export function registerAppleExplainRoute(admin: App): void {
  admin.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/postbacks/{network_id}/apple/explain",
      operationId: "explainApplePostback",
      tags,
      summary: "Explain an Apple postback (dry run)",
      description:
        "Send the postback as Apple sent it, with a hub key (the operator's, or this network's own network key). Answers the signed string rebuilt (SKAdNetwork) or the JWS's kid and signed payload (AdAttributionKit), the verdict and its reason, whether this network receives the ad network id, did-win, the source and what it maps to, the hub's postback, the dedupe decision, the attribution and the partners, as POST /v1/postbacks/{network_id}/explain does. Stores and sends nothing.",
      request: { params: NetworkPath, body: body() },
      responses: {
        200: {
          description: "Each step's outcome.",
          content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
        },
        404: problem("Unknown network."),
      },
    }),
  );
  // Documented from the schemas above, handled by hand: the body is read as Apple sent it.
  admin.post("/v1/postbacks/:network_id/apple/explain", async (c) => {
    const networkId = c.req.param("network_id");
    // The guard let in the operator's keys, or this network's own network key.
    const caller = principalOf(c).scope === "network" ? "network" : "operator";
    const trace = c.get("inbound");
    if (trace) trace.skip = true;
    const deps = { ...appleIngestDeps(c), ...explainDeps(c, caller) };
    // The operator's dry runs are not the network's traffic; a network's own key is.
    if (caller === "network") await spendRateLimit(networkId, 1, deps);
    const explanation = await explainApple(networkId, c.req.raw, deps);
    return c.json(explanation, 200);
  });
}
