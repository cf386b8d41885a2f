/**
 * Admin API for partners: create (signing secret shown once), list, get, update, delete,
 * disable/enable (enabling resumes parked deliveries), rotate the signing secret, preview a
 * rendered request, and replay failed, dead or parked deliveries in a time range.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { invalidateClickPartner } from "../attribution/click-targets";
import { type Config, configOf } from "../config";
import { forgetPartnerKeys, partnerSigningKeys } from "../delivery/partner-keys";
import { DEFAULT_RETRY_SCHEDULE_SECONDS, validateRetrySchedule } from "../delivery/retry-policy";
import { lintBodyTemplate } from "../delivery/template";
import { lintUrlTemplate } from "../delivery/url-safety";
import { REPLAYABLE_STATES } from "../domain/delivery";
import { NETWORK_ID_PATTERN } from "../domain/network";
import {
  DEFAULT_BREAKER,
  DEFAULT_MAX_IN_FLIGHT,
  DELIVERY_ORDERS,
  MAX_IN_FLIGHT_LIMIT,
  MAX_PARTNER_TIMEOUT_MS,
  MAX_PER_SECOND_LIMIT,
  PARTNER_ROUTINGS,
  type Partner,
} from "../domain/partner";
import { AmountSchema, CONVERSION_STATUSES, PLATFORMS } from "../domain/postback";
import { type FieldError, validationFailed, zodFieldErrors } from "../errors";
import { newId } from "../lib/bytes";
import {
  disablePartnerNow,
  enablePartnerNow,
  newSigningSecret,
  partnerCoordinationOf,
  partnerNotFound,
  partnerView,
  partnerWarnings,
  previewPartner,
  REPLAY_LIMIT,
  replayPartnerDeliveries,
  rotatePartnerSigningSecret,
} from "../operations/partners";
import { deletePartner, getPartner, insertPartner, listPartners, updatePartner } from "../storage/partners";
import { requireAdminScope } from "./admin-auth";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  definedOnly,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  RotateCredentialBody,
  TimestampSchema,
} from "./common";

const tags = ["Partners"];
const RESERVED_HEADERS = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "webhook-id",
  "webhook-timestamp",
  "webhook-signature",
]);

const HeaderValue = z
  .string()
  .max(1024)
  .refine((value) => !/[\r\n\0]/.test(value), { error: "header values must not contain CR, LF or NUL" });

const FiltersSchema = z
  .strictObject({
    networks: z
      .array(z.string().regex(NETWORK_ID_PATTERN, { error: "must be a network id" }))
      .max(100)
      .optional(),
    campaign_ids: z.array(z.string().min(1).max(128)).max(500).optional(),
    statuses: z.array(z.enum(CONVERSION_STATUSES)).optional(),
    // Event types are stored lowercase, so filters match whatever case the operator typed.
    event_types: z
      .array(
        z
          .string()
          .min(1)
          .max(64)
          .transform((value) => value.toLowerCase()),
      )
      .max(50)
      .optional(),
    platforms: z.array(z.enum(PLATFORMS)).optional(),
  })
  .openapi("PartnerFilters", { description: "Which events the partner receives; an empty or absent list means all." });

const BreakerSettingsPatch = z
  .strictObject({
    window_seconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 86_400)
      .optional(),
    min_attempts: z.number().int().min(1).max(100_000).optional(),
    failure_percent: z.number().int().min(1).max(100).optional(),
    cooldown_seconds: z.number().int().min(1).max(86_400).optional(),
    disable_after_seconds: z
      .number()
      .int()
      .min(60)
      .max(90 * 86_400)
      .optional(),
  })
  .openapi("PartnerBreakerUpdate", {
    description:
      'Changes the given breaker settings (docs/partners-and-delivery.md, "Health"): over `window_seconds`, `min_attempts` attempts of which `failure_percent` % failed open it; a probe after `cooldown_seconds`; open for `disable_after_seconds`, the partner is disabled.',
  });

const BreakerSettingsSchema = z
  .object({
    window_seconds: z.number().openapi({ example: DEFAULT_BREAKER.window_seconds }),
    min_attempts: z.number().openapi({ example: DEFAULT_BREAKER.min_attempts }),
    failure_percent: z.number().openapi({ example: DEFAULT_BREAKER.failure_percent }),
    cooldown_seconds: z.number().openapi({ example: DEFAULT_BREAKER.cooldown_seconds }),
    disable_after_seconds: z.number().openapi({ example: DEFAULT_BREAKER.disable_after_seconds }),
  })
  .openapi("PartnerBreakerSettings");

const PaceSchema = z
  .object({
    in_flight_limit: z
      .number()
      .openapi({ description: "Requests in flight allowed now (adapts under max_in_flight)." }),
    max_in_flight: z.number(),
    max_per_second: z.number().nullable(),
    paused_until: z.string().nullable().openapi({ description: "Set while a Retry-After asks the hub to wait." }),
    changes: z
      .array(z.object({ at: z.string(), from: z.number(), to: z.number(), reason: z.string() }))
      .openapi({ description: "The last changes of in_flight_limit and why, newest last." }),
  })
  .openapi("PartnerPace");

const HealthSchema = z
  .object({
    breaker: z.enum(["closed", "open", "half_open"]),
    reason: z.string().nullable(),
    probe_at: z.string().nullable().openapi({ description: "While open: when the next probe goes." }),
    waiting: z.number().openapi({ description: "Deliveries the partner's coordinator holds." }),
    transitions: z
      .array(z.object({ from: z.string(), to: z.string(), reason: z.string(), at: z.string() }))
      .openapi({ description: "The breaker's last transitions, newest first." }),
  })
  .openapi("PartnerHealth");

const PartnerPatchSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    url_template: z
      .string()
      .min(1)
      .max(2048)
      .optional()
      .openapi({ example: "https://partner.example/postback?tx={transaction_id}&payout={amount}&status={status}" }),
    method: z.enum(["GET", "POST"]).optional(),
    sign: z.boolean().optional().openapi({
      description:
        "Send Standard Webhooks signature headers (GET included): a POST is signed over its raw body, a GET over its request line without the HTTP version (`GET /pb?tx=1&status=approved`). See docs/verifying-deliveries.md.",
    }),
    retry_schedule_seconds: z
      .array(z.number().int())
      .optional()
      .openapi({ description: "Delay before each retry; default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (±20 %)." }),
    filters: FiltersSchema.optional(),
    headers: z
      .record(
        z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, { error: "must be an HTTP header name" }),
        HeaderValue,
      )
      .superRefine((headers, ctx) => {
        const names = Object.keys(headers);
        if (names.length > 20) ctx.addIssue({ code: "custom", message: "at most 20 headers" });
        const seen = new Set<string>();
        for (const name of names) {
          const lower = name.toLowerCase();
          if (RESERVED_HEADERS.has(lower)) {
            ctx.addIssue({ code: "custom", path: [name], message: "is set by the hub and cannot be overridden" });
          }
          if (seen.has(lower)) {
            ctx.addIssue({
              code: "custom",
              path: [name],
              message: "repeats a header name (names are case-insensitive)",
            });
          }
          seen.add(lower);
        }
      })
      .optional(),
    body_template: z.string().max(8192).nullable().optional().openapi({
      description:
        "JSON body for POST with macros (formatting functions included, like {amount|cents}: docs/partners-and-delivery.md); text macros inside strings, and an unquoted macro without a value is null. null sends the conversion as JSON.",
    }),
    timeout_ms: z.number().int().min(1000).max(MAX_PARTNER_TIMEOUT_MS).optional(),
    receives_test_traffic: z.boolean().optional(),
    routing: z.enum(PARTNER_ROUTINGS).optional().openapi({
      description:
        "filters (the default): every conversion the filters match. attributed: only the conversions attributed to this partner (its tracking links' clicks, or a network naming it), with its payout; filters still narrow them. See docs/attribution.md.",
    }),
    share_amount: z.boolean().optional().openapi({
      description:
        "For an attributed partner: whether `{amount}` and `{currency}` carry the network's amount (default false: they render empty, and the partner sees its `{payout}` only).",
    }),
    delivery_order: z.enum(DELIVERY_ORDERS).optional().openapi({
      description:
        "ordered (the default): every event of a conversion, each once the one before it is finished. coalesce: when newer events wait, only the newest state goes, `{previous_status}` saying what the partner last received. See docs/partners-and-delivery.md.",
    }),
    max_in_flight: z
      .number()
      .int()
      .min(1)
      .max(MAX_IN_FLIGHT_LIMIT)
      .optional()
      .openapi({
        description: `Requests in flight at once at most (default ${DEFAULT_MAX_IN_FLIGHT}); the adaptive pace stays under it.`,
      }),
    max_per_second: z.number().int().min(1).max(MAX_PER_SECOND_LIMIT).nullable().optional().openapi({
      description: "Requests started per second at most; null (the default) for no cap.",
    }),
    breaker: BreakerSettingsPatch.optional(),
  })
  .openapi("PartnerUpdate");

const PartnerCreateSchema = PartnerPatchSchema.required({ name: true, url_template: true }).openapi("PartnerCreate");

const PartnerSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    status: z.enum(["active", "paused", "disabled"]).openapi({
      description:
        "paused: its breaker is open (deliveries wait, none is lost); disabled: by an operator, a 410 or the breaker.",
    }),
    disabled_reason: z.string().nullable(),
    paused_reason: z.string().nullable(),
    paused_at: z.string().nullable(),
    url_template: z.string(),
    method: z.enum(["GET", "POST"]),
    sign: z.boolean(),
    retry_schedule_seconds: z.array(z.number()),
    filters: FiltersSchema,
    headers: z.record(z.string(), z.string()),
    body_template: z.string().nullable(),
    timeout_ms: z.number(),
    receives_test_traffic: z.boolean(),
    routing: z.enum(PARTNER_ROUTINGS),
    share_amount: z.boolean(),
    delivery_order: z.enum(DELIVERY_ORDERS),
    max_in_flight: z.number(),
    max_per_second: z.number().nullable(),
    breaker: BreakerSettingsSchema,
    pace: PaceSchema.optional().openapi({ description: "Only when reading one partner." }),
    health: HealthSchema.optional().openapi({ description: "Only when reading one partner." }),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Partner");

const SigningSecret = z.string().openapi({ description: "Standard Webhooks secret; shown only in this response." });

const TemplateWarningsSchema = z
  .array(
    z.object({
      location: z.string().openapi({ example: "body.url_template" }),
      message: z.string().openapi({
        example:
          "at character 44: {amount|cents} is empty for a conversion without an amount, and for an attributed partner that does not share it; it is then sent as the empty string. To send something else, add a default: {amount|cents|default:…}",
      }),
    }),
  )
  .openapi("TemplateWarnings", {
    description:
      "Macros of the templates that some conversions leave empty, without a `default:`: the partner is saved, and such a value is sent as the empty string (`null` unquoted in a body). Empty when there is nothing to say.",
  });

const PartnerWithSecretSchema = PartnerSchema.extend({
  signing_secret: SigningSecret.optional(),
  warnings: TemplateWarningsSchema,
}).openapi("PartnerWithSecret");

const PartnerParams = z.object({
  partner_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "partner_id", in: "path" }, example: "ptn_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
});

const sampleText = z.string().max(256).nullable().optional();
const PreviewBody = z
  .strictObject({
    conversion: z
      .strictObject({
        network_id: sampleText,
        transaction_id: sampleText,
        status: z.enum(CONVERSION_STATUSES).optional(),
        amount: z.union([AmountSchema, z.number().nonnegative()]).nullable().optional(),
        currency: sampleText,
        event_time: sampleText,
        event_type: sampleText,
        campaign_id: sampleText,
        click_id: sampleText,
        user_id: sampleText,
        device_id: sampleText,
        platform: z.enum(PLATFORMS).nullable().optional(),
      })
      .optional()
      .openapi({ description: "Fields to use instead of the sample conversion's; null removes one." }),
    meta: z
      .record(z.string(), z.union([z.string(), z.number(), z.boolean()]))
      .optional()
      .openapi({ description: "The sample's meta fields." }),
  })
  .openapi("PreviewRequest");

const PreviewSchema = z
  .object({
    method: z.enum(["GET", "POST"]),
    url: z.string(),
    headers: z.record(z.string(), z.string()),
    body: z.string().nullable(),
    warnings: TemplateWarningsSchema,
  })
  .openapi("PreviewedRequest");

const ReplayBody = z
  .strictObject({
    since: TimestampSchema.optional().openapi({ description: "Deliveries created at or after." }),
    until: TimestampSchema.optional().openapi({ description: "Deliveries created before." }),
    states: z
      .array(z.enum(REPLAYABLE_STATES))
      .min(1)
      .optional()
      .openapi({ description: "Default: failed, dead and parked (superseded only when asked)." }),
    dry_run: z.boolean().default(false).openapi({ description: "Only count what would be replayed." }),
  })
  .openapi("PartnerReplay");

const ReplayResultSchema = z
  .object({
    dry_run: z.boolean(),
    matched: z.number().int(),
    replayed: z.number().int(),
    remaining: z.number().int().openapi({ description: "Still to replay: call again to continue." }),
  })
  .openapi("PartnerReplayResult");

const RotatedSchema = z
  .object({ secret_id: z.string(), signing_secret: SigningSecret, previous_secrets_expire_at: z.string() })
  .openapi("RotatedPartnerSecret");

const notFound = problem("No such partner.");

/** Tells the partner's coordinator to read its settings again (best effort: it rereads within 30 s anyway). */
async function settingsChanged(env: Env, partnerId: string): Promise<void> {
  await env.COORDINATORS.getByName(partnerId)
    .settingsChanged()
    .catch(() => undefined);
}

type LintedFields = Partial<Pick<Partner, "url_template" | "retry_schedule_seconds" | "body_template" | "method">>;

/**
 * The checks zod cannot make alone: templates, URL safety, schedule, method-specific fields. Each
 * runs when its field is present with the right type, so it also serves the schema hook below.
 */
function lintPartner(fields: LintedFields, config: Config): FieldError[] {
  const errors: FieldError[] = [];
  if (typeof fields.url_template === "string") {
    errors.push(...lintUrlTemplate(fields.url_template, { allowInsecure: config.ALLOW_INSECURE_PARTNER_URLS }));
  }
  if (Array.isArray(fields.retry_schedule_seconds) && fields.retry_schedule_seconds.every(Number.isFinite)) {
    const scheduleError = validateRetrySchedule(fields.retry_schedule_seconds);
    if (scheduleError) errors.push({ location: "body.retry_schedule_seconds", message: scheduleError });
  }
  if (typeof fields.body_template === "string") {
    if (fields.method !== "POST") {
      errors.push({ location: "body.body_template", message: "is only used with method POST" });
    } else {
      errors.push(...lintBodyTemplate(fields.body_template, "body.body_template"));
    }
  }
  return errors;
}

function requireValid(partner: Partner, config: Config): void {
  const errors = lintPartner(partner, config);
  if (errors.length > 0) throw validationFailed(errors);
}

/**
 * When the schema rejects a partner body, the template and schedule checks still run on the raw
 * fields, so that one 422 names every problem instead of revealing them one round at a time.
 */
interface HookContext {
  req: { json(): Promise<unknown>; method: string };
  env: Env;
}

function partnerBodyHook(
  result: { success: true } | { success: false; error: z.ZodError; target: string },
  c: HookContext,
): Promise<never> | undefined {
  return result.success ? undefined : rejectPartnerBody(result.error, result.target, c);
}

async function rejectPartnerBody(error: z.ZodError, target: string, c: HookContext): Promise<never> {
  const errors = zodFieldErrors(target === "json" ? "body" : target, error);
  if (target === "json") {
    const raw: unknown = await c.req.json().catch(() => null);
    if (raw !== null && typeof raw === "object" && !Array.isArray(raw)) {
      const fields = raw as Record<string, unknown>;
      errors.push(
        ...lintPartner(
          {
            url_template: typeof fields.url_template === "string" ? fields.url_template : undefined,
            retry_schedule_seconds: Array.isArray(fields.retry_schedule_seconds)
              ? (fields.retry_schedule_seconds as number[])
              : undefined,
            body_template: typeof fields.body_template === "string" ? fields.body_template : undefined,
            // Absent: a new partner defaults to GET; an update keeps a method this hook cannot see, so
            // its body template is linted as if it were sent.
            method:
              fields.method === "POST" || fields.method === "GET"
                ? fields.method
                : c.req.method === "PATCH"
                  ? "POST"
                  : "GET",
          },
          configOf(c.env),
        ),
      );
    }
  }
  throw validationFailed(errors);
}

export function registerPartnerRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners",
      operationId: "createPartner",
      tags,
      summary: "Register a partner",
      description:
        "Answers with the partner and, when `sign` is true, its signing secret (shown once); `warnings` names the template macros some conversions leave empty.",
      request: { body: { required: true, content: { "application/json": { schema: PartnerCreateSchema } } } },
      responses: {
        201: { description: "Created.", content: { "application/json": { schema: PartnerWithSecretSchema } } },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const config = configOf(c.env);
      const now = new Date().toISOString();
      const partner: Partner = {
        id: newId("ptn"),
        name: input.name,
        status: "active",
        disabled_reason: null,
        url_template: input.url_template,
        method: input.method ?? "GET",
        headers: input.headers ?? {},
        body_template: input.body_template ?? null,
        sign: input.sign ?? false,
        timeout_ms: input.timeout_ms ?? 10_000,
        retry_schedule_seconds: input.retry_schedule_seconds ?? [...DEFAULT_RETRY_SCHEDULE_SECONDS],
        filters: input.filters ?? {},
        receives_test_traffic: input.receives_test_traffic ?? false,
        routing: input.routing ?? "filters",
        share_amount: input.share_amount ?? false,
        delivery_order: input.delivery_order ?? "ordered",
        max_in_flight: input.max_in_flight ?? DEFAULT_MAX_IN_FLIGHT,
        max_per_second: input.max_per_second ?? null,
        breaker: { ...DEFAULT_BREAKER, ...definedOnly(input.breaker ?? {}) },
        paused_reason: null,
        paused_at: null,
        created_at: now,
        updated_at: now,
      };
      requireValid(partner, config);
      const signing = partner.sign ? await newSigningSecret(c.env, partner.id, now) : null;
      await insertPartner(c.env.DB, partner, signing?.row ?? null);
      return c.json(
        {
          ...partnerView(partner),
          ...(signing ? { signing_secret: signing.secret } : {}),
          warnings: partnerWarnings(partner),
        },
        201,
      );
    },
    partnerBodyHook,
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/partners",
      operationId: "listPartners",
      tags,
      summary: "List partners",
      request: { query: PaginationQuerySchema },
      responses: {
        200: {
          description: "A page of partners.",
          content: { "application/json": { schema: listOf(PartnerSchema, "PartnerList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const rows = await listPartners(c.env.DB, limit + 1, decodeCursor(cursor, 1)?.[0] ?? null);
      return c.json(
        page(rows, limit, partnerView, (p) => [p.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/partners/{partner_id}",
      operationId: "getPartner",
      tags,
      summary: "Get a partner",
      request: { params: PartnerParams },
      responses: {
        200: {
          description: "The partner (never its secret).",
          content: { "application/json": { schema: PartnerSchema } },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const partner = await getPartner(c.env.DB, partner_id);
      if (!partner) throw partnerNotFound(partner_id);
      return c.json({ ...partnerView(partner), ...(await partnerCoordinationOf(c.env, partner_id)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/partners/{partner_id}",
      operationId: "updatePartner",
      tags,
      summary: "Update a partner",
      description:
        "Changes the given fields. Turning `sign` on for the first time answers with a new signing secret; `warnings` names the template macros some conversions leave empty.",
      request: {
        params: PartnerParams,
        body: { required: true, content: { "application/json": { schema: PartnerPatchSchema } } },
      },
      responses: {
        200: {
          description: "The updated partner.",
          content: { "application/json": { schema: PartnerWithSecretSchema } },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const patch = c.req.valid("json");
      const current = await getPartner(c.env.DB, partner_id);
      if (!current) throw partnerNotFound(partner_id);
      const now = new Date().toISOString();
      const updated: Partner = {
        ...current,
        ...definedOnly(patch),
        breaker: { ...current.breaker, ...definedOnly(patch.breaker ?? {}) },
        updated_at: now,
      };
      requireValid(updated, configOf(c.env));
      const needsSecret =
        updated.sign &&
        !current.sign &&
        (await partnerSigningKeys(c.env.DB, configOf(c.env).ENCRYPTION_KEY, partner_id, Date.now())).length === 0;
      // The answer would carry a new signing secret: an operator key may change everything else.
      if (needsSecret) requireAdminScope(c, "turn signing on (the answer holds the new secret)", "body.sign");
      const signing = needsSecret ? await newSigningSecret(c.env, partner_id, now) : null;
      await updatePartner(c.env.DB, updated, signing?.row ?? null);
      forgetPartnerKeys(partner_id);
      invalidateClickPartner(partner_id);
      await settingsChanged(c.env, partner_id);
      return c.json(
        {
          ...partnerView(updated),
          ...(signing ? { signing_secret: signing.secret } : {}),
          warnings: partnerWarnings(updated),
        },
        200,
      );
    },
    partnerBodyHook,
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/partners/{partner_id}",
      operationId: "deletePartner",
      tags,
      summary: "Delete a partner",
      description: "Its unfinished deliveries fail; the delivery log is kept.",
      request: { params: PartnerParams },
      responses: { 204: { description: "Deleted." }, 404: notFound, ...ADMIN_PROBLEMS },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      if (!(await deletePartner(c.env.DB, partner_id, new Date().toISOString()))) throw partnerNotFound(partner_id);
      forgetPartnerKeys(partner_id);
      invalidateClickPartner(partner_id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners/{partner_id}/disable",
      operationId: "disablePartner",
      tags,
      summary: "Disable a partner",
      description: "Its pending and retrying deliveries are parked until it is enabled again.",
      request: { params: PartnerParams },
      responses: {
        200: { description: "The partner.", content: { "application/json": { schema: PartnerSchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const partner = await disablePartnerNow(c.env, partner_id);
      return c.json({ ...partnerView(partner), ...(await partnerCoordinationOf(c.env, partner_id)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners/{partner_id}/enable",
      operationId: "enablePartner",
      tags,
      summary: "Enable a partner",
      description: "Resumes its parked deliveries (each keeps its delivery id).",
      request: { params: PartnerParams },
      responses: {
        200: {
          description: "The partner and how many parked deliveries were resumed.",
          content: {
            "application/json": {
              schema: PartnerSchema.extend({ resumed_deliveries: z.number().int() }).openapi("EnabledPartner"),
            },
          },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const { partner, resumed } = await enablePartnerNow(c.env, partner_id);
      return c.json({ ...partnerView(partner), resumed_deliveries: resumed }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners/{partner_id}/secrets",
      operationId: "rotatePartnerSecret",
      tags,
      summary: "Rotate the partner's signing secret",
      description:
        "Issues a new secret (shown once). During the grace period every request carries a signature by each active secret.",
      request: {
        params: PartnerParams,
        body: { required: false, content: { "application/json": { schema: RotateCredentialBody } } },
      },
      responses: {
        201: { description: "The new secret.", content: { "application/json": { schema: RotatedSchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const body = c.req.valid("json") ?? {};
      return c.json(await rotatePartnerSigningSecret(c.env, partner_id, body.grace_period_seconds), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners/{partner_id}/preview",
      operationId: "previewPartnerRequest",
      tags,
      summary: "Preview the partner's request",
      description:
        "Renders the request for a sample conversion, signature headers included, with the templates' `warnings`. Sends nothing.",
      request: {
        params: PartnerParams,
        body: { required: false, content: { "application/json": { schema: PreviewBody } } },
      },
      responses: {
        200: {
          description: "The request the partner would receive.",
          content: { "application/json": { schema: PreviewSchema } },
        },
        404: notFound,
        409: problem(
          "Deliveries to this partner would be blocked before sending (its URL is not https, or not public).",
        ),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const body = c.req.valid("json") ?? {};
      return c.json(await previewPartner(c.env, partner_id, body.conversion, body.meta), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/partners/{partner_id}/replay",
      operationId: "replayPartnerDeliveries",
      tags,
      summary: "Replay the partner's failed, dead or parked deliveries",
      description: `In a time range on created_at; \`dry_run\` only counts. At most ${REPLAY_LIMIT} per call, oldest first; each keeps its delivery id.`,
      request: {
        params: PartnerParams,
        body: { required: false, content: { "application/json": { schema: ReplayBody } } },
      },
      responses: {
        200: {
          description: "What was (or would be) replayed.",
          content: { "application/json": { schema: ReplayResultSchema } },
        },
        404: notFound,
        409: problem("The partner is disabled: enable it (which resumes parked deliveries) before replaying."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { partner_id } = c.req.valid("param");
      const body = c.req.valid("json") ?? { dry_run: false };
      return c.json(await replayPartnerDeliveries(c.env, partner_id, body), 200);
    },
  );
}
