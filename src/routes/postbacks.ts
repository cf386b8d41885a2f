/**
 * Where networks post conversions: a signed JSON body, an affiliate GET (or form POST) mapped from
 * its parameters, a batch of up to 100, and explain (a dry run). The routes are documented from
 * the zod schemas but handled by hand, because credentials cover the raw request: the body is
 * verified before it is parsed, never re-serialised.
 */
import { createRoute, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { authenticateToken, bearerToken } from "../access/keys";
import { configOf } from "../config";
import { isSubjectScope } from "../domain/access";
import { IngestAnswerSchema } from "../domain/conversion";
import { PostbackSchema } from "../domain/postback";
import { ProblemError } from "../errors";
import { explainPostback } from "../ingest/explain";
import { ingestBatch, ingestPostback, MAX_BATCH_EVENTS } from "../ingest/ingest";
import { logRequest, newTrace, type RequestFacts } from "../ingest/request-log";
import {
  type App,
  type AppEnv,
  NETWORK_BODY_SECURITY,
  NETWORK_QUERY_SECURITY,
  problem,
  RATE_LIMITED_HEADERS,
  withAdmin,
} from "./common";
import { explainDeps, ingestDeps } from "./ingest-deps";

/** The documented JSON postback: what "Try it" sends, and what test/docs.examples.test.ts posts. */
export const POSTBACK_EXAMPLE = {
  transaction_id: "ord_8812",
  status: "approved",
  amount: "29.99",
  currency: "USD",
  event_type: "purchase",
  campaign_id: "camp-987",
  click_id: "clk_1f3a9",
};

const NetworkPath = z.object({
  network_id: z.string().openapi({ param: { name: "network_id", in: "path" }, example: "acme" }),
});

// The credentials themselves (webhook-signature, x-postback-token, token, pb_sig) are the security
// schemes; these are the parameters that go with them.
const credentialHeaders = z.object({
  "webhook-id": z
    .string()
    .optional()
    .openapi({ description: "Standard Webhooks (`webhookSignature`): unique id of this message." }),
  "webhook-timestamp": z
    .string()
    .optional()
    .openapi({ description: "Standard Webhooks (`webhookSignature`): Unix seconds (±300 s)." }),
  "svix-id": z.string().optional().openapi({ description: "Svix's name for webhook-id (same scheme)." }),
  "svix-timestamp": z.string().optional().openapi({ description: "Svix's name for webhook-timestamp." }),
  "svix-signature": z.string().optional().openapi({ description: "Svix's name for webhook-signature." }),
  "x-postback-test": z.string().optional().openapi({
    description:
      '`1` or `true`: a test postback. Only with the token method: a header is outside every signature, so a signed postback marks a test with `"test": true` in its JSON body or a signed `pb_test=1` (401 otherwise).',
  }),
});

const rejections = {
  400: problem("The body is not JSON."),
  401: problem("Missing or wrong credentials, or a timestamp out of tolerance; `errors` names the failed check."),
  403: problem("The network is disabled, or the client address is not in its IP allowlist."),
  404: problem("Unknown network."),
  413: problem("Body too large."),
  415: problem("Not application/json (or form-encoded, for the parameter form)."),
  422: problem("Invalid fields; `errors` lists every one."),
  429: {
    ...problem("Over the network's rate limit; retry after `Retry-After` seconds."),
    headers: RATE_LIMITED_HEADERS,
  },
};

const success = {
  description:
    "Recorded (or recognised as already recorded). A network configured with a fixed answer (e.g. `OK`) gets that body instead, with the verdict in the `x-postback-status` header.",
  headers: {
    "idempotent-replayed": {
      description: "`true` when this postback was a duplicate: the answer is the original one, replayed.",
      schema: { type: "string" as const, enum: ["true"] },
    },
    "x-postback-status": {
      description: "With a fixed answer only: the verdict (accepted, duplicate, updated, stale).",
      schema: { type: "string" as const },
    },
    "x-event-id": { description: "With a fixed answer only: the event id.", schema: { type: "string" as const } },
  },
  content: { "application/json": { schema: IngestAnswerSchema } },
};

/** The signed query's parameters besides `pb_sig` (the `signedQuery` scheme), and the test marker. */
const SignedQueryParams = z.object({
  pb_id: z.string().optional().openapi({ description: "Signed query: a unique message id." }),
  pb_ts: z.string().optional().openapi({ description: "Signed query: Unix seconds (±300 s)." }),
  pb_test: z
    .string()
    .optional()
    .openapi({ description: "`1`: a test postback (a signed parameter, with a signed query)." }),
});

const BodyDigestParam = SignedQueryParams.extend({
  pb_body_sha256: z.string().optional().openapi({
    description:
      "Signed query with a JSON body: lowercase hex SHA-256 of the body bytes, among the signed parameters; required for a JSON body.",
  }),
});

/**
 * A GET postback's query: the tracker's parameters, documented under their canonical names (which
 * the generic mapping reads, besides aliases like txid and payout), and the signed query's. The
 * examples are the JSON example's conversion, so trying both gives one conversion and a duplicate.
 */
const GetPostbackQuery = SignedQueryParams.extend({
  transaction_id: z.string().optional().openapi({
    description:
      "The tracker's parameters, named as the network's mapping reads them; the generic preset also reads txid, payout, offer_id, subid and sub1…sub5, and status 1, 0 or -1.",
    example: POSTBACK_EXAMPLE.transaction_id,
  }),
  status: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.status }),
  amount: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.amount }),
  currency: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.currency }),
  event_type: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.event_type }),
  campaign_id: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.campaign_id }),
  click_id: z.string().optional().openapi({ example: POSTBACK_EXAMPLE.click_id }),
});

const tags = ["Postbacks"];

const QueryPostback = z.record(z.string(), z.string()).openapi("PostbackParameters", {
  description:
    "The tracker's parameters, mapped by the network's `mapping` (e.g. txid → transaction_id, payout → amount), plus credentials: `token`, or `pb_id`, `pb_ts`, `pb_sig` for a signed query; `pb_test=1` for a test.",
  example: { txid: "ord_8812", payout: "29.99", status: "1" },
});

const BatchBody = z.object({ events: z.array(PostbackSchema).min(1).max(MAX_BATCH_EVENTS) }).openapi("PostbackBatch");

const BatchResultSchema = z
  .object({
    results: z.array(
      z.object({
        index: z.number().int(),
        status: z.number().int().openapi({ description: "200, or 409/422 for this item only." }),
        answer: IngestAnswerSchema.optional(),
        code: z.string().optional(),
        detail: z.string().optional(),
        errors: z.array(z.object({ location: z.string(), message: z.string() })).optional(),
      }),
    ),
  })
  .openapi("PostbackBatchResult");

/**
 * Every request to a postback route leaves a trace in the inbound log, written after the answer:
 * the handlers fill the trace as the request goes through ingest, the verdict is the answer's.
 * HEAD (a link checker) has no effect and is not logged.
 */
export const traceInbound: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.req.method === "HEAD") return next();
  const trace = newTrace();
  const receivedAtMs = Date.now();
  c.set("inbound", trace);
  await next();
  const error = c.error;
  const facts: RequestFacts = {
    requestId: c.get("requestId"),
    networkId: trace.networkId ?? c.req.param("network_id") ?? "",
    route: routeOf(c.req.path),
    receivedAtMs,
    request: c.req.raw,
    status: c.res.status,
    problem:
      error instanceof ProblemError
        ? { code: error.code, errors: error.errors }
        : error
          ? { code: c.res.status >= 500 ? "internal_error" : "rejected", errors: [] }
          : null,
    trace,
  };
  const config = configOf(c.env);
  const caps = {
    authenticated: config.INBOUND_LOG_PER_MINUTE,
    unauthenticated: config.INBOUND_LOG_UNAUTHENTICATED_PER_MINUTE,
  };
  const sinks = {
    queue: c.env.REQUEST_LOG,
    strangers: async (networkId: string) => (await c.env.INBOUND_LOG_LIMITER.limit({ key: networkId })).success,
  };
  // A macrotask later: the answer has left before any of the log's work (a digest, a send) starts.
  c.executionCtx.waitUntil(afterAnswer().then(() => logRequest(facts, sinks, caps)));
};

function afterAnswer(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

function routeOf(path: string): RequestFacts["route"] {
  const parts = path.split("/").filter((part) => part !== "");
  const last = parts.at(-1);
  if (last === "batch" || last === "explain" || last === "requests") return last;
  return parts[0] === ".well-known" || last === "apple" ? "apple" : "postback";
}

export function registerPostbackRoutes(app: App): void {
  // One pattern: Hono's `/*` matches the bare path too, and a second registration would run it twice.
  app.use("/v1/postbacks/:network_id/*", traceInbound);
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/postbacks/{network_id}",
      operationId: "postPostback",
      tags,
      summary: "Post a conversion",
      description:
        "A JSON body, or an `application/x-www-form-urlencoded` body mapped like a GET, authenticated by one of the network's methods: Standard Webhooks headers over the raw body, its static token, or a signed query. Idempotent per transaction_id: repeat a postback freely.",
      security: NETWORK_BODY_SECURITY,
      request: {
        params: NetworkPath,
        query: BodyDigestParam,
        headers: credentialHeaders,
        body: {
          required: true,
          content: {
            "application/json": { schema: PostbackSchema, example: POSTBACK_EXAMPLE },
            "application/x-www-form-urlencoded": { schema: QueryPostback },
          },
        },
      },
      responses: {
        200: success,
        409: problem("Contradicts the recorded conversion; `errors` names the differing fields."),
        ...rejections,
      },
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "get",
      path: "/v1/postbacks/{network_id}",
      operationId: "postPostbackAsGet",
      tags,
      summary: "Post a conversion as an affiliate GET",
      description:
        "For trackers that fire a URL with macros: `?txid={txid}&payout={payout}&status={status}&token=…`. The network's mapping turns the parameters into a postback, which goes through the same validation, Durable Object and pipeline as a JSON postback.",
      security: NETWORK_QUERY_SECURITY,
      request: { params: NetworkPath, query: GetPostbackQuery, headers: credentialHeaders },
      responses: { 200: success, 409: problem("Contradicts the recorded conversion."), ...rejections },
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/postbacks/{network_id}/batch",
      operationId: "postPostbackBatch",
      tags,
      summary: "Post up to 100 conversions at once",
      description:
        "One authenticated JSON request; each event is decided on its own with per-item results, and one bad item does not reject the others.",
      security: NETWORK_BODY_SECURITY,
      request: {
        params: NetworkPath,
        query: BodyDigestParam,
        headers: credentialHeaders,
        body: {
          required: true,
          content: { "application/json": { schema: BatchBody, example: { events: [POSTBACK_EXAMPLE] } } },
        },
      },
      responses: {
        200: { description: "Per-item results.", content: { "application/json": { schema: BatchResultSchema } } },
        ...rejections,
      },
    }),
  );
  // Explain, GET and POST: documented here, handled by `explain` below.
  const explainResponses = {
    200: {
      description: "Each step's outcome.",
      content: { "application/json": { schema: z.record(z.string(), z.unknown()) } },
    },
    401: problem("Neither the admin token nor valid network credentials."),
    404: problem("Unknown network."),
    429: { ...problem("Over the network's rate limit."), headers: RATE_LIMITED_HEADERS },
  };
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "get",
      path: "/v1/postbacks/{network_id}/explain",
      operationId: "explainPostbackAsGet",
      tags,
      summary: "Explain how a GET postback would be handled (dry run)",
      description:
        "The GET form of explain: the same query string you would send to the postback URL. Answers as the POST form does: partners' rendered requests are shown with the admin token only.",
      security: withAdmin(NETWORK_QUERY_SECURITY),
      request: { params: NetworkPath, query: GetPostbackQuery, headers: credentialHeaders },
      responses: explainResponses,
    }),
  );
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "post",
      path: "/v1/postbacks/{network_id}/explain",
      operationId: "explainPostback",
      tags,
      summary: "Explain how a postback would be handled (dry run)",
      description:
        "Send exactly the request you would send to the postback URL (JSON, form, or as a GET to the same path), with the admin token in `Authorization` or the network's own valid credentials. Answers the authentication verdict (with the string that should have been signed), the mapping, validation errors, the dedupe decision against the current state, and the partners: for each, `notified` (whether a request would be sent now) and the `reason`. Only with the admin token does each partner also carry `request`, the rendered request (method, URL, headers, body) as it would be sent, and a reason that quotes the partner's template; a network explaining with its own credentials sees only the partners that could receive its events, as `partner_id`, `name`, `notified` and `reason`, never their URLs, bodies, headers or methods, which often hold the partner's API keys. Stores and sends nothing.",
      security: withAdmin(NETWORK_BODY_SECURITY),
      request: {
        params: NetworkPath,
        query: BodyDigestParam,
        headers: credentialHeaders,
        body: {
          required: false,
          content: {
            "application/json": { schema: PostbackSchema, example: POSTBACK_EXAMPLE },
            "application/x-www-form-urlencoded": { schema: QueryPostback },
          },
        },
      },
      responses: explainResponses,
    }),
  );

  const single = async (c: Context<AppEnv>) => {
    // Hono serves HEAD with the GET handler; HEAD has no side effects, so a tracker's link checker
    // gets an answer and nothing is recorded.
    if (c.req.method === "HEAD") return c.body(null, 204, { allow: "GET, POST" });
    const { answer, auth } = await ingestPostback(c.req.param("network_id") ?? "", c.req.raw, ingestDeps(c));
    if (answer.status === "duplicate") c.header("idempotent-replayed", "true");
    const fixed = auth.network.answer;
    if (fixed) {
      c.header("x-postback-status", answer.status);
      c.header("x-event-id", answer.event_id);
      c.header("content-type", `${fixed.content_type}; charset=utf-8`);
      return c.body(fixed.body, 200);
    }
    return c.json(answer, 200);
  };
  app.post("/v1/postbacks/:network_id", single);
  app.get("/v1/postbacks/:network_id", single);

  app.post("/v1/postbacks/:network_id/batch", async (c) => {
    const results = await ingestBatch(c.req.param("network_id"), c.req.raw, ingestDeps(c));
    return c.json({ results }, 200);
  });

  const explain = async (c: Context<AppEnv>) => {
    const networkId = c.req.param("network_id") ?? "";
    const caller = await explainCaller(c, networkId);
    const trace = c.get("inbound");
    // A dry run made with a hub key (the operator's, or the network's own) is not a postback request.
    if (trace && caller !== null) trace.skip = true;
    const explanation = await explainPostback(networkId, c.req.raw, explainDeps(c, caller));
    if (trace) trace.verdict = "explained";
    return c.json(explanation, 200);
  };
  app.post("/v1/postbacks/:network_id/explain", explain);
  app.get("/v1/postbacks/:network_id/explain", explain);
}

/**
 * Who asks for an explanation with a hub key: the operator (admin, operator or read-only: the
 * partners' rendered requests too), the network's own network key (the network's view, even when
 * the request's own credentials fail: that is what it is debugging), or nobody (null: the request's
 * own credentials decide). A key of another network, or a partner's, is refused outright.
 */
export async function explainCaller(c: Context<AppEnv>, networkId: string): Promise<"operator" | "network" | null> {
  const token = bearerToken(c.req.header("authorization"));
  if (token === undefined) return null;
  const principal = await authenticateToken(c.env, token);
  if (!principal) return null;
  if (principal.scope === "network" && principal.subject_id === networkId) return "network";
  if (!isSubjectScope(principal.scope)) return "operator";
  throw new ProblemError("forbidden", `This ${principal.scope} key may not explain postbacks of "${networkId}".`, [
    { location: "header.authorization", message: `is a ${principal.scope} key of ${principal.subject_id}` },
  ]);
}
