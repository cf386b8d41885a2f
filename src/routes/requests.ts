/**
 * The inbound request log, read: by the operator (admin token) per network, one request by id, and
 * the counts of what was not logged one by one; and by a network, its own log, with its own token
 * or signed query ("why was my postback rejected?").
 */
import { createRoute, z } from "@hono/zod-openapi";
import { INBOUND_ROUTES } from "../domain/messages";
import { normalizeIdentifier } from "../domain/postback";
import { ProblemError, validationProblem } from "../errors";
import { prepare, spendRateLimit } from "../ingest/ingest";
import {
  getInboundRequest,
  type InboundRequestFilter,
  type InboundRequestRow,
  listInboundRequests,
  listUnlogged,
} from "../storage/requests";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  listOf,
  NETWORK_QUERY_SECURITY,
  PaginationQuerySchema,
  page,
  problem,
  RATE_LIMITED_HEADERS,
  TimestampSchema,
} from "./common";
import { ingestDeps } from "./ingest-deps";

const tags = ["Inbound log"];

const FieldErrorSchema = z.object({ location: z.string(), message: z.string() });

const InboundRequestSchema = z
  .object({
    request_id: z.string().openapi({ description: "The x-request-id (and problem request_id) of the answer." }),
    network_id: z.string(),
    received_at: z.string(),
    route: z.enum(INBOUND_ROUTES).openapi({ description: "postback, batch, explain, or requests (this log)." }),
    method: z.string(),
    auth_method: z.string().nullable().openapi({ description: "The method that verified, when one did." }),
    credential_id: z.string().nullable().openapi({ description: "Which secret or token verified (its id)." }),
    client_ip: z.string().nullable(),
    transaction_id: z.string().nullable(),
    test: z.boolean().nullable(),
    status: z.number().int().openapi({ description: "The HTTP status answered." }),
    verdict: z.string().openapi({
      description:
        "accepted, duplicate, updated, stale, batch, explained or listed for a 2xx; otherwise the problem code (unauthorized, validation_failed, …).",
    }),
    errors: z.array(FieldErrorSchema).openapi({ description: "The first field errors the answer named." }),
    items: z.number().int().nullable().openapi({ description: "Events in a batch." }),
    body_bytes: z.number().int(),
    body_sha256: z.string().nullable().openapi({ description: "Hex SHA-256 of the body received." }),
    excerpt: z
      .object({
        query: z.string().nullable(),
        headers: z.record(z.string(), z.string()),
        body: z.string().nullable(),
      })
      .openapi({ description: "The start of the request; token, pb_sig and signature headers read (redacted)." }),
  })
  .openapi("InboundRequest");

type InboundRequest = z.infer<typeof InboundRequestSchema>;

const RequestFilterQuery = PaginationQuerySchema.extend({
  verdict: z.string().max(64).optional().openapi({ description: "e.g. unauthorized, accepted." }),
  status: z.coerce.number().int().min(100).max(599).optional().openapi({ description: "HTTP status answered." }),
  since: TimestampSchema.optional().openapi({ description: "Received at or after (RFC 3339)." }),
  until: TimestampSchema.optional().openapi({ description: "Received before (RFC 3339)." }),
  transaction_id: z.string().min(1).max(128).transform(normalizeIdentifier).optional(),
  rejected: z
    .enum(["true", "false"], { error: "must be true or false" })
    .optional()
    .transform((value) => (value === undefined ? undefined : value === "true"))
    .openapi({ description: "`true`: only requests answered with an error (status ≥ 400); `false`: only the others." }),
});

const UnloggedSchema = z
  .object({
    network_id: z.string().nullable().openapi({ description: "null: requests to networks the hub does not know." }),
    minute: z.string(),
    requests: z.number().int(),
  })
  .openapi("UnloggedRequests");

function toInboundRequest(row: InboundRequestRow): InboundRequest {
  return {
    ...row,
    route: row.route as InboundRequest["route"],
    test: row.test === null ? null : row.test === 1,
    errors: JSON.parse(row.errors) as InboundRequest["errors"],
    excerpt: JSON.parse(row.excerpt) as InboundRequest["excerpt"],
  };
}

async function requestsPage(
  db: D1Database,
  filter: InboundRequestFilter,
  limit: number,
  cursor: string | undefined,
): Promise<{ data: InboundRequest[]; next_cursor: string | null }> {
  const after = decodeCursor(cursor, 2) as [string, string] | null;
  const rows = await listInboundRequests(db, filter, limit + 1, after);
  return page(rows, limit, toInboundRequest, (row) => [row.received_at, row.request_id]);
}

const NetworkPath = z.object({
  network_id: z
    .string()
    .max(63)
    .openapi({ param: { name: "network_id", in: "path" }, example: "acme" }),
});

const listDescription =
  "Newest first. Every request to a postback route of the network, rejections included, with its verdict; written moments after the answer. At most INBOUND_LOG_PER_MINUTE requests per network, minute and isolate are logged one by one (the rest are counted: GET /v1/requests/unlogged); kept INBOUND_LOG_RETENTION_DAYS days.";

/** The operator's reads of the inbound log (admin routes). */
export function registerRequestRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/networks/{network_id}/requests",
      operationId: "listInboundRequests",
      tags,
      summary: "List a network's inbound requests",
      description: listDescription,
      request: { params: NetworkPath, query: RequestFilterQuery },
      responses: {
        200: {
          description: "A page of requests.",
          content: { "application/json": { schema: listOf(InboundRequestSchema, "InboundRequestList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id } = c.req.valid("param");
      const { limit, cursor, ...filter } = c.req.valid("query");
      return c.json(await requestsPage(c.env.DB, { ...filter, network_id }, limit, cursor), 200);
    },
  );

  // Before /v1/requests/{request_id}, which would otherwise take "unlogged" for an id.
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/requests/unlogged",
      operationId: "listUnloggedRequests",
      tags,
      summary: "Count the requests not logged one by one",
      description:
        "Per network and minute, newest first: requests beyond an isolate's INBOUND_LOG_PER_MINUTE cap, and (network_id null) requests to networks the hub does not know, which are never stored one by one so that made-up ids cannot fill the log.",
      request: {
        query: PaginationQuerySchema.extend({
          network_id: z.string().max(63).optional(),
          since: TimestampSchema.optional().openapi({ description: "Minutes at or after (RFC 3339)." }),
          until: TimestampSchema.optional().openapi({ description: "Minutes before (RFC 3339)." }),
        }),
      },
      responses: {
        200: {
          description: "A page of counts.",
          content: { "application/json": { schema: listOf(UnloggedSchema, "UnloggedRequestsList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, ...filter } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listUnlogged(c.env.DB, filter, limit + 1, after);
      return c.json(
        page(
          rows,
          limit,
          (row) => ({ network_id: row.network_id || null, minute: row.minute, requests: row.unlogged }),
          (row) => [row.minute, row.network_id],
        ),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/requests/{request_id}",
      operationId: "getInboundRequest",
      tags,
      summary: "Get one inbound request",
      description: "By the request id a network quotes from its answer (`x-request-id`, or a problem's `request_id`).",
      request: {
        params: z.object({
          request_id: z
            .string()
            .max(128)
            .openapi({ param: { name: "request_id", in: "path" } }),
        }),
      },
      responses: {
        200: { description: "The request.", content: { "application/json": { schema: InboundRequestSchema } } },
        404: problem("Not logged (yet: it is written moments after the answer), pruned, or never seen."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { request_id } = c.req.valid("param");
      const row = await getInboundRequest(c.env.DB, request_id);
      if (!row) {
        throw new ProblemError("not_found", `No logged request "${request_id}".`, [
          { location: "path.request_id", message: "not found" },
        ]);
      }
      return c.json(toInboundRequest(row), 200);
    },
  );
}

/** A network's own inbound log: authenticated with the network's credentials, so not an admin route. */
export function registerNetworkRequestLogRoute(app: App): void {
  app.openAPIRegistry.registerPath(
    createRoute({
      method: "get",
      path: "/v1/postbacks/{network_id}/requests",
      operationId: "listOwnInboundRequests",
      tags,
      summary: "A network reads its own inbound log",
      description: `Authenticated like a GET postback, with the network's own token (\`token\` parameter or \`x-postback-token\` header) or a signed query over these parameters; counts against the network's rate limit. ${listDescription}`,
      security: NETWORK_QUERY_SECURITY,
      request: {
        params: NetworkPath,
        query: RequestFilterQuery.extend({
          pb_scope: z
            .literal("requests")
            .optional()
            .openapi({ description: "Required with a signed query, among the signed parameters." }),
          pb_id: z.string().optional().openapi({ description: "Signed query: a unique message id." }),
          pb_ts: z.string().optional().openapi({ description: "Signed query: Unix seconds (±300 s)." }),
        }),
      },
      responses: {
        200: {
          description: "A page of the network's requests.",
          content: { "application/json": { schema: listOf(InboundRequestSchema, "InboundRequestList") } },
        },
        401: problem("Missing or wrong credentials."),
        403: problem("The network is disabled, or the client address is not in its IP allowlist."),
        404: problem("Unknown network."),
        422: problem("A filter is malformed; `errors` names it."),
        429: { ...problem("Over the network's rate limit."), headers: RATE_LIMITED_HEADERS },
      },
    }),
  );
  app.get("/v1/postbacks/:network_id/requests", async (c) => {
    const networkId = c.req.param("network_id");
    const deps = ingestDeps(c);
    // Credentials first: a stranger learns nothing, not even which filters are malformed.
    await prepare(networkId, c.req.raw, deps, "requests");
    await spendRateLimit(networkId, 1, deps);
    const query = RequestFilterQuery.safeParse(c.req.query());
    if (!query.success) throw validationProblem("query", query.error);
    const trace = c.get("inbound");
    if (trace) trace.verdict = "listed";
    const { limit, cursor, ...filter } = query.data;
    return c.json(await requestsPage(c.env.DB, { ...filter, network_id: networkId }, limit, cursor), 200);
  });
}
