/**
 * The one error module: a closed set of error codes, their HTTP statuses, and the RFC 9457
 * `application/problem+json` writer that every rejection goes through.
 */
import type { z } from "zod";

export const PROBLEM_CODES = {
  malformed_json: { status: 400, title: "The body is not valid JSON" },
  invalid_request: { status: 400, title: "The request is invalid" },
  unauthorized: { status: 401, title: "Authentication failed" },
  forbidden: { status: 403, title: "Outside the key's scope" },
  csrf_failed: { status: 403, title: "The form's CSRF token is missing or wrong" },
  network_disabled: { status: 403, title: "The network is disabled" },
  ip_not_allowed: { status: 403, title: "The client address is not allowed" },
  forbidden_origin: { status: 403, title: "The page's origin is not allowed" },
  not_found: { status: 404, title: "Not found" },
  network_not_found: { status: 404, title: "Unknown network" },
  already_exists: { status: 409, title: "Already exists" },
  partner_disabled: { status: 409, title: "The partner is disabled" },
  invalid_state: { status: 409, title: "Not possible in the current state" },
  conversion_conflict: { status: 409, title: "The postback conflicts with the recorded conversion" },
  offer_paused: { status: 410, title: "The offer is paused" },
  payload_too_large: { status: 413, title: "The body is too large" },
  unsupported_media_type: { status: 415, title: "Unsupported content type" },
  rate_limited: { status: 429, title: "Too many requests" },
  validation_failed: { status: 422, title: "The request failed validation" },
  not_replayable: { status: 422, title: "The message cannot be replayed" },
  internal_error: { status: 500, title: "Internal error" },
  misconfigured: { status: 500, title: "The hub is misconfigured" },
  storage_unavailable: { status: 503, title: "Storage is unavailable" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export interface FieldError {
  /** Where the problem is: `body.amount`, `header.webhook-signature`, `query.limit`, `path.network_id`. */
  location: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  request_id: string;
  errors: FieldError[];
}

/** Thrown anywhere below a route; `app.onError` turns it into a problem response. */
export class ProblemError extends Error {
  readonly code: ProblemCode;
  readonly errors: FieldError[];
  readonly headers: Record<string, string>;

  constructor(code: ProblemCode, detail: string, errors: FieldError[] = [], headers: Record<string, string> = {}) {
    super(detail);
    this.name = "ProblemError";
    this.code = code;
    this.errors = errors;
    this.headers = headers;
  }

  get status(): number {
    return PROBLEM_CODES[this.code].status;
  }
}

export function problemBody(code: ProblemCode, detail: string, requestId: string, errors: FieldError[] = []): Problem {
  const { status, title } = PROBLEM_CODES[code];
  return {
    type: `https://postback-hub.dev/problems/${code.replaceAll("_", "-")}`,
    title,
    status,
    detail,
    code,
    request_id: requestId,
    errors,
  };
}

export function problemResponse(
  code: ProblemCode,
  detail: string,
  requestId: string,
  errors: FieldError[] = [],
  headers: Record<string, string> = {},
): Response {
  const body = problemBody(code, detail, requestId, errors);
  return new Response(JSON.stringify(body), {
    status: body.status,
    headers: {
      "content-type": "application/problem+json",
      "x-request-id": requestId,
      ...headers,
    },
  });
}

/** Turns zod issues into field errors: `{ location: "body.amount", message }`, one per issue. */
export function zodFieldErrors(prefix: string, error: z.ZodError): FieldError[] {
  const errors: FieldError[] = [];
  for (const issue of error.issues) {
    if (issue.code === "unrecognized_keys") {
      for (const key of issue.keys) {
        errors.push({
          location: joinLocation(prefix, [...issue.path, key]),
          message: "is not a known field; remove it or move it into meta",
        });
      }
      continue;
    }
    errors.push({ location: joinLocation(prefix, issue.path), message: issue.message });
  }
  return errors;
}

function joinLocation(prefix: string, path: readonly PropertyKey[]): string {
  const parts = path.map((part) => (typeof part === "number" ? `[${part}]` : String(part)));
  return [prefix, ...parts].join(".").replaceAll(".[", "[");
}

export function validationProblem(prefix: string, error: z.ZodError): ProblemError {
  return validationFailed(zodFieldErrors(prefix, error));
}

/** One 422 naming every field, whichever checks found the problems. */
export function validationFailed(errors: FieldError[]): ProblemError {
  const fields = [...new Set(errors.map((e) => e.location))].join(", ");
  return new ProblemError("validation_failed", `Fix these fields and send the request again: ${fields}.`, errors);
}
