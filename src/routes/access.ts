/**
 * Admin API for access: API keys (created and rotated with the value shown once, expirable,
 * disabled and enabled, each with `last_used_at`) and the audit log of every change.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { issueApiKey, keyIsLive } from "../access/keys";
import { configOf } from "../config";
import { isSubjectScope, ScopeSchema } from "../domain/access";
import { ProblemError, validationFailed } from "../errors";
import { newId } from "../lib/bytes";
import {
  type ApiKeyRow,
  type AuditRow,
  apiKeyById,
  insertApiKey,
  listApiKeys,
  listAudit,
  rotateApiKey,
  updateApiKey,
} from "../storage/api-keys";
import { getNetwork } from "../storage/networks";
import { getPartner } from "../storage/partners";
import { principalOf } from "./admin-auth";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  definedOnly,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  TimestampSchema,
} from "./common";

const tags = ["Access"];

const ApiKeySchema = z
  .object({
    id: z.string().openapi({ example: "key_01jd2k3m4n5p6q7r8s9t0v1w2x" }),
    name: z.string(),
    scope: ScopeSchema,
    subject_id: z
      .string()
      .nullable()
      .openapi({ description: "The network (network key) or partner (partner key) it reaches; null otherwise." }),
    status: z
      .enum(["active", "disabled", "expired"])
      .openapi({ description: "Whether it works now: disabled by an operator, or past `expires_at`." }),
    prefix: z
      .string()
      .openapi({ description: "The value's first characters, to tell keys apart; never enough to use." }),
    created_at: z.string(),
    created_by: z.string().openapi({ description: "The key that created it (`admin_token` for ADMIN_TOKEN)." }),
    expires_at: z.string().nullable(),
    disabled_at: z.string().nullable(),
    rotated_at: z.string().nullable(),
    previous_expires_at: z
      .string()
      .nullable()
      .openapi({ description: "Until when the value replaced by the last rotation still works." }),
    last_used_at: z
      .string()
      .nullable()
      .openapi({ description: "When a request last authenticated with it (to the minute)." }),
  })
  .openapi("ApiKey");

const KeyValue = z.string().openapi({
  description:
    "The key itself, `phk_…`: shown only in this response, kept only as a hash. Send it as `Authorization: Bearer …`.",
  example: "phk_kM2wq3N8xT5vZ1rY7uP0aB4cD6eF9gH2jK5mN8pQ1sT",
});

const CreatedApiKeySchema = ApiKeySchema.extend({ key: KeyValue }).openapi("CreatedApiKey");

const FutureTimestamp = TimestampSchema.refine((value) => value > new Date().toISOString(), {
  error: "must be in the future",
});

const ApiKeyCreateSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100).openapi({ example: "Dana (on call)" }),
    scope: ScopeSchema,
    subject_id: z.string().max(64).optional().openapi({
      description: "Required for a network or partner key: the network's or partner's id; absent otherwise.",
    }),
    expires_at: FutureTimestamp.optional().openapi({
      description: "When it stops working (RFC 3339); never when omitted.",
    }),
  })
  .openapi("ApiKeyCreate", { example: { name: "Dana (on call)", scope: "operator" } });

const ApiKeyUpdateSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(100).optional(),
    expires_at: FutureTimestamp.nullable().optional().openapi({ description: "null: never expires." }),
    status: z
      .enum(["active", "disabled"])
      .optional()
      .openapi({ description: "Disable it (at once) or enable it again." }),
  })
  .openapi("ApiKeyUpdate", { example: { status: "disabled" } });

const RotateApiKeyBody = z
  .strictObject({
    grace_period_seconds: z
      .number()
      .int()
      .min(0)
      .max(7 * 86_400)
      .default(0)
      .openapi({ description: "How long the current value keeps working; 0 (the default): it stops at once." }),
  })
  .openapi("RotateApiKey");

const KeyParams = z.object({
  key_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "key_id", in: "path" }, example: "key_01jd2k3m4n5p6q7r8s9t0v1w2x" }),
});

const AuditEntrySchema = z
  .object({
    id: z.string(),
    at: z.string(),
    key_id: z.string(),
    key_name: z.string(),
    scope: ScopeSchema,
    action: z.string().openapi({ description: "The operation's id (`rotateNetworkSecret`, `replayDelivery`…)." }),
    method: z.string(),
    path: z.string(),
    target: z.record(z.string(), z.string()).openapi({ description: "The ids the action was on." }),
    status: z.number().int(),
    request_id: z.string(),
    via: z.enum(["api", "console"]),
  })
  .openapi("AuditEntry");

const notFound = problem("No such key.");

function toApiKey(row: ApiKeyRow, nowIso = new Date().toISOString()) {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    subject_id: row.subject_id,
    status:
      row.disabled_at !== null
        ? ("disabled" as const)
        : keyIsLive(row, nowIso)
          ? ("active" as const)
          : ("expired" as const),
    prefix: row.prefix,
    created_at: row.created_at,
    created_by: row.created_by,
    expires_at: row.expires_at,
    disabled_at: row.disabled_at,
    rotated_at: row.rotated_at,
    previous_expires_at: row.previous_expires_at,
    last_used_at: row.last_used_at,
  };
}

function toAuditEntry(row: AuditRow) {
  return { ...row, target: JSON.parse(row.target) as Record<string, string> };
}

function missing(keyId: string): ProblemError {
  return new ProblemError("not_found", `No API key "${keyId}".`, [{ location: "path.key_id", message: "not found" }]);
}

export function registerAccessRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/keys",
      operationId: "createApiKey",
      tags,
      summary: "Create an API key",
      description:
        "Answers with the key's value once (`key`); only its hash is kept. A network or partner key names its network or partner in `subject_id`.",
      request: { body: { required: true, content: { "application/json": { schema: ApiKeyCreateSchema } } } },
      responses: {
        201: { description: "Created.", content: { "application/json": { schema: CreatedApiKeySchema } } },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const subject = input.subject_id ?? null;
      if (isSubjectScope(input.scope) !== (subject !== null)) {
        throw validationFailed([
          {
            location: "body.subject_id",
            message: isSubjectScope(input.scope)
              ? `is required for a ${input.scope} key`
              : `is only for a network or partner key, not ${input.scope}`,
          },
        ]);
      }
      if (subject !== null) {
        const exists =
          input.scope === "network" ? await getNetwork(c.env.DB, subject) : await getPartner(c.env.DB, subject);
        if (!exists)
          throw validationFailed([{ location: "body.subject_id", message: `is not a known ${input.scope}` }]);
      }
      const issued = await issueApiKey(configOf(c.env).ENCRYPTION_KEY);
      const row: ApiKeyRow = {
        id: newId("key"),
        name: input.name,
        scope: input.scope,
        subject_id: subject,
        prefix: issued.prefix,
        created_at: new Date().toISOString(),
        created_by: principalOf(c).key_id,
        expires_at: input.expires_at ?? null,
        disabled_at: null,
        rotated_at: null,
        last_used_at: null,
        previous_expires_at: null,
      };
      await insertApiKey(c.env.DB, row, issued.hash);
      return c.json({ ...toApiKey(row), key: issued.value }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/keys",
      operationId: "listApiKeys",
      tags,
      summary: "List API keys",
      description: "Oldest first, never their values.",
      request: {
        query: PaginationQuerySchema.extend({
          scope: ScopeSchema.optional(),
          subject_id: z.string().max(64).optional(),
        }),
      },
      responses: {
        200: {
          description: "A page of keys.",
          content: { "application/json": { schema: listOf(ApiKeySchema, "ApiKeyList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, ...filter } = c.req.valid("query");
      const after = decodeCursor(cursor, 1)?.[0];
      const rows = await listApiKeys(c.env.DB, { ...filter, ...(after ? { after } : {}) }, limit + 1);
      const now = new Date().toISOString();
      return c.json(
        page(
          rows,
          limit,
          (row) => toApiKey(row, now),
          (row) => [row.id],
        ),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/keys/{key_id}",
      operationId: "getApiKey",
      tags,
      summary: "Get an API key",
      request: { params: KeyParams },
      responses: {
        200: { description: "The key.", content: { "application/json": { schema: ApiKeySchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { key_id } = c.req.valid("param");
      const row = await apiKeyById(c.env.DB, key_id);
      if (!row) throw missing(key_id);
      return c.json(toApiKey(row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/keys/{key_id}",
      operationId: "updateApiKey",
      tags,
      summary: "Rename, re-date, disable or enable an API key",
      description: "Disabling takes effect on the next request, console sessions included.",
      request: {
        params: KeyParams,
        body: { required: true, content: { "application/json": { schema: ApiKeyUpdateSchema } } },
      },
      responses: {
        200: { description: "The key.", content: { "application/json": { schema: ApiKeySchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { key_id } = c.req.valid("param");
      const { status, ...rest } = definedOnly(c.req.valid("json"));
      if (status === "disabled" && key_id === principalOf(c).key_id) {
        throw validationFailed([
          { location: "body.status", message: "cannot disable the key this request is made with" },
        ]);
      }
      const patch = {
        ...rest,
        ...(status === undefined ? {} : { disabled_at: status === "disabled" ? new Date().toISOString() : null }),
      };
      const row = await updateApiKey(c.env.DB, key_id, patch);
      if (!row) throw missing(key_id);
      return c.json(toApiKey(row), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/keys/{key_id}/rotate",
      operationId: "rotateApiKey",
      tags,
      summary: "Rotate an API key",
      description:
        "A new value, shown once; the current one stops at once, or after `grace_period_seconds`. Console sessions signed in with the key end.",
      request: {
        params: KeyParams,
        body: { required: false, content: { "application/json": { schema: RotateApiKeyBody } } },
      },
      responses: {
        200: {
          description: "The key and its new value.",
          content: { "application/json": { schema: CreatedApiKeySchema } },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { key_id } = c.req.valid("param");
      const grace = c.req.valid("json")?.grace_period_seconds ?? 0;
      const issued = await issueApiKey(configOf(c.env).ENCRYPTION_KEY);
      const nowMs = Date.now();
      const row = await rotateApiKey(
        c.env.DB,
        key_id,
        issued.hash,
        issued.prefix,
        new Date(nowMs).toISOString(),
        new Date(nowMs + grace * 1000).toISOString(),
      );
      if (!row) throw missing(key_id);
      return c.json({ ...toApiKey(row), key: issued.value }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit",
      operationId: "listAuditLog",
      tags,
      summary: "Read the audit log",
      description:
        "Newest first: every change made through the admin API or the console (create, update, rotate, disable, replay, erase…), with the key that made it. Never a request's body.",
      request: {
        query: PaginationQuerySchema.extend({
          key_id: z.string().max(64).optional(),
          action: z.string().max(64).optional().openapi({ description: "An operation id, e.g. `replayDelivery`." }),
          since: TimestampSchema.optional().openapi({ description: "At or after (RFC 3339)." }),
          until: TimestampSchema.optional().openapi({ description: "Before (RFC 3339)." }),
        }),
      },
      responses: {
        200: {
          description: "A page of entries.",
          content: { "application/json": { schema: listOf(AuditEntrySchema, "AuditLog") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, ...filter } = c.req.valid("query");
      const before = decodeCursor(cursor, 1)?.[0];
      const rows = await listAudit(c.env.DB, { ...filter, ...(before ? { before } : {}) }, limit + 1);
      return c.json(
        page(rows, limit, toAuditEntry, (row) => [row.id]),
        200,
      );
    },
  );
}
