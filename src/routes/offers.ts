/**
 * Admin API for offers: create, list (by network), get (with its click count and tracking link),
 * update, pause and resume. There is no delete: clicks and conversions name their offer, so an
 * offer that should stop earning is paused.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { invalidateClickOffer } from "../attribution/click-targets";
import { LANDING_MACROS, lintLandingUrl } from "../attribution/landing-url";
import { type Config, configOf } from "../config";
import { NETWORK_ID_PATTERN } from "../domain/network";
import {
  DEFAULT_ATTRIBUTION_WINDOW_DAYS,
  MAX_ATTRIBUTION_WINDOW_DAYS,
  OFFER_STATUSES,
  type Offer,
  PayoutsSchema,
  PixelSettingsSchema,
  PriceRulesSchema,
} from "../domain/offer";
import { PARTNER_ID_PATTERN } from "../domain/partner";
import { type FieldError, ProblemError, validationFailed, zodFieldErrors } from "../errors";
import { newId } from "../lib/bytes";
import { getNetwork } from "../storage/networks";
import { countClicks, getOffer, insertOffer, listOffers, offersByCampaign, updateOffer } from "../storage/offers";
import { existingPartnerIds } from "../storage/partners";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  definedOnly,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  TARGET_LOCATIONS,
} from "./common";

const tags = ["Offers"];
const MACRO_LIST = LANDING_MACROS.map((name) => `\`{${name}}\``).join(", ");

const NetworkIdSchema = z
  .string()
  .regex(NETWORK_ID_PATTERN, { error: "must be a network id" })
  .openapi({ example: "acme" });

const PartnerIdSchema = z.string().regex(PARTNER_ID_PATTERN, { error: "must be a partner id" });

/** The fields an operator sets, each declared once: optional in an update, defaulted on create. */
const Fields = {
  name: z.string().trim().min(1).max(200).openapi({ example: "Acme spring sale" }),
  landing_url: z
    .string()
    .min(1)
    .max(2048)
    .openapi({
      description: `Where a tracking link sends the visitor: an absolute https URL that must contain \`{click_id}\` (the network sends it back in its postback). Macros, each percent-encoded: ${MACRO_LIST}.`,
      example: "https://shop.example/spring?clickid={click_id}&aff={partner_id}&s1={sub1}",
    }),
  attribution_window_days: z
    .number()
    .int()
    .min(1)
    .max(MAX_ATTRIBUTION_WINDOW_DAYS)
    .openapi({ description: "How many days after its click a conversion is still attributed to it.", example: 30 }),
  campaign_id: z.string().min(1).max(128).nullable().openapi({
    description:
      "The network's own id for this offer, unique within the network: prices the conversions whose postback names its partner directly (no click).",
    example: "camp-987",
  }),
  revenue: PriceRulesSchema.openapi({
    description: "What the network pays the hub, as price rules (the first matching rule applies).",
  }),
  payouts: PayoutsSchema,
  partners: z
    .array(PartnerIdSchema)
    .max(500)
    .refine((ids) => new Set(ids).size === ids.length, { error: "repeats a partner" })
    .nullable()
    .openapi({ description: "The partners allowed to promote the offer; null: any attributed partner." }),
  pixel: PixelSettingsSchema,
};

const EMPTY_PAYOUTS = { default: [], partners: {} };
const DEFAULT_PIXEL = { allowed_origins: [], notify_before_confirmation: false };

const OfferCreateSchema = z
  .strictObject({
    network_id: NetworkIdSchema.openapi({ description: "The advertiser: the network whose postbacks convert it." }),
    name: Fields.name,
    landing_url: Fields.landing_url,
    attribution_window_days: Fields.attribution_window_days.default(DEFAULT_ATTRIBUTION_WINDOW_DAYS),
    campaign_id: Fields.campaign_id.default(null),
    revenue: Fields.revenue.default([]),
    payouts: Fields.payouts.default(EMPTY_PAYOUTS),
    partners: Fields.partners.default(null),
    pixel: Fields.pixel.default(DEFAULT_PIXEL),
  })
  .openapi("OfferCreate");

const OfferUpdateSchema = z
  .strictObject({
    name: Fields.name.optional(),
    landing_url: Fields.landing_url.optional(),
    attribution_window_days: Fields.attribution_window_days.optional(),
    campaign_id: Fields.campaign_id.optional(),
    revenue: Fields.revenue.optional(),
    payouts: Fields.payouts.optional(),
    partners: Fields.partners.optional(),
    pixel: Fields.pixel.optional(),
  })
  .openapi("OfferUpdate", {
    description:
      "A field that is sent replaces the stored one whole (payouts and pixel included). network_id cannot change.",
  });

const OfferFieldsSchema = z.object({
  id: z.string().openapi({ example: "ofr_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
  network_id: z.string(),
  name: z.string(),
  status: z.enum(OFFER_STATUSES).openapi({ description: "active, or paused (pause and resume set it)." }),
  landing_url: z.string(),
  attribution_window_days: z.number().int(),
  campaign_id: z.string().nullable(),
  revenue: PriceRulesSchema,
  payouts: PayoutsSchema,
  partners: z.array(z.string()).nullable(),
  pixel: PixelSettingsSchema,
  created_at: z.string(),
  updated_at: z.string(),
  tracking_link: z.string().openapi({
    description:
      "The link partners promote: replace `{partner_id}` with the partner's id. Built from the origin this request was sent to.",
    example: "https://hub.example/c/ofr_01jd5x4m2k8c7r1q0s9t6v3w2y?p={partner_id}",
  }),
});

const OfferListItemSchema = OfferFieldsSchema.openapi("OfferListItem", {
  description: "An offer as listed: without its click count (get the offer for it).",
});

const OfferSchema = OfferFieldsSchema.extend({
  clicks: z.number().int().openapi({ description: "Clicks counted on its tracking links, every partner's." }),
}).openapi("Offer");

const OfferParams = z.object({
  offer_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "offer_id", in: "path" }, example: "ofr_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
});

const ListQuery = PaginationQuerySchema.extend({
  network_id: NetworkIdSchema.optional().openapi({ description: "Only this network's offers." }),
});

/**
 * The documented offer: for the documented network (routes/networks.ts), priced by default rules
 * only, since a per-partner override must name a partner that exists.
 */
const CREATE_OFFER_EXAMPLE = {
  network_id: "acme",
  name: "Acme spring sale",
  landing_url: "https://shop.example/spring?clickid={click_id}&aff={partner_id}&s1={sub1}",
  attribution_window_days: 30,
  campaign_id: "camp-987",
  revenue: [{ event_type: "purchase", percent: "12" }],
  payouts: {
    default: [
      { event_type: "purchase", fixed: { amount: "2.50", currency: "USD" }, percent: "5" },
      { event_type: "lead", fixed: { amount: "0.40", currency: "USD" } },
    ],
    partners: {},
  },
  pixel: { allowed_origins: ["https://shop.example"] },
} satisfies z.input<typeof OfferCreateSchema>;

const UPDATE_OFFER_EXAMPLE = {
  name: "Acme spring sale (EU)",
  attribution_window_days: 14,
} satisfies z.input<typeof OfferUpdateSchema>;

const notFound = problem("No such offer.");
const campaignTaken = problem("Another offer of the network has this campaign_id.");

function missing(id: string): ProblemError {
  return new ProblemError("not_found", `No offer "${id}".`, [{ location: "path.offer_id", message: "not found" }]);
}

function trackingLink(origin: string, offerId: string): string {
  return `${origin}/c/${offerId}?p={partner_id}`;
}

function toListItem(offer: Offer, origin: string) {
  return { ...offer, tracking_link: trackingLink(origin, offer.id) };
}

async function toResponse(db: D1Database, offer: Offer, origin: string) {
  return { ...toListItem(offer, origin), clicks: await countClicks(db, offer.id, null) };
}

type CheckedFields = Partial<Pick<Offer, "network_id" | "landing_url" | "payouts" | "partners">>;

/**
 * What the schema cannot check alone: the landing URL (under this configuration), and that the
 * network and partners named exist. Only the fields sent are checked, so that a partner deleted
 * since does not block a change to something else.
 */
async function offerProblems(db: D1Database, fields: CheckedFields, config: Config): Promise<FieldError[]> {
  const errors: FieldError[] = [];
  if (fields.landing_url !== undefined) {
    errors.push(...lintLandingUrl(fields.landing_url, { allowInsecure: config.ALLOW_INSECURE_PARTNER_URLS }));
  }
  if (fields.network_id !== undefined && !(await getNetwork(db, fields.network_id))) {
    errors.push({ location: "body.network_id", message: "no such network; register it first (POST /v1/networks)" });
  }
  const overridden = Object.keys(fields.payouts?.partners ?? {});
  const allowed = fields.partners ?? [];
  const known = await existingPartnerIds(db, [...overridden, ...allowed]);
  for (const id of overridden) {
    if (!known.has(id)) errors.push({ location: `body.payouts.partners.${id}`, message: "no such partner" });
  }
  allowed.forEach((id, index) => {
    if (!known.has(id)) errors.push({ location: `body.partners[${index}]`, message: "no such partner" });
  });
  return errors;
}

async function campaignConflict(db: D1Database, offer: Offer): Promise<ProblemError> {
  const campaignId = offer.campaign_id ?? "";
  const [other] = (await offersByCampaign(db, [{ network_id: offer.network_id, campaign_id: campaignId }])).values();
  return new ProblemError(
    "already_exists",
    `Network "${offer.network_id}" has an offer with campaign_id "${campaignId}" already${other ? ` (${other.id})` : ""}.`,
    [{ location: "body.campaign_id", message: "is taken by another offer of this network" }],
  );
}

interface HookContext {
  req: { json(): Promise<unknown> };
  env: Env;
}

/**
 * When the schema rejects an offer body, the landing URL is still judged from the raw body, so that
 * one 422 names every problem; a patch naming network_id is told why it cannot.
 */
function offerBodyHook(kind: "create" | "update") {
  return (
    result: { success: true } | { success: false; error: z.ZodError; target: string },
    c: HookContext,
  ): Promise<never> | undefined => (result.success ? undefined : rejectOfferBody(result.error, result.target, c, kind));
}

async function rejectOfferBody(
  error: z.ZodError,
  target: string,
  c: HookContext,
  kind: "create" | "update",
): Promise<never> {
  const errors = zodFieldErrors(TARGET_LOCATIONS[target] ?? target, error).map((fieldError) =>
    kind === "update" && fieldError.location === "body.network_id"
      ? {
          location: fieldError.location,
          message: "cannot be changed: the offer's clicks and conversions belong to its network; create another offer",
        }
      : fieldError,
  );
  if (target === "json") {
    const raw: unknown = await c.req.json().catch(() => null);
    const landingUrl = raw !== null && typeof raw === "object" ? (raw as Record<string, unknown>).landing_url : null;
    const judged = errors.some((e) => e.location === "body.landing_url");
    if (typeof landingUrl === "string" && landingUrl.length <= 2048 && !judged) {
      errors.push(...lintLandingUrl(landingUrl, { allowInsecure: configOf(c.env).ALLOW_INSECURE_PARTNER_URLS }));
    }
  }
  throw validationFailed(errors);
}

export function registerOfferRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/offers",
      operationId: "createOffer",
      tags,
      summary: "Create an offer",
      description:
        "An offer of an existing network, active at once. Offers are never deleted (clicks and conversions name them): pause one instead.",
      request: {
        body: {
          required: true,
          content: { "application/json": { schema: OfferCreateSchema, example: CREATE_OFFER_EXAMPLE } },
        },
      },
      responses: {
        201: { description: "Created.", content: { "application/json": { schema: OfferSchema } } },
        409: campaignTaken,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const input = c.req.valid("json");
      const now = new Date().toISOString();
      const offer: Offer = {
        id: newId("ofr"),
        network_id: input.network_id,
        name: input.name,
        status: "active",
        landing_url: input.landing_url,
        attribution_window_days: input.attribution_window_days,
        campaign_id: input.campaign_id,
        revenue: input.revenue,
        payouts: input.payouts,
        partners: input.partners,
        pixel: input.pixel,
        created_at: now,
        updated_at: now,
      };
      const errors = await offerProblems(c.env.DB, input, configOf(c.env));
      if (errors.length > 0) throw validationFailed(errors);
      if (!(await insertOffer(c.env.DB, offer))) throw await campaignConflict(c.env.DB, offer);
      invalidateClickOffer(offer.id);
      return c.json(await toResponse(c.env.DB, offer, new URL(c.req.url).origin), 201);
    },
    offerBodyHook("create"),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/offers",
      operationId: "listOffers",
      tags,
      summary: "List offers",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of offers, oldest first.",
          content: { "application/json": { schema: listOf(OfferListItemSchema, "OfferList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, network_id } = c.req.valid("query");
      const after = decodeCursor(cursor, 1)?.[0] ?? null;
      const rows = await listOffers(c.env.DB, limit + 1, after, network_id ?? null);
      const origin = new URL(c.req.url).origin;
      return c.json(
        page(
          rows,
          limit,
          (offer) => toListItem(offer, origin),
          (offer) => [offer.id],
        ),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/offers/{offer_id}",
      operationId: "getOffer",
      tags,
      summary: "Get an offer",
      description: "With its tracking link and how many clicks it has counted.",
      request: { params: OfferParams },
      responses: {
        200: { description: "The offer.", content: { "application/json": { schema: OfferSchema } } },
        404: notFound,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { offer_id } = c.req.valid("param");
      const offer = await getOffer(c.env.DB, offer_id);
      if (!offer) throw missing(offer_id);
      return c.json(await toResponse(c.env.DB, offer, new URL(c.req.url).origin), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/offers/{offer_id}",
      operationId: "updateOffer",
      tags,
      summary: "Update an offer",
      description:
        "Changes the given fields; each replaces the stored one whole. An offer's network never changes: its clicks and conversions belong to it.",
      request: {
        params: OfferParams,
        body: {
          required: true,
          content: { "application/json": { schema: OfferUpdateSchema, example: UPDATE_OFFER_EXAMPLE } },
        },
      },
      responses: {
        200: { description: "The updated offer.", content: { "application/json": { schema: OfferSchema } } },
        404: notFound,
        409: campaignTaken,
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { offer_id } = c.req.valid("param");
      const patch = definedOnly(c.req.valid("json"));
      const current = await getOffer(c.env.DB, offer_id);
      if (!current) throw missing(offer_id);
      const updated: Offer = { ...current, ...patch, updated_at: new Date().toISOString() };
      const errors = await offerProblems(c.env.DB, patch, configOf(c.env));
      if (errors.length > 0) throw validationFailed(errors);
      if (!(await updateOffer(c.env.DB, updated))) throw await campaignConflict(c.env.DB, updated);
      invalidateClickOffer(offer_id);
      return c.json(await toResponse(c.env.DB, updated, new URL(c.req.url).origin), 200);
    },
    offerBodyHook("update"),
  );

  for (const action of ["pause", "resume"] as const) {
    app.openapi(
      createRoute({
        method: "post",
        path: `/v1/offers/{offer_id}/${action}`,
        operationId: `${action}Offer`,
        tags,
        summary: action === "pause" ? "Pause an offer" : "Resume an offer",
        description:
          action === "pause"
            ? "Sets its status to paused. This is how an offer ends: offers are never deleted, because clicks and conversions name them."
            : "Sets its status back to active.",
        request: { params: OfferParams },
        responses: {
          200: { description: "The offer.", content: { "application/json": { schema: OfferSchema } } },
          404: notFound,
          ...ADMIN_PROBLEMS,
        },
      }),
      async (c) => {
        const { offer_id } = c.req.valid("param");
        const current = await getOffer(c.env.DB, offer_id);
        if (!current) throw missing(offer_id);
        const status = action === "pause" ? "paused" : "active";
        const updated: Offer = { ...current, status, updated_at: new Date().toISOString() };
        await updateOffer(c.env.DB, updated);
        invalidateClickOffer(offer_id);
        return c.json(await toResponse(c.env.DB, updated, new URL(c.req.url).origin), 200);
      },
    );
  }
}
