/**
 * Admin API for networks: create (credentials shown once), list, get, update (authentication
 * modes, IP allowlist, GET mapping, fixed answer, test mode), disable/enable, rotate the signing
 * secret and the static token (each with an overlap), and when each credential was last used.
 */

import { createRoute, z } from "@hono/zod-openapi";
import { AppleReceiverSchema } from "../domain/apple-receiver";
import {
  AUTH_METHODS,
  DEFAULT_AUTH,
  HASHABLE_IDENTIFIERS,
  type HashableIdentifier,
  NETWORK_ID_PATTERN,
  type Network,
} from "../domain/network";
import { type FieldError, ProblemError, validationFailed } from "../errors";
import { NetworkMappingSchema } from "../ingest/mapping";
import { validateCidrList } from "../lib/cidr";
import { invalidateNetwork } from "../networks/network-cache";
import {
  networkNotFound,
  newNetworkCredential,
  rotateNetworkCredential,
  setNetworkStatusNow,
} from "../operations/networks";
import {
  adNetworkIdsTaken,
  getNetwork,
  insertNetwork,
  isAdNetworkIdConflict,
  listNetworks,
  listSecretMetadata,
  updateNetwork,
} from "../storage/networks";
import { offersByCampaign } from "../storage/offers";
import { getPartner } from "../storage/partners";
import { requireAdminScope } from "./admin-auth";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  RotateCredentialBody,
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

const AuthSchema = z
  .strictObject({
    methods: z.array(z.enum(AUTH_METHODS)).min(1, { error: "needs at least one method" }).openapi({
      description:
        "Accepted credentials; a request must pass the one it carries: standard_webhooks (webhook-* headers), token (`token` parameter or `x-postback-token` header), signed_query (pb_id, pb_ts, pb_sig parameters).",
    }),
    ip_allowlist: z
      .array(z.string().max(64))
      .max(100)
      .optional()
      .openapi({
        description:
          "IPv4/IPv6 CIDR ranges; when not empty the client address (CF-Connecting-IP) must match too. Omitted in an update: kept as it is.",
        example: ["203.0.113.0/24", "2001:db8::/32"],
      }),
  })
  .openapi("NetworkAuth");

const AnswerSchema = z
  .strictObject({
    content_type: z.enum(["text/plain", "text/html", "application/json", "application/xml"]),
    body: z.string().max(1024),
  })
  .openapi("NetworkAnswer", { description: "A fixed success answer for senders that expect one, e.g. OK." });

const HASH_IDENTIFIERS_DESCRIPTION =
  "Which of this network's identifiers the hub keeps only as keyed hashes (`h1:` + base64url HMAC-SHA-256 under a key derived from ENCRYPTION_KEY), hashed before anything is stored: the conversion's object, D1, the inbound log and partners' deliveries never see the raw value, and the same value always hashes the same, so joins still work. Applies to postbacks received from then on; what was stored before stays as it was (erase it with POST /v1/erasure). Empty: stored as sent.";

const HashIdentifiersSchema = z
  .array(z.enum(HASHABLE_IDENTIFIERS, { error: `must be one of ${HASHABLE_IDENTIFIERS.join(", ")}` }))
  .refine((fields) => new Set(fields).size === fields.length, { error: "must not repeat a field" })
  .openapi({ description: HASH_IDENTIFIERS_DESCRIPTION, example: ["user_id", "device_id"] });

/** The setting in the schema's order, whatever order it was sent in. */
function hashedInOrder(fields: readonly HashableIdentifier[]): HashableIdentifier[] {
  return HASHABLE_IDENTIFIERS.filter((field) => fields.includes(field));
}

const NetworkSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    status: z.enum(["active", "disabled"]),
    auth: AuthSchema,
    mapping: z
      .record(z.string(), z.unknown())
      .nullable()
      .openapi({ description: "GET/form parameter mapping; null: the generic preset." }),
    answer: AnswerSchema.nullable(),
    test_mode: z.boolean().openapi({ description: "Every postback from this network is a test." }),
    hash_identifiers: z.array(z.enum(HASHABLE_IDENTIFIERS)).openapi({ description: HASH_IDENTIFIERS_DESCRIPTION }),
    apple: AppleReceiverSchema.nullable(),
    created_at: z.string(),
    updated_at: z.string(),
  })
  .openapi("Network");

const CredentialInfoSchema = z
  .object({
    id: z.string(),
    kind: z.enum(["signing", "token"]),
    created_at: z.string(),
    expires_at: z.string().nullable().openapi({ description: "End of the grace period; null while current." }),
    last_used_at: z.string().nullable().openapi({ description: "Last accepted use (updated at most once a minute)." }),
  })
  .openapi("NetworkCredentialInfo");

const NetworkDetailSchema = NetworkSchema.extend({
  secrets: z
    .array(CredentialInfoSchema)
    .openapi({ description: "Active signing secrets and tokens, newest first; never their values." }),
}).openapi("NetworkDetail");

const ShownOnce = (what: string, example: string) =>
  z.string().openapi({ description: `${what}. Shown only in this response: store it now.`, example });
const SecretValue = ShownOnce("Standard Webhooks signing secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
const TokenValue = ShownOnce("Static token", "pbt_3q2-7wJ0y9kq0Jc2vXxV4bq8m6ZtQe1R");

const CreatedNetworkSchema = NetworkSchema.extend({ secret: SecretValue, token: TokenValue.optional() }).openapi(
  "CreatedNetwork",
);

const SettingsFields = {
  auth: AuthSchema.optional(),
  mapping: NetworkMappingSchema.nullable().optional(),
  answer: AnswerSchema.nullable().optional(),
  test_mode: z.boolean().optional(),
  hash_identifiers: HashIdentifiersSchema.optional(),
  apple: AppleReceiverSchema.nullable().optional(),
};

const CreateNetworkBody = z
  .strictObject({
    id: NetworkIdSchema,
    name: z.string().trim().min(1).max(200).openapi({ example: "Acme Network" }),
    ...SettingsFields,
  })
  .openapi("CreateNetwork");

const UpdateNetworkBody = z
  .strictObject({ name: z.string().trim().min(1).max(200).optional(), ...SettingsFields })
  .openapi("UpdateNetwork");

const UpdatedNetworkSchema = NetworkSchema.extend({ token: TokenValue.optional() }).openapi("UpdatedNetwork");

const RotatedSecretSchema = z
  .object({ secret_id: z.string(), secret: SecretValue, previous_secrets_expire_at: z.string() })
  .openapi("RotatedSecret");

const RotatedTokenSchema = z
  .object({ token_id: z.string(), token: TokenValue, previous_tokens_expire_at: z.string() })
  .openapi("RotatedToken");

/**
 * The documented network: the token method on, and no IP allowlist, so that the documented
 * postbacks that follow work from localhost (test/docs.examples.test.ts sends them).
 */
const CREATE_NETWORK_EXAMPLE = {
  id: "acme",
  name: "Acme Network",
  auth: { methods: ["standard_webhooks", "token"] },
} satisfies z.input<typeof CreateNetworkBody>;

const notFound = problem("No such network.");
const tags = ["Networks"];

const toResponse = (network: Network) => ({ ...network });

/** The checks the schema cannot make: CIDR syntax. */
function requireValidAuth(network: Network): void {
  const errors: FieldError[] = network.auth.ip_allowlist.flatMap((entry, index) =>
    validateCidrList([entry]).map((message) => ({ location: `body.auth.ip_allowlist[${index}]`, message })),
  );
  if (errors.length > 0) throw validationFailed(errors);
}

function adNetworkIdRace(error: unknown): never {
  if (!isAdNetworkIdConflict(error)) throw error;
  throw new ProblemError("already_exists", "Another network took one of these ad network ids a moment ago.", [
    { location: "body.apple.ad_network_ids", message: "an id belongs to another network" },
  ]);
}

/**
 * An Apple receiver's sources must name what exists: an offer of this network by its campaign id
 * (a winning postback is priced by it) and a partner; and its ad network ids must be no other
 * network's (409: whose postbacks they are is taken).
 */
async function requireValidAppleReceiver(db: D1Database, network: Network): Promise<void> {
  const apple = network.apple;
  if (!apple) return;
  const taken = await adNetworkIdsTaken(db, network.id, apple.ad_network_ids);
  if (taken.length > 0) {
    throw new ProblemError(
      "already_exists",
      `Apple's postbacks for ${taken.map((t) => `"${t.ad_network_id}"`).join(", ")} already go to another network.`,
      taken.map((t) => ({
        location: `body.apple.ad_network_ids[${apple.ad_network_ids.indexOf(t.ad_network_id)}]`,
        message: `belongs to network ${t.network_id}`,
      })),
    );
  }
  const sources = Object.entries(apple.sources);
  const offers = await offersByCampaign(
    db,
    sources.map(([, source]) => ({ network_id: network.id, campaign_id: source.campaign_id })),
  );
  const partnerIds = [...new Set(sources.flatMap(([, source]) => (source.partner_id ? [source.partner_id] : [])))];
  const partners = new Map(await Promise.all(partnerIds.map(async (id) => [id, await getPartner(db, id)] as const)));
  const errors: FieldError[] = [];
  for (const [key, source] of sources) {
    if (![...offers.values()].some((offer) => offer.campaign_id === source.campaign_id)) {
      errors.push({
        location: `body.apple.sources.${key}.campaign_id`,
        message: `names no offer of network ${network.id} (set the offer's campaign_id)`,
      });
    }
    if (source.partner_id && !partners.get(source.partner_id)) {
      errors.push({ location: `body.apple.sources.${key}.partner_id`, message: "names no partner" });
    }
  }
  if (errors.length > 0) throw validationFailed(errors);
}

export function registerNetworkRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/networks",
      operationId: "createNetwork",
      tags,
      summary: "Register a network",
      description:
        "Creates a network with its Standard Webhooks signing secret and, when `auth.methods` includes token, a static token. Both are shown only in this response.",
      request: {
        body: {
          required: true,
          content: { "application/json": { schema: CreateNetworkBody, example: CREATE_NETWORK_EXAMPLE } },
        },
      },
      responses: {
        201: { description: "Created.", content: { "application/json": { schema: CreatedNetworkSchema } } },
        409: problem("A network with this id exists."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const now = new Date().toISOString();
      const network: Network = {
        id: input.id,
        name: input.name,
        status: "active",
        auth: input.auth ? { methods: input.auth.methods, ip_allowlist: input.auth.ip_allowlist ?? [] } : DEFAULT_AUTH,
        mapping: input.mapping ?? null,
        answer: input.answer ?? null,
        test_mode: input.test_mode ?? false,
        hash_identifiers: hashedInOrder(input.hash_identifiers ?? []),
        apple: input.apple ?? null,
        created_at: now,
        updated_at: now,
      };
      requireValidAuth(network);
      await requireValidAppleReceiver(c.env.DB, network);
      const signing = await newNetworkCredential(c.env, network.id, "signing", now);
      const token = network.auth.methods.includes("token")
        ? await newNetworkCredential(c.env, network.id, "token", now)
        : null;
      const inserted = await insertNetwork(c.env.DB, network, token ? [signing.row, token.row] : [signing.row]).catch(
        adNetworkIdRace,
      );
      if (!inserted) {
        throw new ProblemError("already_exists", `A network "${network.id}" exists already.`, [
          { location: "body.id", message: "is taken" },
        ]);
      }
      invalidateNetwork(network.id, network.apple?.ad_network_ids);
      return c.json({ ...toResponse(network), secret: signing.value, ...(token ? { token: token.value } : {}) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/networks",
      operationId: "listNetworks",
      tags,
      summary: "List networks",
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
        page(rows, limit, toResponse, (row) => [row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/networks/{network_id}",
      operationId: "getNetwork",
      tags,
      summary: "Get a network",
      description: "With its credentials' metadata: when each was created, expires and was last used.",
      request: { params: NetworkParams },
      responses: {
        200: {
          description: "The network and its credentials' metadata.",
          content: { "application/json": { schema: NetworkDetailSchema } },
        },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id } = c.req.valid("param");
      const network = await getNetwork(c.env.DB, network_id);
      if (!network) throw networkNotFound(network_id);
      const secrets = await listSecretMetadata(c.env.DB, network_id, new Date().toISOString());
      return c.json({ ...toResponse(network), secrets }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/networks/{network_id}",
      operationId: "updateNetwork",
      tags,
      summary: "Update a network's settings",
      description:
        "Changes the given fields. Adding the token method to a network without a token answers with a new one, shown once. `hash_identifiers` turns keyed hashing of `user_id` and `device_id` on or off for postbacks received from then on.",
      request: {
        params: NetworkParams,
        body: {
          required: true,
          content: { "application/json": { schema: UpdateNetworkBody, example: { name: "Acme Affiliate Network" } } },
        },
      },
      responses: {
        200: { description: "The network.", content: { "application/json": { schema: UpdatedNetworkSchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { network_id } = c.req.valid("param");
      const patch = c.req.valid("json");
      const current = await getNetwork(c.env.DB, network_id);
      if (!current) throw networkNotFound(network_id);
      const now = new Date().toISOString();
      const updated: Network = {
        ...current,
        name: patch.name ?? current.name,
        auth: patch.auth
          ? { methods: patch.auth.methods, ip_allowlist: patch.auth.ip_allowlist ?? current.auth.ip_allowlist }
          : current.auth,
        mapping: patch.mapping === undefined ? current.mapping : patch.mapping,
        answer: patch.answer === undefined ? current.answer : patch.answer,
        test_mode: patch.test_mode ?? current.test_mode,
        hash_identifiers: patch.hash_identifiers ? hashedInOrder(patch.hash_identifiers) : current.hash_identifiers,
        apple: patch.apple === undefined ? current.apple : patch.apple,
        updated_at: now,
      };
      requireValidAuth(updated);
      await requireValidAppleReceiver(c.env.DB, updated);
      const hasToken = (await listSecretMetadata(c.env.DB, network_id, now)).some((s) => s.kind === "token");
      const issuesToken = updated.auth.methods.includes("token") && !hasToken;
      // The answer would carry a new credential: an operator key may change everything else.
      if (issuesToken)
        requireAdminScope(c, "turn the token method on (the answer holds the new token)", "body.auth.methods");
      const token = issuesToken ? await newNetworkCredential(c.env, network_id, "token", now) : null;
      await updateNetwork(c.env.DB, updated, token ? [token.row] : []).catch(adNetworkIdRace);
      invalidateNetwork(network_id, [
        ...(current.apple?.ad_network_ids ?? []),
        ...(updated.apple?.ad_network_ids ?? []),
      ]);
      return c.json({ ...toResponse(updated), ...(token ? { token: token.value } : {}) }, 200);
    },
  );

  for (const action of ["disable", "enable"] as const) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/v1/networks/{network_id}/${action}`,
        operationId: `${action}Network`,
        tags,
        summary: action === "disable" ? "Disable a network (its postbacks get 403)" : "Enable a network",
        request: { params: NetworkParams },
        responses: {
          200: { description: "The network.", content: { "application/json": { schema: NetworkSchema } } },
          404: notFound,
          ...ADMIN_PROBLEMS,
        },
      }),
      async (c) => {
        const { network_id } = c.req.valid("param");
        const network = await setNetworkStatusNow(c.env, network_id, action === "disable" ? "disabled" : "active");
        return c.json(toResponse(network), 200);
      },
    );
  }

  const rotationRoute = <S extends z.ZodType>(path: "secrets" | "tokens", summary: string, schema: S) =>
    createRoute({
      method: "post",
      path: `/v1/networks/{network_id}/${path}`,
      operationId: path === "secrets" ? "rotateNetworkSecret" : "rotateNetworkToken",
      tags,
      summary,
      description:
        "Issues a new one (shown once). The previous ones keep working for the grace period, so the network can switch without losing postbacks; their last use shows in GET /v1/networks/{network_id}.",
      request: {
        params: NetworkParams,
        body: { required: false, content: { "application/json": { schema: RotateCredentialBody } } },
      },
      responses: {
        201: { description: "The new credential.", content: { "application/json": { schema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    });

  app.openapi(rotationRoute("secrets", "Rotate the network's signing secret", RotatedSecretSchema), async (c) => {
    const grace = c.req.valid("json")?.grace_period_seconds;
    const rotated = await rotateNetworkCredential(c.env, c.req.valid("param").network_id, grace, "signing");
    return c.json({ secret_id: rotated.id, secret: rotated.value, previous_secrets_expire_at: rotated.endsAt }, 201);
  });

  app.openapi(rotationRoute("tokens", "Rotate the network's static token", RotatedTokenSchema), async (c) => {
    const grace = c.req.valid("json")?.grace_period_seconds;
    const rotated = await rotateNetworkCredential(c.env, c.req.valid("param").network_id, grace, "token");
    return c.json({ token_id: rotated.id, token: rotated.value, previous_tokens_expire_at: rotated.endsAt }, 201);
  });
}
