/**
 * The OpenAPI document's frame: info (with the error table generated from the error module),
 * servers, tags with descriptions, the credentials as security schemes, and the outbound partner
 * delivery as `webhooks`, so that generated clients and receivers come out with good names.
 */
import { z } from "@hono/zod-openapi";
import { ATTRIBUTION_VERDICTS } from "../attribution/attribute";
import { EVENT_SOURCES } from "../domain/conversion";
import { SUB_ID_NAMES } from "../domain/offer";
import { CONVERSION_STATUSES, PLATFORMS } from "../domain/postback";
import { PROBLEM_CODES, type ProblemCode, problemBody, validationFailed } from "../errors";
import type { App } from "./common";

type DocumentConfig = Parameters<App["getOpenAPI31Document"]>[0];

/** The local address of `npm run dev`, the first server: where the examples are meant to be tried. */
export const LOCAL_DEV_URL = "http://127.0.0.1:8787";

/** Every answer of the hub carries its request id (the request-id middleware in src/app.ts). */
const REQUEST_ID_HEADER = {
  description: "The request's id (Cloudflare's ray id when deployed); quote it when you report a problem.",
  schema: { type: "string", example: "8e5f2c3b9d1a4e7f-AMS" },
} as const;

/** Documents `x-request-id` on every response of every operation registered so far. */
export function documentRequestIds(app: App): void {
  const header = app.openAPIRegistry.registerComponent("headers", "RequestId", REQUEST_ID_HEADER);
  for (const definition of app.openAPIRegistry.definitions) {
    if (definition.type !== "route") continue;
    const { route } = definition;
    const responses = Object.fromEntries(
      Object.entries(route.responses).map(([status, response]) => {
        if ("$ref" in response) return [status, response];
        if (response.headers instanceof z.ZodType) throw new Error(`${route.path}: declare headers as objects`);
        return [status, { ...response, headers: { "x-request-id": header.ref, ...response.headers } }];
      }),
    );
    definition.route = { ...route, responses };
  }
}

const TAGS = [
  {
    name: "Postbacks",
    description:
      "Where networks post conversions: a signed JSON body, an affiliate GET (or form POST) mapped from its parameters, a batch, and explain (a dry run). Each is authenticated with the network's own credentials (one of the network security schemes), never with the admin token; explain also takes the admin token.",
  },
  {
    name: "Apple postbacks",
    description:
      "Where Apple's devices post SKAdNetwork (2.1 to 4.0) and AdAttributionKit postbacks for a network configured with `apple`: Apple's signature in the body is the only credential, verified against Apple's published keys before anything else. A verified postback becomes a conversion (transaction-id with its postback-sequence-index; only did-win attributes), deduplicated and delivered like any other. Guide: docs/apple-postbacks.md.",
  },
  {
    name: "Tracking links",
    description:
      "What a partner's visitors click: a redirect to the offer's landing page with an authenticated click id, counted after the answer. A conversion that carries the click id is attributed to that partner (docs/attribution.md). Public.",
  },
  {
    name: "Inbound log",
    description:
      "Every request to a postback route of a known network, rejections included, with its verdict: read by the operator per network or by request id, and by a network, its own log, with its own credentials.",
  },
  {
    name: "Networks",
    description:
      "The senders of postbacks: their authentication methods and credentials (shown once, rotated with an overlap), IP allowlist, GET parameter mapping, fixed answer and test mode.",
  },
  {
    name: "Conversions",
    description:
      "One record per (network, transaction, test or live): its current state, its history of events, and the proof of that history's hash chain.",
  },
  {
    name: "Reports",
    description:
      "Stats from the hourly roll-ups the consumers keep: counts, rates and exact per-currency money by any dimension, in a time zone (docs/reports.md).",
  },
  {
    name: "Reconciliation",
    description:
      "Settle the numbers with the other side: upload an advertiser's or partner's CSV report for a network and a period, read the differences the background diff finds, and apply corrections through each conversion's Durable Object (docs/reconciliation.md).",
  },
  {
    name: "Monitoring",
    description:
      "Metrics for a Prometheus-compatible scraper: counters kept in D1 by the consumers, exact across isolates and restarts, and gauges read from indexes (docs/monitoring.md).",
  },
  {
    name: "Partners",
    description:
      "Where conversions are relayed: a URL template with macros, GET or POST, optional Standard Webhooks signing, filters and a retry schedule. What a partner receives is described under Webhooks.",
  },
  {
    name: "Offers",
    description:
      "What an advertiser network pays for: the landing URL its tracking links send visitors to (with `{click_id}`), how long a click can earn a conversion, what the network pays and what each partner is paid, and which partners may promote it. Offers are paused, never deleted: clicks and conversions name them.",
  },
  {
    name: "Deliveries",
    description: "One delivery per (event, partner), with every attempt; replay a failed, dead or parked one.",
  },
  {
    name: "Replays",
    description:
      "Bulk replay of failed, dead or parked deliveries by filter (partner, network, states, time range, conversion status): a dry run that counts, then a job that re-arms them in the background, a chunk a step, each keeping its delivery id (the partner's `webhook-id`), with progress to poll.",
  },
  {
    name: "Dead letters",
    description:
      "Queue messages a consumer gave up on (events, deliveries, the inbound log, clicks; their queues and dead-letter queues), with why: listed, inspected, and sent back to the queue they came from once the cause is fixed. A body that is not a valid message of its queue cannot be replayed.",
  },
  {
    name: "Privacy",
    description:
      "Erasure of one person's identifier (a user id, device id or click id) everywhere the hub keeps it: D1's conversions, history, deliveries, inbound log, dead letters and clicks, and the conversions' Durable Objects, in bounded runs, each recorded without the identifier.",
  },
  {
    name: "Access",
    description:
      "API keys with scopes (admin, operator, read-only, one network's, one partner's): created and rotated with the value shown once, kept hashed, expirable, disabled, each with `last_used_at`; and the audit log of every change made through the admin API or the console, with the key that made it. Admin keys only, but the audit log, which operators read too.",
  },
  { name: "Operations", description: "Health checks for load balancers and operators." },
];

/** The error codes and an example problem, generated from the error module so they cannot drift. */
export function errorsMarkdown(): string {
  // A list rather than a table: in the reference's narrow text column (and on a phone) a table's
  // code column broke the codes mid-word.
  const byStatus = (Object.keys(PROBLEM_CODES) as ProblemCode[]).sort(
    (a, b) => PROBLEM_CODES[a].status - PROBLEM_CODES[b].status,
  );
  const rows = byStatus.map((code) => {
    const { status, title } = PROBLEM_CODES[code];
    return `- **${status}** \`${code}\`: ${title}.`;
  });
  const example = validationFailed([
    { location: "body.amount", message: "must be a plain decimal with at most 15 integer and 8 fraction digits" },
  ]);
  const body = problemBody(example.code, example.message, "8e5f2c3b9d1a4e7f-AMS", example.errors);
  return [
    "## Errors",
    "",
    "Every error is an RFC 9457 problem, `application/problem+json`. Branch on `code` (stable) and the HTTP status; `title` and `detail` are for people. `errors` lists each problem with its `location`: `body.amount`, `header.webhook-signature`, `query.limit`, `path.network_id`.",
    "",
    "The codes, with their HTTP status:",
    "",
    ...rows,
    "",
    "A problem response:",
    "",
    "```http",
    `HTTP/1.1 ${body.status} Unprocessable Content`,
    "content-type: application/problem+json",
    `x-request-id: ${body.request_id}`,
    "",
    JSON.stringify(body, null, 2),
    "```",
  ].join("\n");
}

const DESCRIPTION = [
  "Networks post conversions (signed JSON, or affiliate GET postbacks with a token or a signed query); the hub deduplicates them per transaction, records them and relays them to partners.",
  "",
  "## Getting started",
  "",
  "With `npm run dev` the hub listens on http://127.0.0.1:8787 and the admin token is `ADMIN_TOKEN` in `.dev.vars`. Register a network (**Networks → Register a network**; its example enables the token method), then post a conversion with the `token` it answers (**Postbacks → Post a conversion as an affiliate GET**). Then read it back (**Conversions → Get a conversion and its history**).",
  "",
  "## Authentication",
  "",
  "**Networks** authenticate each postback with one of the methods the operator enabled for them: Standard Webhooks headers over the raw body (`webhookSignature`), a static token (`postbackToken` header or `postbackTokenQuery` parameter), or a signed query (`signedQuery`). An IP allowlist may apply on top. A failure is a 401 whose `errors` name the check that failed; explain shows what should have been signed.",
  "",
  "**Operators** send an API key (`phk_…`, made with **Access → Create an API key**) or the hub's bootstrap `ADMIN_TOKEN` as `Authorization: Bearer …` (`apiKey`) on every admin route. Each operation names the scopes that may call it: `admin`, `operator` (everything but API keys and credentials), `read-only`, a `network` key (its own conversions and inbound log) and a `partner` key (its own deliveries and replays). Another scope gets a 403; every change is in the audit log (`GET /v1/audit`). This page keeps what you type in memory only: it is gone when you close or reload the tab.",
  "",
  "## Conventions",
  "",
  'Bodies are JSON with snake_case field names. List routes take `limit` and `cursor` and answer `{ "data": [...], "next_cursor": "…" | null }`. Every response carries an `x-request-id` header.',
  "",
  errorsMarkdown(),
].join("\n");

/**
 * The repository has no licence file, so the API is not offered under an open licence. OpenAPI
 * 3.1's SPDX `identifier` (a LicenseRef- for a licence of one's own) is missing from the 3.0 types.
 */
const LICENSE = { name: "Proprietary", identifier: "LicenseRef-Proprietary" };

export const OPENAPI_DOCUMENT: DocumentConfig = {
  openapi: "3.1.0",
  info: {
    title: "Postback Hub",
    version: "1.0.0",
    description: DESCRIPTION,
    license: LICENSE,
  },
  servers: [
    { url: LOCAL_DEV_URL, description: "Local: `npm run dev`" },
    {
      url: "https://{worker}.{subdomain}.workers.dev",
      description: "A deployment on workers.dev (or your own route)",
      variables: {
        worker: { default: "postback-hub-production", description: "The Worker's name (wrangler.toml)." },
        subdomain: { default: "your-subdomain", description: "Your account's workers.dev subdomain." },
      },
    },
  ],
  tags: TAGS,
};

/** Security schemes: the operator's bearer token and each way a network can authenticate. */
const SECURITY_SCHEMES = {
  apiKey: {
    type: "http",
    scheme: "bearer",
    description:
      "An API key (`phk_…`, POST /v1/keys) or the hub's bootstrap ADMIN_TOKEN secret, as `Authorization: Bearer <key>`; each operation's description names the scopes that may call it.",
  },
  webhookSignature: {
    type: "apiKey",
    in: "header",
    name: "webhook-signature",
    description:
      "Standard Webhooks, over the raw body (a POST only): `webhook-signature` is space-separated `v1,<base64 HMAC-SHA256>` entries over `<webhook-id>.<webhook-timestamp>.<raw body>`, keyed with the base64 part of the network's `whsec_…` secret; send `webhook-id` and `webhook-timestamp` (Unix seconds, ±300 s) with it. Svix's `svix-*` names are accepted too.",
  },
  postbackToken: {
    type: "apiKey",
    in: "header",
    name: "x-postback-token",
    description: "The network's static token (`pbt_…`), for networks with the token method.",
  },
  postbackTokenQuery: {
    type: "apiKey",
    in: "query",
    name: "token",
    description: "The network's static token as the `token` parameter, for trackers that can only fire a URL.",
  },
  signedQuery: {
    type: "apiKey",
    in: "query",
    name: "pb_sig",
    description:
      "A signed query: `pb_sig` is `v1,<base64 HMAC-SHA256>` entries over the sorted parameters, with `pb_id` (unique) and `pb_ts` (Unix seconds, ±300 s) among them; a JSON body is covered only through a signed `pb_body_sha256`, and the network's own log only with a signed `pb_scope=requests`. See docs/signed-query.md.",
  },
  deliverySignature: {
    type: "apiKey",
    in: "header",
    name: "webhook-signature",
    description:
      "What a partner with `sign: true` receives: Standard Webhooks, keyed with the base64 part of the partner's `signing_secret` (`whsec_…`). `webhook-signature` is space-separated `v1,<base64 HMAC-SHA256>` entries (one per active secret during a rotation) over `<webhook-id>.<webhook-timestamp>.<signed content>`: a POST's raw body, or a GET's request line without the HTTP version (`GET /path?query`). See docs/verifying-deliveries.md.",
  },
} as const;

const optionalText = z.string().optional();

/** The default JSON body of a POST delivery (a partner without a `body_template`). */
export const DeliveryBodySchema = z
  .strictObject({
    event_id: z.string().openapi({ example: "evt_01jd5x4m2k8c7r1q0s9t6v3w2y" }),
    delivery_id: z.string().openapi({
      description: "Stable per (event, partner), the same as `webhook-id`: deduplicate on it.",
      example: "dlv_0k4m2x8c7r1q0s9t6v3w2y5z8b",
    }),
    attempt: z.number().int().min(1).openapi({ description: "1 for the first attempt, then 2, 3, …" }),
    verdict: z.enum(["accepted", "updated"]).openapi({
      description: "accepted: a new conversion; updated: a status change of a known one.",
    }),
    network_id: z.string().openapi({ example: "acme" }),
    transaction_id: z.string().openapi({ example: "ord_8812" }),
    status: z.enum(CONVERSION_STATUSES),
    previous_status: z.enum(CONVERSION_STATUSES).nullable().openapi({ description: "null for a new conversion." }),
    amount: optionalText.openapi({ description: "An exact decimal string, never a float.", example: "29.99" }),
    currency: optionalText.openapi({ example: "USD" }),
    event_time: z.string().openapi({ description: "When the conversion happened (RFC 3339)." }),
    event_type: optionalText.openapi({ example: "purchase" }),
    campaign_id: optionalText,
    click_id: optionalText,
    user_id: optionalText,
    device_id: optionalText,
    platform: z.enum(PLATFORMS).optional(),
    partner_id: optionalText.openapi({
      description: "The partner credited with the conversion (its click, or the network naming it).",
    }),
    meta: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])),
    received_at: z.string().openapi({ description: "When the hub received the event (RFC 3339)." }),
    test: z.boolean().openapi({ description: "A test conversion: only partners that take test traffic get one." }),
    attribution: z.enum(ATTRIBUTION_VERDICTS).optional().openapi({
      description: "Whose conversion it is: click, direct, or why nobody's (docs/attribution.md).",
    }),
    offer_id: optionalText,
    clicked_at: optionalText.openapi({ description: "When the credited click happened (RFC 3339)." }),
    payout: optionalText.openapi({
      description:
        "The credited partner's payout after this event, an exact decimal string; 0 once declined or reversed.",
      example: "2.50",
    }),
    previous_payout: optionalText.openapi({ description: "Its payout before this event.", example: "1.25" }),
    payout_currency: optionalText.openapi({ example: "USD" }),
    ...Object.fromEntries(
      SUB_ID_NAMES.map((name) => [
        name,
        optionalText.openapi({ description: "The click's sub id, as the partner passed it." }),
      ]),
    ),
    source: z.enum(EVENT_SOURCES).openapi({
      description: "s2s: the network's postback; pixel: a browser pixel not yet confirmed by one.",
    }),
  })
  .openapi("DeliveryBody", {
    description: "What a POST partner without a `body_template` receives. Absent fields had no value.",
  });

/** What a GET delivery's query can carry: the macros, named as in the template below. */
const DeliveryQuerySchema = z.object({
  transaction_id: z.string().openapi({ example: "ord_8812" }),
  status: z.enum(CONVERSION_STATUSES),
  amount: optionalText.openapi({ example: "29.99" }),
  currency: optionalText.openapi({ example: "USD" }),
  event_id: optionalText,
  delivery_id: optionalText,
  network_id: optionalText,
  click_id: optionalText,
  campaign_id: optionalText,
  test: z.enum(["true", "false"]).optional(),
  payout: optionalText.openapi({ description: "With `{payout}`: the credited partner's payout.", example: "2.50" }),
  sub1: optionalText.openapi({ description: "With `{sub1}`…`{sub5}`: the click's sub ids." }),
});

const SIGNATURE_HEADERS = z.object({
  "webhook-id": optionalText.openapi({
    description: "With `sign: true`: the delivery id (`dlv_…`), the same on every retry and replay.",
  }),
  "webhook-timestamp": optionalText.openapi({
    description: "With `sign: true`: Unix seconds of this attempt; refuse one far from your clock.",
  }),
});

/** Signed (the `deliverySignature` scheme, with the headers above) or not, as the partner's `sign` says. */
const DELIVERY_SECURITY: Record<string, string[]>[] = [{ deliverySignature: [] }, {}];

const DELIVERY_ANSWERS = {
  200: { description: "Stored (a repeat too): any 2xx ends the delivery." },
  410: { description: "Gone: the hub disables the partner." },
  429: { description: "Retried later, honouring `Retry-After`; so are 408 and 425." },
  "4XX": { description: "Any other 3xx or 4xx (a bad signature's 401 too) fails the delivery without retries." },
  "5XX": { description: "Retried on the partner's schedule; so is no answer within its timeout." },
};

export function registerOpenApiComponents(app: App): void {
  for (const [name, scheme] of Object.entries(SECURITY_SCHEMES)) {
    app.openAPIRegistry.registerComponent("securitySchemes", name, scheme);
  }
  app.openAPIRegistry.registerWebhook({
    method: "post",
    path: "conversion",
    operationId: "receiveConversion",
    tags: ["Deliveries"],
    summary: "Receive a conversion by POST",
    description:
      "The hub POSTs to the partner's rendered `url_template` when a conversion is accepted or changes status. Without a `body_template` the body is the JSON below; with one, it is that template with its macros filled in. Delivered at least once: deduplicate on `webhook-id` (or `delivery_id`).",
    security: DELIVERY_SECURITY,
    request: {
      headers: SIGNATURE_HEADERS,
      body: { required: true, content: { "application/json": { schema: DeliveryBodySchema } } },
    },
    responses: DELIVERY_ANSWERS,
  });
  app.openAPIRegistry.registerWebhook({
    method: "get",
    path: "conversion",
    operationId: "receiveConversionAsGet",
    tags: ["Deliveries"],
    summary: "Receive a conversion by GET",
    description:
      "The hub sends a GET to the partner's rendered `url_template`; the query is whatever the template says. These parameters are what the template `https://partner.example/postback?transaction_id={transaction_id}&status={status}&amount={amount}&currency={currency}&event_id={event_id}&delivery_id={delivery_id}&network_id={network_id}&click_id={click_id}&campaign_id={campaign_id}&test={test}` sends; a template may name them differently or send others of the macros.",
    security: DELIVERY_SECURITY,
    request: { headers: SIGNATURE_HEADERS, query: DeliveryQuerySchema },
    responses: DELIVERY_ANSWERS,
  });
}
