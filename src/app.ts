/**
 * The HTTP app: request ids, problem responses for every error, the public and network routes, the
 * admin API on a sub-app that guards every route registered on it, the OpenAPI document, /docs and
 * the operator console (/console).
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { ACCESS, type Access, scopesOf } from "./access/policy";
import { createConsoleApp } from "./console/app";
import { type FieldError, type ProblemCode, ProblemError, problemResponse, validationProblem } from "./errors";
import { logLine } from "./lib/log";
import { registerAccessRoutes } from "./routes/access";
import { requireAccess } from "./routes/admin-auth";
import { registerAlertChannelRoutes } from "./routes/alert-channels";
import { registerAlertRoutes } from "./routes/alerts";
import { registerAppleExplainRoute, registerAppleRoutes } from "./routes/apple";
import { registerClickRoutes } from "./routes/clicks";
import { ADMIN_SECURITY, type App, type AppEnv, problem, TARGET_LOCATIONS } from "./routes/common";
import { registerConversionDeliveriesRoute } from "./routes/conversion-deliveries";
import { registerConversionProofRoute } from "./routes/conversion-proof";
import { registerConversionRoutes } from "./routes/conversions";
import { registerDeadLetterRoutes } from "./routes/dead-letters";
import { registerDeliveryRoutes } from "./routes/deliveries";
import { registerDocsRoutes } from "./routes/docs";
import { documentRequestIds, OPENAPI_DOCUMENT, registerOpenApiComponents } from "./routes/docs-document";
import { registerErasureRoutes } from "./routes/erasures";
import { registerHealthRoutes } from "./routes/health";
import { registerMetricsRoutes } from "./routes/metrics";
import { registerNetworkRoutes } from "./routes/networks";
import { registerOfferRoutes } from "./routes/offers";
import { registerPartnerRoutes } from "./routes/partners";
import { registerPixelRoutes } from "./routes/pixel";
import { registerPostbackRoutes } from "./routes/postbacks";
import { registerReconciliationRoutes } from "./routes/reconciliations";
import { registerReplayRoutes } from "./routes/replays";
import { registerNetworkRequestLogRoute, registerRequestRoutes } from "./routes/requests";
import { registerStatsRoutes } from "./routes/stats";

/** An app with the hub's validation hook: the root and every sub-app answer bad input the same way. */
function newApp(): App {
  return new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationProblem(TARGET_LOCATIONS[result.target] ?? result.target, result.error);
    },
  });
}

const POSTBACK_PATH = /^\/v1\/postbacks\/([^/]+)/;

function safeDecode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/**
 * The request's log line: what Workers Logs is searched by (docs/troubleshooting.md, "Logs"). The
 * path only, never the query (a GET postback's token or signature is in it); the route as
 * registered; the network of a postback route; the verdict (the decision, or the problem's code).
 * The duration is the Worker's clock: it moves on I/O, so it is the time spent waiting, not CPU.
 */
function requestLogFields(c: Context<AppEnv>, requestId: string, startedAtMs: number) {
  const matched = c.req.matchedRoutes.filter((route) => route.method !== "ALL").at(-1)?.path ?? null;
  const error = c.error;
  const verdict =
    c.get("inbound")?.verdict ??
    (error instanceof ProblemError ? error.code : error ? "internal_error" : c.res.status >= 400 ? "rejected" : null);
  const network = POSTBACK_PATH.exec(c.req.path)?.[1];
  return {
    message: "request",
    request_id: requestId,
    method: c.req.method,
    route: matched,
    path: c.req.path,
    status: c.res.status,
    ...(network ? { network_id: safeDecode(network) } : {}),
    ...(verdict ? { verdict } : {}),
    duration_ms: Date.now() - startedAtMs,
  };
}

/**
 * `registerAdmin` puts the admin routes on the admin sub-app and `access` says who may call each;
 * tests pass their own to prove the guard.
 */
export function createApp(
  registerAdmin: (admin: App) => void = registerAdminRoutes,
  access: Readonly<Record<string, Access>> = ACCESS,
): App {
  const app = newApp();

  app.use(async (c, next) => {
    const requestId = rayId(c.req.header("cf-ray")) ?? crypto.randomUUID();
    c.set("requestId", requestId);
    const startedAtMs = Date.now();
    await next();
    c.header("x-request-id", requestId);
    logLine("info", requestLogFields(c, requestId, startedAtMs));
  });

  app.onError((error, c) => {
    const requestId = c.get("requestId") ?? crypto.randomUUID();
    if (error instanceof ProblemError) {
      return problemResponse(error.code, error.message, requestId, error.errors, error.headers);
    }
    if (error instanceof HTTPException && error.status < 500) {
      const { code, detail, errors } = frameworkRejection(error.status);
      return problemResponse(code, detail, requestId, errors);
    }
    logLine("error", {
      message: "unhandled error",
      request_id: requestId,
      path: c.req.path,
      error: String(error),
      stack: error.stack,
    });
    return problemResponse(
      "internal_error",
      "Something went wrong on our side; quote the request_id when you report it.",
      requestId,
    );
  });

  app.notFound((c) =>
    problemResponse(
      "not_found",
      `No route for ${c.req.method} ${c.req.path}.`,
      c.get("requestId") ?? crypto.randomUUID(),
    ),
  );

  // Public and network-authenticated routes: each checks its own credentials (or needs none).
  registerHealthRoutes(app);
  registerPostbackRoutes(app);
  registerAppleRoutes(app);
  registerClickRoutes(app);
  registerPixelRoutes(app);
  registerNetworkRequestLogRoute(app);
  app.route("/", createAdminApp(registerAdmin, access));

  registerOpenApiComponents(app);
  documentRequestIds(app);
  app.doc31("/openapi.json", OPENAPI_DOCUMENT);
  registerDocsRoutes(app);
  // The operator console (docs/console.md): HTML pages with sessions of their own, outside the document.
  app.route("/console", createConsoleApp());
  return app;
}

/** Every operator route. A route is admin because it is registered here, and only then. */
export function registerAdminRoutes(admin: App): void {
  registerNetworkRoutes(admin);
  registerAppleExplainRoute(admin);
  registerConversionRoutes(admin);
  registerConversionProofRoute(admin);
  registerConversionDeliveriesRoute(admin);
  registerPartnerRoutes(admin);
  registerOfferRoutes(admin);
  registerDeliveryRoutes(admin);
  registerReplayRoutes(admin);
  registerStatsRoutes(admin);
  registerReconciliationRoutes(admin);
  registerMetricsRoutes(admin);
  registerAlertRoutes(admin);
  registerAlertChannelRoutes(admin);
  registerDeadLetterRoutes(admin);
  registerRequestRoutes(admin);
  registerErasureRoutes(admin);
  registerAccessRoutes(admin);
}

/**
 * The admin API, guarded by construction: each route registered on it runs `requireAccess` before
 * anything else (its validators included, so a stranger learns nothing from a 422) with the
 * operation's entry in access/policy.ts (a route without one stops the app from starting), and its
 * operation declares the apiKey security and its scopes in the document. Hono copies a sub-app's
 * `use("*", …)` onto every path of the parent when mounted at "/", which would guard /health and
 * the postback routes too, so the guard goes on each of the sub-app's own method and path instead.
 */
export function createAdminApp(
  registerAdmin: (admin: App) => void = registerAdminRoutes,
  policy: Readonly<Record<string, Access>> = ACCESS,
): App {
  const routes = newApp();
  registerAdmin(routes);
  const guards = new Map<string, ReturnType<typeof requireAccess>>();
  for (const definition of routes.openAPIRegistry.definitions) {
    if (definition.type !== "route") continue;
    const { route } = definition;
    const name = `${route.method.toUpperCase()} ${route.path}`;
    const declared = JSON.stringify(route.security ?? ADMIN_SECURITY);
    if (declared !== JSON.stringify(ADMIN_SECURITY)) {
      throw new Error(`${name} is an admin route but declares security ${declared}`);
    }
    const access = route.operationId === undefined ? undefined : policy[route.operationId];
    if (!access || route.operationId === undefined) {
      throw new Error(`${name} (${route.operationId}) has no entry in access/policy.ts: say which scopes may call it`);
    }
    const scopes = `Scopes: ${scopesOf(access).join(", ")}.`;
    definition.route = {
      ...route,
      description: route.description ? `${route.description}\n\n${scopes}` : scopes,
      security: ADMIN_SECURITY,
      responses: {
        401: problem("Missing, wrong, disabled or expired key."),
        403: problem("The key's scope does not reach this operation, or this network's or partner's records."),
        ...route.responses,
      },
    };
    // OpenAPI's {param} is Hono's :param.
    guards.set(
      `${route.method.toUpperCase()} ${route.path.replace(/\{([^}]+)\}/g, ":$1")}`,
      requireAccess(route.operationId, access),
    );
  }
  const admin = newApp();
  const guarded = new Set<string>();
  for (const { method, path } of routes.routes) {
    const key = `${method} ${path}`;
    if (guarded.has(key)) continue;
    const guard = guards.get(key);
    if (!guard) throw new Error(`${key} is on the admin app without an OpenAPI definition: register it with openapi()`);
    guarded.add(key);
    admin.on(method, path, guard);
  }
  admin.route("/", routes);
  return admin;
}

/**
 * Cloudflare's ray id names the request in its logs too, so it is the request id when it looks
 * like one (16 hex digits and a data centre); anything else a client could have sent itself
 * (wrangler dev passes the header through), so it gets a fresh id instead.
 */
function rayId(header: string | undefined): string | null {
  return header !== undefined && /^[0-9a-f]{16}(-[A-Z]{3,4})?$/.test(header) ? header : null;
}

/** Hono and its validators reject some requests themselves (a body that does not parse, a
 * content type a route does not declare); they answer in the same problem shape as ours. */
function frameworkRejection(status: number): { code: ProblemCode; detail: string; errors: FieldError[] } {
  switch (status) {
    case 400:
      return {
        code: "malformed_json",
        detail: "The body is not valid JSON.",
        errors: [{ location: "body", message: "must be a JSON object" }],
      };
    case 413:
      return { code: "payload_too_large", detail: "The body is too large.", errors: [] };
    case 415:
      return {
        code: "unsupported_media_type",
        detail: "Send the body as Content-Type: application/json.",
        errors: [{ location: "header.content-type", message: "must be application/json" }],
      };
    default:
      return { code: "invalid_request", detail: `The request was rejected (HTTP ${status}).`, errors: [] };
  }
}
