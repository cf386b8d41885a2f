/** The HTTP app: request ids, problem responses for every error, the routes, the OpenAPI document. */
import { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { type FieldError, type ProblemCode, ProblemError, problemResponse, validationProblem } from "./errors";
import { requireAdmin } from "./routes/admin-auth";
import type { AppEnv } from "./routes/common";
import { registerConversionProofRoute } from "./routes/conversion-proof";
import { registerConversionRoutes } from "./routes/conversions";
import { registerDeliveryRoutes } from "./routes/deliveries";
import { registerDocsRoutes } from "./routes/docs";
import { registerHealthRoutes } from "./routes/health";
import { registerNetworkRoutes } from "./routes/networks";
import { registerPartnerRoutes } from "./routes/partners";
import { registerPostbackRoutes } from "./routes/postbacks";
import { registerRequestRoutes } from "./routes/requests";

const TARGET_LOCATIONS: Record<string, string> = { json: "body", query: "query", param: "path", header: "header" };

export function createApp(): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) throw validationProblem(TARGET_LOCATIONS[result.target] ?? result.target, result.error);
    },
  });

  app.use(async (c, next) => {
    const requestId = rayId(c.req.header("cf-ray")) ?? crypto.randomUUID();
    c.set("requestId", requestId);
    await next();
    c.header("x-request-id", requestId);
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
    console.error(
      JSON.stringify({
        message: "unhandled error",
        request_id: requestId,
        path: c.req.path,
        error: String(error),
        stack: error.stack,
      }),
    );
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

  for (const resource of ["networks", "conversions", "partners", "deliveries", "requests"]) {
    app.use(`/v1/${resource}`, requireAdmin);
    app.use(`/v1/${resource}/*`, requireAdmin);
  }

  registerHealthRoutes(app);
  registerPostbackRoutes(app);
  registerNetworkRoutes(app);
  registerConversionRoutes(app);
  registerConversionProofRoute(app);
  registerPartnerRoutes(app);
  registerDeliveryRoutes(app);
  registerRequestRoutes(app);
  registerDocsRoutes(app);

  app.openAPIRegistry.registerComponent("securitySchemes", "adminToken", {
    type: "http",
    scheme: "bearer",
    description: "The hub's ADMIN_TOKEN secret.",
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Postback Hub",
      version: "1.0.0",
      description:
        "Networks post conversions (signed JSON, or affiliate GET postbacks with a token or a signed query); the hub deduplicates them per transaction, records them and relays them to partners. Errors are RFC 9457 problem+json with a stable `code`.",
    },
  });
  return app;
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
