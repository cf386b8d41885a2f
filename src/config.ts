/**
 * Vars and secrets, parsed once per `env` object so that a missing or malformed setting is one
 * clear error (a 500 naming the setting) instead of a crash deep inside a request.
 */
import { z } from "zod";
import { ProblemError } from "./errors";
import { fromBase64 } from "./lib/bytes";

const seconds = (fallback: number) => z.coerce.number().int().positive().default(fallback);

/** Keys an operator trusts for Apple's postbacks besides Apple's own (docs/apple-postbacks.md#keys). */
const ApplePostbackKeysSchema = z.strictObject({
  skadnetwork: z
    .array(z.string().refine((value) => fromBase64(value) !== null, { error: "must be a base64 SPKI P-256 key" }))
    .max(10)
    .default([]),
  adattributionkit: z
    .record(
      z.string().min(1),
      z.looseObject({ kty: z.literal("EC"), crv: z.literal("P-256"), x: z.string(), y: z.string() }),
    )
    .default({}),
});

const ConfigSchema = z.object({
  /** JSON: more keys for Apple's postbacks; Apple's published ones are always trusted. */
  APPLE_POSTBACK_KEYS: z
    .string()
    .default("")
    .transform((value, ctx) => {
      if (value.trim() === "") return {};
      try {
        return JSON.parse(value) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "must be JSON" });
        return z.NEVER;
      }
    })
    .pipe(ApplePostbackKeysSchema),
  ADMIN_TOKEN: z
    .string({ error: "is not set (wrangler secret put ADMIN_TOKEN)" })
    .min(24, { error: "must be at least 24 characters" }),
  ENCRYPTION_KEY: z
    .string({ error: "is not set (wrangler secret put ENCRYPTION_KEY)" })
    .refine((value) => fromBase64(value)?.length === 32, {
      error: "must be 32 random bytes in base64 (openssl rand -base64 32)",
    }),
  DEDUPE_WINDOW_DAYS: z.coerce.number().positive().default(30),
  SIGNATURE_TOLERANCE_SECONDS: seconds(300),
  NETWORK_CACHE_TTL_SECONDS: z.coerce.number().int().min(0).default(30),
  /** How long an isolate answers a repeat of a recorded postback itself (src/ingest/answer-cache.ts); 0: never. */
  DUPLICATE_CACHE_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
  SECRET_GRACE_PERIOD_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 86_400)
    .default(86_400),
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).max(1_048_576).default(65_536),
  HISTORY_RETENTION_DAYS: z.coerce.number().positive().default(400),
  /** D1 keeps history this long, then the archive moves it to R2 (operations/archive.ts, docs/archive.md). */
  ARCHIVE_AFTER_DAYS: z.coerce.number().int().positive().default(30),
  ALLOW_INSECURE_PARTNER_URLS: z
    .enum(["true", "false", ""])
    .default("false")
    .transform((value) => value === "true"),
  OUTBOX_RESEND_SECONDS: seconds(300),
  DELIVERY_SWEEP_AFTER_SECONDS: seconds(600),
  INBOUND_LOG_PER_MINUTE: z.coerce.number().int().min(0).default(600),
  INBOUND_LOG_UNAUTHENTICATED_PER_MINUTE: z.coerce.number().int().min(0).default(60),
  INBOUND_LOG_RETENTION_DAYS: z.coerce.number().positive().default(30),
  /** How long a console sign-in lasts (src/console/session.ts). */
  CONSOLE_SESSION_HOURS: z.coerce
    .number()
    .positive()
    .max(24 * 7)
    .default(8),
  ALERT_URL: z
    .union([z.literal(""), z.url({ protocol: /^https?$/ })])
    .default("")
    .transform((value) => value || null),
  /** Signs every alert (Standard Webhooks): a secret, not a var (wrangler secret put ALERT_SECRET). */
  ALERT_SECRET: z
    .union([
      z.literal(""),
      z
        .string()
        .refine(
          (value) => /^whsec_[A-Za-z0-9+/]+={0,2}$/.test(value) && (fromBase64(value.slice(6))?.length ?? 0) >= 24,
          {
            error: "must be whsec_ followed by at least 24 random bytes in base64 (npm run alert-secret prints one)",
          },
        ),
    ])
    .default("")
    .transform((value) => value || null),
});

export type Config = z.infer<typeof ConfigSchema>;

const parsed = new WeakMap<object, Config>();

export function configOf(env: Env): Config {
  const cached = parsed.get(env);
  if (cached) return cached;
  const result = ConfigSchema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join(".")} ${issue.message}`);
    throw new ProblemError("misconfigured", `The hub's configuration is invalid: ${problems.join("; ")}.`);
  }
  parsed.set(env, result.data);
  return result.data;
}
