/**
 * Admin API for alert channels (docs/monitoring.md#channels): webhooks signed with Standard
 * Webhooks (their secret shown once, at creation), Slack-compatible incoming webhooks. Every alert
 * goes to each active channel, and to ALERT_URL, until received.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { alertTarget, raiseAlert } from "../alerts/alerts";
import { configOf } from "../config";
import { checkOutboundUrl } from "../delivery/url-safety";
import { ProblemError, validationFailed } from "../errors";
import { newId } from "../lib/bytes";
import { encryptSecret, generateSecret } from "../lib/credentials";
import {
  type AlertChannelRow,
  deleteAlertChannel,
  getAlertChannel,
  insertAlertChannel,
  listAlertChannels,
} from "../storage/alerts";
import { ADMIN_PROBLEMS, type App, problem } from "./common";

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
      if (!(await getAlertChannel(c.env.DB, channel_id))) throw notFound(channel_id);
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
      if (!(await deleteAlertChannel(c.env.DB, channel_id))) throw notFound(channel_id);
      return c.body(null, 204);
    },
  );
}

function notFound(id: string): ProblemError {
  return new ProblemError("not_found", `No alert channel "${id}".`, [
    { location: "path.channel_id", message: "not found" },
  ]);
}
