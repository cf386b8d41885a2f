/** What every route file shares: the app type, problem and list schemas, cursors, admin security. */
import { type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Principal } from "../domain/access";
import { isCalendarDate, RFC_3339 } from "../domain/postback";
import { PROBLEM_CODES, ProblemError } from "../errors";
import type { InboundTrace } from "../ingest/request-log";
import { fromBase64Url, toBase64Url, utf8 } from "../lib/bytes";

export interface AppEnv {
  Bindings: Env;
  /** `inbound`: the trace of a request to a postback route (see ingest/request-log.ts). */
  /** `principal`: who an admin route's caller is, set by its guard (routes/admin-auth.ts). */
  Variables: { requestId: string; inbound: InboundTrace | undefined; principal: Principal | undefined };
}

export type App = OpenAPIHono<AppEnv>;

/** Where a validator's target is, as a problem's `location` names it (`body.amount`, `path.offer_id`). */
export const TARGET_LOCATIONS: Record<string, string> = {
  json: "body",
  query: "query",
  param: "path",
  header: "header",
};

/** One way to authenticate: the named security schemes, all of them (an operation lists the ways). */
type SecurityRequirement = Record<string, string[]>;

/** An API key or the ADMIN_TOKEN. Only routes on the admin sub-app (src/app.ts) require it alone. */
export const ADMIN_SECURITY: SecurityRequirement[] = [{ apiKey: [] }];

/** A network's credentials for a request with a body: any one of them (the schemes: docs-document.ts). */
export const NETWORK_BODY_SECURITY: SecurityRequirement[] = [
  { webhookSignature: [] },
  { postbackToken: [] },
  { postbackTokenQuery: [] },
  { signedQuery: [] },
];

/** A network's credentials for a GET: Standard Webhooks signs a body, and a GET has none. */
export const NETWORK_QUERY_SECURITY: SecurityRequirement[] = [
  { postbackTokenQuery: [] },
  { postbackToken: [] },
  { signedQuery: [] },
];

/** The network's credentials, or the admin token instead (explain). */
export function withAdmin(security: readonly SecurityRequirement[]): SecurityRequirement[] {
  return [...ADMIN_SECURITY, ...security];
}

export const RATE_LIMITED_HEADERS = {
  "Retry-After": { description: "Seconds to wait before sending again.", schema: { type: "integer" as const } },
};

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(Object.keys(PROBLEM_CODES) as [keyof typeof PROBLEM_CODES, ...(keyof typeof PROBLEM_CODES)[]]),
    request_id: z.string(),
    errors: z.array(z.object({ location: z.string(), message: z.string() })),
  })
  .openapi("Problem");

export function problem(description: string) {
  return { description, content: { "application/problem+json": { schema: ProblemSchema } } };
}

/** The problem responses every admin route can give. */
export const ADMIN_PROBLEMS = {
  400: problem("A parameter is malformed."),
  401: problem("Missing, wrong, disabled or expired key."),
  403: problem("The key's scope does not reach this operation, or this network's or partner's records."),
  422: problem("A field failed validation; `errors` names each one."),
} as const;

export const PaginationQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).openapi({ description: "Page size (1 to 200)." }),
  cursor: z.string().max(512).optional().openapi({ description: "`next_cursor` of the previous page." }),
});

/**
 * A time in a query or body: RFC 3339 with its offset, a real calendar day, in 1970–9999 (so that
 * its UTC ISO form, which it is normalised to, compares as text with stored times). `Date.parse`
 * alone took "1" for 2001 and rolled 2026-02-31 over to March 3rd.
 */
export const TimestampSchema = z
  .string()
  .max(40)
  .refine((value) => RFC_3339.test(value) && isCalendarDate(value), {
    error: "must be an RFC 3339 timestamp with an offset, such as 2026-11-01T00:00:00Z",
    abort: true,
  })
  .refine(
    (value) => {
      const year = new Date(Date.parse(value)).getUTCFullYear();
      return year >= 1970 && year <= 9999;
    },
    { error: "must be between 1970 and 9999" },
  )
  .transform((value) => new Date(value).toISOString());

export function listOf<T extends z.ZodType>(item: T, name: string) {
  return z
    .object({
      data: z.array(item),
      next_cursor: z
        .string()
        .nullable()
        .openapi({ description: "Pass as `cursor` for the next page; null at the end." }),
    })
    .openapi(name);
}

export function encodeCursor(key: readonly string[]): string {
  return toBase64Url(utf8(JSON.stringify(key)));
}

/** Decodes a cursor made by `encodeCursor` with `size` parts; a forged or stale one is a 400. */
export function decodeCursor(cursor: string | undefined, size: number): string[] | null {
  if (cursor === undefined) return null;
  const bytes = fromBase64Url(cursor);
  try {
    const key: unknown = bytes ? JSON.parse(new TextDecoder().decode(bytes)) : null;
    if (Array.isArray(key) && key.length === size && key.every((part) => typeof part === "string")) {
      return key as string[];
    }
  } catch {
    // fall through to the problem below
  }
  throw invalidCursor();
}

export function invalidCursor(): ProblemError {
  return new ProblemError("invalid_request", "The cursor is not one this API issued; start again without it.", [
    { location: "query.cursor", message: "is not a valid cursor" },
  ]);
}

/** Builds a page from `limit + 1` rows: the extra row only says that there is a next page. */
export function page<Row, Item>(
  rows: Row[],
  limit: number,
  toItem: (row: Row) => Item,
  keyOf: (row: Row) => readonly string[],
): { data: Item[]; next_cursor: string | null } {
  const more = rows.length > limit;
  const shown = more ? rows.slice(0, limit) : rows;
  const last = shown[shown.length - 1];
  return {
    data: shown.map(toItem),
    next_cursor: more && last !== undefined ? encodeCursor(keyOf(last)) : null,
  };
}

/** A rotation of a network's or a partner's credential: how long the ones it replaces keep working. */
export const RotateCredentialBody = z
  .strictObject({
    grace_period_seconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .optional()
      .openapi({ description: "How long the previous ones keep working; the hub's default (24 h) when omitted." }),
  })
  .openapi("RotateCredential");

/** A PATCH body's fields that were sent (zod leaves absent optional keys undefined); null is sent. */
export function definedOnly<T extends Record<string, unknown>>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, value]) => value !== undefined)) as Partial<T>;
}
