import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { macroValues } from "../src/delivery/render";
import { defaultBody } from "../src/delivery/template";
import type { DeliveryPayload } from "../src/domain/partner";
import { PROBLEM_CODES, type ProblemCode } from "../src/errors";
import { DeliveryBodySchema } from "../src/routes/docs-document";
import { expectStatus } from "./support/helpers";

interface OpenApiParameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Record<string, unknown>;
}

interface OpenApiResponse {
  description: string;
  headers?: Record<string, { $ref?: string; schema?: unknown; description?: string }>;
  content?: Record<string, { schema?: { $ref?: string } }>;
}

interface OpenApiOperation {
  operationId?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: OpenApiParameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: { $ref?: string }; example?: unknown }> };
  responses: Record<string, OpenApiResponse>;
}

type PathItem = Record<string, OpenApiOperation>;

interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string; license?: { name: string; identifier?: string } };
  servers: { url: string; description?: string; variables?: Record<string, { default: string }> }[];
  tags: { name: string; description?: string }[];
  paths: Record<string, PathItem>;
  webhooks: Record<string, PathItem>;
  components: {
    schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }>;
    securitySchemes: Record<string, { type: string; in?: string; name?: string; scheme?: string }>;
    headers: Record<string, unknown>;
  };
}

const METHODS = ["get", "put", "post", "delete", "patch", "head", "options"];

async function getDocument(): Promise<OpenApiDocument> {
  return expectStatus<OpenApiDocument>(await exports.default.fetch("https://hub.test/openapi.json"), 200);
}

function operationsOf(items: Record<string, PathItem>) {
  return Object.entries(items).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.includes(method))
      .map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation })),
  );
}

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document generated from the zod schemas", async () => {
    const doc = await getDocument();
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        "/health",
        "/v1/postbacks/{network_id}",
        "/v1/networks",
        "/v1/networks/{network_id}",
        "/v1/networks/{network_id}/secrets",
        "/v1/conversions",
        "/v1/conversions/{network_id}/{transaction_id}",
      ]),
    );
    const postback = doc.components.schemas.Postback;
    expect(postback?.required).toEqual(["transaction_id"]);
    expect(Object.keys(postback?.properties ?? {})).toEqual(
      expect.arrayContaining(["transaction_id", "status", "amount", "currency", "event_time", "meta", "platform"]),
    );
    const ingest = doc.paths["/v1/postbacks/{network_id}"]?.post;
    expect(Object.keys(ingest?.responses ?? {})).toEqual(
      expect.arrayContaining(["200", "401", "403", "404", "409", "413", "415", "422"]),
    );
  });

  it("gives every operation a unique camelCase operationId, so generated clients get good names", async () => {
    const doc = await getDocument();
    const operations = [...operationsOf(doc.paths), ...operationsOf(doc.webhooks)];
    const ids = operations.map(({ name, operation }) => {
      expect(operation.operationId, name).toMatch(/^[a-z][a-zA-Z0-9]+$/);
      return operation.operationId;
    });
    expect(new Set(ids).size).toBe(ids.length);
    const byName = Object.fromEntries(operations.map(({ name, operation }) => [name, operation.operationId]));
    expect(byName).toMatchObject({
      "GET /health": "getHealth",
      "POST /v1/postbacks/{network_id}": "postPostback",
      "GET /v1/postbacks/{network_id}": "postPostbackAsGet",
      "POST /v1/postbacks/{network_id}/batch": "postPostbackBatch",
      "POST /v1/postbacks/{network_id}/explain": "explainPostback",
      "GET /v1/postbacks/{network_id}/requests": "listOwnInboundRequests",
      "POST /v1/networks": "createNetwork",
      "POST /v1/networks/{network_id}/disable": "disableNetwork",
      "POST /v1/networks/{network_id}/tokens": "rotateNetworkToken",
      "GET /v1/conversions": "listConversions",
      "GET /v1/conversions/{network_id}/{transaction_id}/proof": "getConversionProof",
      "POST /v1/partners/{partner_id}/replay": "replayPartnerDeliveries",
      "POST /v1/offers": "createOffer",
      "GET /v1/offers": "listOffers",
      "GET /v1/offers/{offer_id}": "getOffer",
      "PATCH /v1/offers/{offer_id}": "updateOffer",
      "POST /v1/offers/{offer_id}/pause": "pauseOffer",
      "POST /v1/offers/{offer_id}/resume": "resumeOffer",
      "POST /v1/deliveries/{delivery_id}/replay": "replayDelivery",
      "POST /v1/replays": "createReplay",
      "GET /v1/replays": "listReplays",
      "GET /v1/replays/{replay_id}": "getReplay",
      "GET /v1/dead-letters": "listDeadLetters",
      "GET /v1/dead-letters/{dead_letter_id}": "getDeadLetter",
      "POST /v1/dead-letters/{dead_letter_id}/replay": "replayDeadLetter",
      "POST conversion": "receiveConversion",
      "GET conversion": "receiveConversionAsGet",
    });
  });

  it("declares, with a description, every tag its operations use", async () => {
    const doc = await getDocument();
    const declared = new Map(doc.tags.map((tag) => [tag.name, tag.description ?? ""]));
    for (const { name, operation } of [...operationsOf(doc.paths), ...operationsOf(doc.webhooks)]) {
      expect(operation.tags?.length, name).toBe(1);
      for (const tag of operation.tags ?? [])
        expect(declared.get(tag)?.length, `${name}: tag ${tag}`).toBeGreaterThan(20);
    }
  });

  it("names the servers, the licence, and the error codes with their statuses", async () => {
    const doc = await getDocument();
    expect(doc.servers[0]?.url).toBe("http://127.0.0.1:8787");
    expect(doc.servers[1]?.url).toBe("https://{worker}.{subdomain}.workers.dev");
    expect(doc.servers[1]?.variables?.worker?.default).toBe("postback-hub-production");
    expect(doc.info.license?.name).toBeTruthy();
    // The error codes, generated from src/errors.ts: one line per code, with its status and title.
    for (const code of Object.keys(PROBLEM_CODES) as ProblemCode[]) {
      const { status, title } = PROBLEM_CODES[code];
      expect(doc.info.description).toContain(`- **${status}** \`${code}\`: ${title}.`);
    }
  });

  it("models every credential as a security scheme, and says which ones each operation takes", async () => {
    const doc = await getDocument();
    expect(doc.components.securitySchemes).toMatchObject({
      apiKey: { type: "http", scheme: "bearer" },
      webhookSignature: { type: "apiKey", in: "header", name: "webhook-signature" },
      postbackToken: { type: "apiKey", in: "header", name: "x-postback-token" },
      postbackTokenQuery: { type: "apiKey", in: "query", name: "token" },
      signedQuery: { type: "apiKey", in: "query", name: "pb_sig" },
      deliverySignature: { type: "apiKey", in: "header", name: "webhook-signature" },
    });
    const body = [{ webhookSignature: [] }, { postbackToken: [] }, { postbackTokenQuery: [] }, { signedQuery: [] }];
    const query = [{ postbackTokenQuery: [] }, { postbackToken: [] }, { signedQuery: [] }];
    const postbacks = doc.paths["/v1/postbacks/{network_id}"];
    expect(postbacks?.post?.security).toEqual(body);
    expect(postbacks?.get?.security).toEqual(query);
    expect(doc.paths["/v1/postbacks/{network_id}/batch"]?.post?.security).toEqual(body);
    expect(doc.paths["/v1/postbacks/{network_id}/explain"]?.post?.security).toEqual([{ apiKey: [] }, ...body]);
    expect(doc.paths["/v1/postbacks/{network_id}/explain"]?.get?.security).toEqual([{ apiKey: [] }, ...query]);
    expect(doc.paths["/v1/postbacks/{network_id}/requests"]?.get?.security).toEqual(query);
    expect(doc.paths["/health"]?.get?.security).toEqual([]);
    // A credential is a scheme, not also a parameter that a client would fill in twice.
    for (const { name, operation } of operationsOf(doc.paths)) {
      const names = (operation.parameters ?? []).map((p) => `${p.in}:${p.name}`);
      for (const credential of ["header:webhook-signature", "header:x-postback-token", "query:token", "query:pb_sig"]) {
        expect(names, name).not.toContain(credential);
      }
    }
  });

  it("documents the response headers: x-request-id on every answer, idempotent-replayed and Retry-After", async () => {
    const doc = await getDocument();
    expect(doc.components.headers.RequestId).toMatchObject({ schema: { type: "string" } });
    for (const { name, operation } of operationsOf(doc.paths)) {
      for (const [status, response] of Object.entries(operation.responses)) {
        expect(response.headers?.["x-request-id"], `${name} ${status}`).toEqual({
          $ref: "#/components/headers/RequestId",
        });
      }
    }
    for (const method of ["post", "get"]) {
      const ingest = doc.paths["/v1/postbacks/{network_id}"]?.[method];
      expect(Object.keys(ingest?.responses["200"]?.headers ?? {})).toEqual(
        expect.arrayContaining(["idempotent-replayed", "x-postback-status", "x-event-id"]),
      );
      expect(ingest?.responses["429"]?.headers?.["Retry-After"]).toMatchObject({ schema: { type: "integer" } });
    }
  });

  it("documents explain's request: the body or query the postback would have", async () => {
    const doc = await getDocument();
    const explain = doc.paths["/v1/postbacks/{network_id}/explain"];
    expect(Object.keys(explain?.post?.requestBody?.content ?? {})).toEqual([
      "application/json",
      "application/x-www-form-urlencoded",
    ]);
    expect(explain?.post?.requestBody?.content["application/json"]?.schema).toEqual({
      $ref: "#/components/schemas/Postback",
    });
    const query = (explain?.get?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name);
    expect(query).toEqual(expect.arrayContaining(["transaction_id", "status", "amount", "pb_id", "pb_ts"]));
  });

  it("describes the delivery to partners as webhooks: the POST body, the GET query, the signature", async () => {
    const doc = await getDocument();
    const delivery = doc.webhooks.conversion;
    expect(delivery?.post?.requestBody?.content["application/json"]?.schema).toEqual({
      $ref: "#/components/schemas/DeliveryBody",
    });
    const queryNames = (delivery?.get?.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name);
    expect(queryNames).toEqual(expect.arrayContaining(["transaction_id", "status", "amount", "delivery_id"]));
    for (const method of ["post", "get"]) {
      const operation = delivery?.[method];
      const headers = (operation?.parameters ?? []).filter((p) => p.in === "header").map((p) => p.name);
      expect(headers).toEqual(["webhook-id", "webhook-timestamp"]);
      expect(operation?.security).toEqual([{ deliverySignature: [] }, {}]);
      expect(Object.keys(operation?.responses ?? {})).toEqual(expect.arrayContaining(["200", "410", "4XX", "5XX"]));
    }
    const body = doc.components.schemas.DeliveryBody;
    expect(body?.required).toEqual(expect.arrayContaining(["event_id", "delivery_id", "transaction_id", "status"]));
  });

  it("answers unknown routes with a 404 problem", async () => {
    const response = await exports.default.fetch("https://hub.test/nope");
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });
});

describe("the DeliveryBody schema", () => {
  const payload = (overrides: Partial<DeliveryPayload["conversion"]>, previous: DeliveryPayload["previous_status"]) =>
    ({
      network_id: "acme",
      transaction_id: "ord_8812",
      event_id: "evt_1",
      verdict: previous ? "updated" : "accepted",
      received_at: "2026-11-27T12:34:57.000Z",
      previous_status: previous,
      test: false,
      conversion: {
        status: "approved",
        event_time: "2026-11-27T12:34:56.000Z",
        first_seen_at: "2026-11-27T12:34:57.000Z",
        version: 1,
        ...overrides,
      },
    }) satisfies DeliveryPayload;

  it.each([
    [
      "every field",
      payload(
        {
          amount: "29.99",
          currency: "USD",
          event_type: "purchase",
          campaign_id: "camp-987",
          click_id: "clk_1",
          user_id: "u_1",
          device_id: "d_1",
          platform: "web",
          meta: { sub1: "spring", n: 2, ok: true },
        },
        "pending",
      ),
    ],
    ["no optional field", payload({}, null)],
  ])("is what a POST partner without a body template receives, with %s", (_, delivered) => {
    const body: unknown = JSON.parse(defaultBody(macroValues(delivered, "dlv_1", 3)));
    // Strict: a field the hub sends and the document does not name fails here.
    const parsed = DeliveryBodySchema.safeParse(body);
    expect(parsed.success, JSON.stringify(parsed.error?.issues)).toBe(true);
  });
});
