/** Admin API for networks: create (secret shown once), list, get, disable/enable, rotate secrets. */
import { createRoute, z } from "@hono/zod-openapi";
import { configOf } from "../config";
import { ProblemError } from "../errors";
import { NETWORK_ID_PATTERN } from "../ingest/ingest";
import { newId } from "../lib/bytes";
import { invalidateNetwork } from "../networks/network-cache";
import { encryptSecret, generateSecret } from "../networks/secrets";
import {
  getNetwork,
  insertNetwork,
  listNetworks,
  listSecretMetadata,
  type NetworkRow,
  rotateSecret,
  setNetworkStatus,
} from "../storage/d1";
import {
  ADMIN_PROBLEMS,
  ADMIN_SECURITY,
  type App,
  decodeCursor,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
} from "./common";

const NetworkIdSchema = z
  .string()
  .regex(NETWORK_ID_PATTERN, {
    error: "must be 2 to 63 characters: lowercase letters, digits, _ and -, starting with a letter or digit",
  })
  .openapi({ example: "acme" });

const NetworkParams = z.object({
  network_id: NetworkIdSchema.openapi({ param: { name: "network_id", in: "path" } }),
});

const SecretInfoSchema = z
  .object({
    id: z.string(),
    created_at: z.string(),
    expires_at: z.string().nullable().openapi({ description: "End of the grace period; null while current." }),
  })
  .openapi("NetworkSecretInfo");

const NetworkSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    status: z.enum(["active", "disabled"]),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Network");

const NetworkDetailSchema = NetworkSchema.extend({
  secrets: z.array(SecretInfoSchema).openapi({ description: "Active secrets, newest first; never their values." }),
}).openapi("NetworkDetail");

const NewSecretSchema = z.string().openapi({
  description: "Standard Webhooks signing secret. Shown only in this response: store it now.",
  example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
});

const CreatedNetworkSchema = NetworkSchema.extend({ secret: NewSecretSchema }).openapi("CreatedNetwork");

const CreateNetworkBody = z
  .strictObject({
    id: NetworkIdSchema,
    name: z.string().trim().min(1).max(200).openapi({ example: "Acme Network" }),
  })
  .openapi("CreateNetwork");

const RotateSecretBody = z
  .strictObject({
    grace_period_seconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .optional()
      .openapi({ description: "How long the previous secrets keep working; the hub's default (24 h) when omitted." }),
  })
  .openapi("RotateSecret");

const RotatedSecretSchema = z
  .object({
    secret_id: z.string(),
    secret: NewSecretSchema,
    previous_secrets_expire_at: z.string(),
  })
  .openapi("RotatedSecret");

const notFound = problem("No such network.");
const tags = ["Networks"];

const toNetwork = (row: NetworkRow) => ({
  id: row.id,
  name: row.name,
  status: row.status,
  created_at: row.created_at,
  updated_at: row.updated_at,
});

function missing(id: string): ProblemError {
  return new ProblemError("not_found", `No network "${id}".`, [{ location: "path.network_id", message: "not found" }]);
}

async function newSecretRow(env: Env, networkId: string, now: string) {
  const secret = generateSecret();
  const id = newId("sec");
  const ciphertext = await encryptSecret(configOf(env).ENCRYPTION_KEY, id, secret);
  return { secret, row: { id, network_id: networkId, ciphertext, created_at: now } };
}

export function registerNetworkRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/networks",
      tags,
      summary: "Register a network",
      description: "Creates a network and its first Standard Webhooks secret, which this response shows once.",
      security: ADMIN_SECURITY,
      request: { body: { required: true, content: { "application/json": { schema: CreateNetworkBody } } } },
      responses: {
        201: { description: "Created.", content: { "application/json": { schema: CreatedNetworkSchema } } },
        409: problem("A network with this id exists."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { id, name } = c.req.valid("json");
      const now = new Date().toISOString();
      const network: NetworkRow = { id, name, status: "active", created_at: now, updated_at: now };
      const { secret, row } = await newSecretRow(c.env, id, now);
      if (!(await insertNetwork(c.env.DB, network, row))) {
        throw new ProblemError("already_exists", `A network "${id}" exists already.`, [
          { location: "body.id", message: "is taken" },
        ]);
      }
      invalidateNetwork(id);
      return c.json({ ...toNetwork(network), secret }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/networks",
      tags,
      summary: "List networks",
      security: ADMIN_SECURITY,
      request: { query: PaginationQuerySchema },
      responses: {
        200: {
          description: "A page of networks, by id.",
          content: { "application/json": { schema: listOf(NetworkSchema, "NetworkList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const after = decodeCursor(cursor, 1)?.[0] ?? null;
      const rows = await listNetworks(c.env.DB, limit + 1, after);
      return c.json(
        page(rows, limit, toNetwork, (row) => [row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/networks/{network_id}",
      tags,
      summary: "Get a network",
      security: ADMIN_SECURITY,
      request: { params: NetworkParams },
      responses: {
        200: {
          description: "The network and its secrets' metadata.",
          content: { "application/json": { schema: NetworkDetailSchema } },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id } = c.req.valid("param");
      const row = await getNetwork(c.env.DB, network_id);
      if (!row) throw missing(network_id);
      const secrets = await listSecretMetadata(c.env.DB, network_id, new Date().toISOString());
      return c.json({ ...toNetwork(row), secrets }, 200);
    },
  );

  for (const action of ["disable", "enable"] as const) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/v1/networks/{network_id}/${action}`,
        tags,
        summary: action === "disable" ? "Disable a network (its postbacks get 403)" : "Enable a network",
        security: ADMIN_SECURITY,
        request: { params: NetworkParams },
        responses: {
          200: { description: "The network.", content: { "application/json": { schema: NetworkSchema } } },
          404: notFound,
          ...ADMIN_PROBLEMS,
        },
      }),
      async (c) => {
        const { network_id } = c.req.valid("param");
        const status = action === "disable" ? "disabled" : "active";
        const row = await setNetworkStatus(c.env.DB, network_id, status, new Date().toISOString());
        if (!row) throw missing(network_id);
        invalidateNetwork(network_id);
        return c.json(toNetwork(row), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/networks/{network_id}/secrets",
      tags,
      summary: "Rotate the network's secret",
      description:
        "Issues a new secret (shown once). The previous ones keep verifying for the grace period, so the network can switch without losing postbacks.",
      security: ADMIN_SECURITY,
      request: {
        params: NetworkParams,
        body: { required: false, content: { "application/json": { schema: RotateSecretBody } } },
      },
      responses: {
        201: { description: "The new secret.", content: { "application/json": { schema: RotatedSecretSchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id } = c.req.valid("param");
      const body = c.req.valid("json") ?? {};
      if (!(await getNetwork(c.env.DB, network_id))) throw missing(network_id);
      const nowMs = Date.now();
      const now = new Date(nowMs).toISOString();
      const graceSeconds = body.grace_period_seconds ?? configOf(c.env).SECRET_GRACE_PERIOD_SECONDS;
      const graceEndsAt = new Date(nowMs + graceSeconds * 1000).toISOString();
      const { secret, row } = await newSecretRow(c.env, network_id, now);
      await rotateSecret(c.env.DB, row, graceEndsAt);
      invalidateNetwork(network_id);
      return c.json({ secret_id: row.id, secret, previous_secrets_expire_at: graceEndsAt }, 201);
    },
  );
}
