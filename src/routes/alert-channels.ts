/**
 * Admin API for alert channels (docs/monitoring.md#channels): webhooks signed with Standard
 * Webhooks (their secret shown once, at creation), Slack-compatible incoming webhooks. Every alert
 * goes to each active channel, and to ALERT_URL, until received. Each channel's sends can be read
 * and replayed (ALERT_URL's as channel `default`).
 */
import { createRoute, z } from "@hono/zod-openapi";
import {
  alertChannelNotFound,
  alertTarget,
  raiseAlert,
  replayAlertSend,
  replayGivenUpSends,
  shownError,
} from "../alerts/alerts";
import { configOf } from "../config";
import { checkOutboundUrl } from "../delivery/url-safety";
import { validationFailed } from "../errors";
import { newId } from "../lib/bytes";
import { encryptSecret, generateSecret } from "../lib/credentials";
import {
  type AlertChannelRow,
  DEFAULT_CHANNEL_ID,
  deleteAlertChannel,
  getAlertChannel,
  insertAlertChannel,
  listAlertChannels,
  listSends,
  SEND_STATES,
  type SendLogRow,
  sendState,
} from "../storage/alerts";
import { ADMIN_PROBLEMS, type App, decodeCursor, listOf, PaginationQuerySchema, page, problem } from "./common";

const tags = ["Monitoring"];
const FORMATS = ["standard_webhooks", "slack"] as const;

const ChannelSchema = z
  .object({
    id: z.string().openapi({ example: "ach_01m8xb5r7k2d9f3g4h5j6k7m8n" }),
    name: z.string(),
    format: z.enum(FORMATS).openapi({
      description:
        'standard_webhooks: the alert as JSON, signed (webhook-id, webhook-timestamp, webhook-signature); slack: {"text": …} for an incoming webhook.',
    }),
    url: z.string().openapi({ description: "Where alerts are POSTed; its query is never shown again after creation." }),
    status: z.enum(["active", "disabled"]),
    created_at: z.string(),
  })
  .openapi("AlertChannel");

/** A Slack webhook's URL is its credential, and a webhook's query may hold one: reads show neither. */
function shownUrl(url: URL, format: AlertChannelRow["format"]): string {
  return format === "slack" ? `${url.origin}/…` : `${url.origin}${url.pathname}${url.search ? "?…" : ""}`;
}

function toChannel(row: AlertChannelRow): z.infer<typeof ChannelSchema> {
  return {
    id: row.id,
    name: row.name,
    format: row.format,
    url: row.url,
    status: row.status,
    created_at: row.created_at,
  };
}

const CreateSchema = z
  .strictObject({
    name: z.string().min(1).max(100),
    format: z.enum(FORMATS, { error: `must be one of ${FORMATS.join(", ")}` }),
    url: z.string().max(2048),
  })
  .openapi("AlertChannelCreate");

const Params = z.object({
  channel_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "channel_id", in: "path" } }),
});

/** A channel's id, or `default` for ALERT_URL: the send log's and the replays' path. */
const SendsParams = z.object({
  channel_id: z
    .string()
    .max(64)
    .openapi({
      param: { name: "channel_id", in: "path" },
      example: DEFAULT_CHANNEL_ID,
      description: "A channel's id, or `default` for ALERT_URL's sends.",
    }),
});

const SendParams = SendsParams.extend({
  alert_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "alert_id", in: "path" }, example: "inc_01m8xa2k3v9f0c7r1q0s9t6v3w.firing.1" }),
});

const SendSchema = z
  .object({
    alert_id: z.string().openapi({ description: "The notification's id: its `webhook-id`." }),
    type: z.string().openapi({ example: "alert.firing" }),
    rule: z.string().nullable().openapi({ description: "The alert rule that raised it; null for a partner alert." }),
    subject: z.string().nullable(),
    state: z.enum(SEND_STATES).openapi({
      description:
        "pending: the cron sends it again at `next_attempt_at`; delivered: the channel answered 2xx; given_up: no longer tried (7 days passed, the channel was removed, or ALERT_URL was not set).",
    }),
    attempts: z.number().int(),
    created_at: z.string(),
    delivered_at: z.string().nullable(),
    next_attempt_at: z.string().nullable(),
    last_error: z.string().nullable().openapi({ description: "The last failure; a URL in it shows its origin only." }),
    replayed_at: z.string().nullable().openapi({ description: "When an operator last replayed it." }),
  })
  .openapi("AlertSend");

function toSend(row: SendLogRow): z.infer<typeof SendSchema> {
  return {
    alert_id: row.alert_id,
    type: row.type,
    rule: row.rule,
    subject: row.subject,
    state: sendState(row),
    attempts: row.attempts,
    created_at: row.created_at,
    delivered_at: row.delivered_at,
    next_attempt_at: row.next_attempt_at,
    last_error: shownError(row.last_error),
    replayed_at: row.replayed_at,
  };
}

export function registerAlertChannelRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/alert-channels",
      operationId: "createAlertChannel",
      tags,
      summary: "Add an alert channel",
      description: "A standard_webhooks channel answers with its `signing_secret`, once: verify every alert with it.",
      request: { body: { required: true, content: { "application/json": { schema: CreateSchema } } } },
      responses: {
        201: {
          description: "The channel (and, for standard_webhooks, its signing secret, shown this once).",
          content: { "application/json": { schema: ChannelSchema.extend({ signing_secret: z.string().optional() }) } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const config = configOf(c.env);
      const checked = checkOutboundUrl(body.url, { allowInsecure: config.ALLOW_INSECURE_PARTNER_URLS });
      if (!checked.ok) throw validationFailed([{ location: "body.url", message: checked.reason }]);
      const id = newId("ach");
      const secret = body.format === "standard_webhooks" ? generateSecret() : null;
      const row: AlertChannelRow = {
        id,
        name: body.name,
        format: body.format,
        url: shownUrl(checked.url, body.format),
        url_ciphertext: await encryptSecret(config.ENCRYPTION_KEY, `${id}:url`, checked.url.toString()),
        secret_ciphertext: secret === null ? null : await encryptSecret(config.ENCRYPTION_KEY, id, secret),
        status: "active",
        created_at: new Date().toISOString(),
      };
      await insertAlertChannel(c.env.DB, row);
      return c.json({ ...toChannel(row), ...(secret ? { signing_secret: secret } : {}) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/alert-channels",
      operationId: "listAlertChannels",
      tags,
      summary: "List the alert channels",
      responses: {
        200: {
          description: "Every channel; never a secret.",
          content: { "application/json": { schema: z.object({ data: z.array(ChannelSchema) }) } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => c.json({ data: (await listAlertChannels(c.env.DB)).map(toChannel) }, 200),
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/alert-channels/{channel_id}/test",
      operationId: "testAlertChannel",
      tags,
      summary: "Send a test alert",
      request: { params: Params },
      responses: {
        202: {
          description: "The test alert, kept and sent until received.",
          content: { "application/json": { schema: z.object({ alert_id: z.string() }) } },
        },
        404: problem("No such channel."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { channel_id } = c.req.valid("param");
      if (!(await getAlertChannel(c.env.DB, channel_id))) throw alertChannelNotFound(channel_id);
      const id = newId("alr");
      await raiseAlert(
        c.env.DB,
        alertTarget(configOf(c.env)),
        {
          type: "alert.firing",
          alert_id: id,
          rule: "test",
          subject: `channel:${channel_id}`,
          summary: "A test alert from Postback Hub: this channel receives alerts.",
          details: {},
          started_at: new Date().toISOString(),
          resolved_at: null,
        },
        id,
      );
      return c.json({ alert_id: id }, 202);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/alert-channels/{channel_id}",
      operationId: "deleteAlertChannel",
      tags,
      summary: "Remove an alert channel",
      request: { params: Params },
      responses: {
        204: { description: "Removed." },
        404: problem("No such channel."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { channel_id } = c.req.valid("param");
      if (!(await deleteAlertChannel(c.env.DB, channel_id))) throw alertChannelNotFound(channel_id);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/alert-channels/{channel_id}/sends",
      operationId: "listAlertSends",
      tags,
      summary: "List a channel's alert sends",
      description:
        "Each alert sent to the channel, newest first, with its attempts and state; `default` lists ALERT_URL's. Never a URL's credential.",
      request: { params: SendsParams, query: PaginationQuerySchema.extend({ state: z.enum(SEND_STATES).optional() }) },
      responses: {
        200: {
          description: "A page of sends.",
          content: { "application/json": { schema: listOf(SendSchema, "AlertSendList") } },
        },
        404: problem("No such channel."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { channel_id } = c.req.valid("param");
      const { limit, cursor, state } = c.req.valid("query");
      if (channel_id !== DEFAULT_CHANNEL_ID && !(await getAlertChannel(c.env.DB, channel_id))) {
        throw alertChannelNotFound(channel_id);
      }
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listSends(c.env.DB, channel_id, state, limit + 1, after);
      return c.json(
        page(rows, limit, toSend, (row) => [row.created_at, row.alert_id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/alert-channels/{channel_id}/sends/{alert_id}/resend",
      operationId: "resendAlert",
      tags,
      summary: "Send an alert to a channel again",
      description:
        "A given-up or pending send is due now, with a fresh 7-day give-up window: sent at once, then by the cron's schedule until received.",
      request: { params: SendParams },
      responses: {
        202: {
          description: "The send after its attempt (delivered, or pending again).",
          content: { "application/json": { schema: SendSchema } },
        },
        404: problem("No such channel, or the alert was never sent to it."),
        409: problem("The channel received it already, or (`default`) ALERT_URL is not set."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { channel_id, alert_id } = c.req.valid("param");
      const send = await replayAlertSend(c.env.DB, alertTarget(configOf(c.env)), channel_id, alert_id);
      return c.json(toSend(send), 202);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/alert-channels/{channel_id}/sends/resend",
      operationId: "resendGivenUpAlerts",
      tags,
      summary: "Resend a channel's given-up alerts",
      description:
        "Every given-up send of the channel is due again, with a fresh give-up window; the cron sends them, at most 50 sends a run.",
      request: { params: SendsParams },
      responses: {
        202: {
          description: "How many sends are due again.",
          content: { "application/json": { schema: z.object({ resent: z.number().int() }) } },
        },
        404: problem("No such channel."),
        409: problem("(`default`) ALERT_URL is not set."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { channel_id } = c.req.valid("param");
      const resent = await replayGivenUpSends(c.env.DB, alertTarget(configOf(c.env)), channel_id);
      return c.json({ resent }, 202);
    },
  );
}
