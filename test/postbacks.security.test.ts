/**
 * Who may post and administer: Standard Webhooks signatures on the ingest route (401 without a
 * hint of the expected signature), secret rotation with its grace period, secrets that never leave
 * the hub after creation and sit encrypted in D1, and the admin token on every admin route, found
 * from the OpenAPI document so that a new admin route is covered without touching this file.
 */
import { env, exports } from "cloudflare:workers";
import { createRoute, z } from "@hono/zod-openapi";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { ACCESS } from "../src/access/policy";
import { createAdminApp, createApp, registerAdminRoutes } from "../src/app";
import { fromBase64, utf8 } from "../src/lib/bytes";
import { SECRET_PREFIX } from "../src/lib/standard-webhooks";
import {
  ADMIN_TOKEN,
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import {
  expectLocations,
  expectNothingStored,
  expectProblem,
  type ProblemBody,
  signatureFor,
  signedHeaders,
} from "./support/problems";

interface RotatedSecret {
  secret_id: string;
  secret: string;
  previous_secrets_expire_at: string;
}

interface NetworkDetail {
  id: string;
  status: string;
  secrets: { id: string; created_at: string; expires_at: string | null }[];
}

const SIGNATURE_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"] as const;

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

function ingestRequest(networkId: string, headers: Headers, body: string): Request {
  return new Request(`${BASE}/v1/postbacks/${networkId}`, { method: "POST", headers, body });
}

/**
 * Sends `sent` with the headers of a request that signed `signed`, and returns the 401 problem and
 * the raw response text. Also asserts that the text holds neither the signature the hub would have
 * expected for the bytes it received nor the network's secret.
 */
async function expectRejectedSignature(
  network: TestNetwork,
  headers: Headers,
  sent: string,
  location: string,
): Promise<ProblemBody> {
  const response = await exports.default.fetch(ingestRequest(network.id, headers, sent));
  const text = await response.clone().text();
  expect(response.headers.get("www-authenticate")).toBe('Standard-Webhooks realm="postback-hub"');
  const problem = await expectProblem(response, 401, "unauthorized");
  expectLocations(problem, [location]);

  const id = headers.get("webhook-id") ?? headers.get("svix-id") ?? "msg_absent";
  const timestamp = headers.get("webhook-timestamp") ?? headers.get("svix-timestamp") ?? String(nowSeconds());
  const expected = await signatureFor(network.secret, id, timestamp, utf8(sent));
  const expectedMac = expected.slice("v1,".length);
  expect(text).not.toContain(expectedMac);
  expect(text).not.toContain(expectedMac.slice(0, 16));
  expect(text).not.toContain(network.secret);
  expect(text).not.toContain(network.secret.slice(SECRET_PREFIX.length));
  return problem;
}

async function rotate(network: TestNetwork, body?: Record<string, unknown>): Promise<RotatedSecret> {
  return expectStatus<RotatedSecret>(
    await admin(`/v1/networks/${network.id}/secrets`, {
      method: "POST",
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
    201,
  );
}

async function storedCiphertexts(networkId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT ciphertext FROM network_secrets WHERE network_id = ?")
    .bind(networkId)
    .all<{ ciphertext: string }>();
  return results.map((row) => row.ciphertext);
}

function containsBytes(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** Asserts that neither a secret nor its base64 key material appears anywhere in `text`. */
function expectNoSecretIn(text: string, secrets: readonly string[]): void {
  for (const secret of secrets) {
    expect(text).not.toContain(secret);
    expect(text).not.toContain(secret.slice(SECRET_PREFIX.length));
  }
}

describe("ingest signatures: 401 unauthorized", () => {
  it.each(SIGNATURE_HEADERS)("rejects a postback without %s, naming the header", async (name) => {
    const network = await createNetwork();
    const body = JSON.stringify(makePostback());
    const headers = await signedHeaders(network.secret, utf8(body));
    headers.delete(name);
    const problem = await expectRejectedSignature(network, headers, body, `header.${name}`);
    expect(problem.detail).toContain(name);
    await expectNothingStored(network);
  });

  it("rejects a postback without any signature header", async () => {
    const network = await createNetwork();
    const headers = new Headers({ "content-type": "application/json" });
    await expectRejectedSignature(network, headers, JSON.stringify(makePostback()), "header.webhook-id");
  });

  it("rejects a postback signed with another network's secret (a network posts only as itself)", async () => {
    const network = await createNetwork();
    const other = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const headers = await signedHeaders(other.secret, utf8(raw));
    const problem = await expectRejectedSignature(network, headers, raw, "header.webhook-signature");
    expect(problem.detail).not.toContain(other.secret);
    // The same request is fine where it belongs.
    await expectStatus(await exports.default.fetch(ingestRequest(other.id, headers, raw)), 200);
    await expectNothingStored(network, [String(body.transaction_id)]);
  });

  it("rejects a tampered body (one body signed, another sent)", async () => {
    const network = await createNetwork();
    const signedBody = makePostback({ amount: "1.00" });
    const sent = JSON.stringify({ ...signedBody, amount: "1000.00" });
    const headers = await signedHeaders(network.secret, utf8(JSON.stringify(signedBody)));
    await expectRejectedSignature(network, headers, sent, "header.webhook-signature");
    await expectNothingStored(network, [String(signedBody.transaction_id)]);
  });

  it("rejects a body re-serialised after signing (the signature covers the bytes, not the JSON)", async () => {
    const network = await createNetwork();
    const transactionId = uniqueId("ws");
    const signedText = `{ "transaction_id": "${transactionId}", "amount": 29.90, "currency": "USD" }`;
    const sent = JSON.stringify(JSON.parse(signedText));
    const headers = await signedHeaders(network.secret, utf8(signedText));
    await expectRejectedSignature(network, headers, sent, "header.webhook-signature");
    await expectNothingStored(network, [transactionId]);
  });

  it("rejects a valid signature of another webhook-id (headers are part of the signed content)", async () => {
    const network = await createNetwork();
    const raw = JSON.stringify(makePostback());
    const headers = await signedHeaders(network.secret, utf8(raw));
    headers.set("webhook-id", uniqueId("msg-swapped"));
    await expectRejectedSignature(network, headers, raw, "header.webhook-signature");
  });

  it.each([
    ["ten minutes old", -600, /old.*tolerance is 300 s/],
    ["ten minutes ahead", 600, /future.*tolerance is 300 s/],
    ["a day old", -86_400, /old.*tolerance is 300 s/],
  ])("rejects a timestamp %s, naming the tolerance", async (_, skewSeconds, pattern) => {
    const network = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const headers = await signedHeaders(network.secret, utf8(raw), { timestamp: nowSeconds() + skewSeconds });
    const problem = await expectRejectedSignature(network, headers, raw, "header.webhook-timestamp");
    expect(problem.detail).toMatch(pattern);
    await expectNothingStored(network, [String(body.transaction_id)]);
  });

  it("rejects a timestamp in milliseconds", async () => {
    const network = await createNetwork();
    const raw = JSON.stringify(makePostback());
    const headers = await signedHeaders(network.secret, utf8(raw), { timestamp: Date.now() });
    await expectRejectedSignature(network, headers, raw, "header.webhook-timestamp");
  });

  it("does not let the admin token stand in for a signature", async () => {
    const network = await createNetwork();
    const headers = new Headers({ "content-type": "application/json", authorization: `Bearer ${ADMIN_TOKEN}` });
    await expectRejectedSignature(network, headers, JSON.stringify(makePostback()), "header.webhook-id");
  });

  it("accepts a postback signed by the reference Standard Webhooks library", async () => {
    const network = await createNetwork();
    const body = makePostback({ campaign_id: "été-🎉" });
    const raw = JSON.stringify(body);
    const id = uniqueId("msg");
    const timestamp = new Date(nowSeconds() * 1000);
    const headers = new Headers({
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp.getTime() / 1000),
      "webhook-signature": new Webhook(network.secret).sign(id, timestamp, raw),
    });
    await expectStatus(await exports.default.fetch(ingestRequest(network.id, headers, raw)), 200);
    await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
  });
});

describe("Svix's header names for the same scheme", () => {
  /** Headers as Svix's client libraries send them: the same signature under svix-* names. */
  function svixHeaders(secret: string, raw: string, id = uniqueId("msg_")): Headers {
    const timestamp = new Date(nowSeconds() * 1000);
    return new Headers({
      "content-type": "application/json",
      "svix-id": id,
      "svix-timestamp": String(timestamp.getTime() / 1000),
      "svix-signature": new Webhook(secret).sign(id, timestamp, raw),
    });
  }

  it("accepts svix-id, svix-timestamp and svix-signature, and replays a repeat as a duplicate", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const raw = JSON.stringify(body);
    const first = await expectStatus<{ status: string }>(
      await exports.default.fetch(ingestRequest(network.id, svixHeaders(network.secret, raw), raw)),
      200,
    );
    expect(first.status).toBe("accepted");
    const again = await exports.default.fetch(ingestRequest(network.id, svixHeaders(network.secret, raw), raw));
    expect((await expectStatus<{ status: string }>(again, 200)).status).toBe("duplicate");
    await eventually(() => conversionInD1(network.id, String(body.transaction_id)));
  });

  it("verifies svix-* headers as strictly as webhook-* ones, naming the svix header at fault", async () => {
    const network = await createNetwork();
    const raw = JSON.stringify(makePostback());
    const tampered = svixHeaders(network.secret, raw);
    const problem = await expectRejectedSignature(
      network,
      tampered,
      JSON.stringify(makePostback()),
      "header.svix-signature",
    );
    expect(problem.detail).toContain("svix-id");
    const missing = svixHeaders(network.secret, raw);
    missing.delete("svix-timestamp");
    await expectRejectedSignature(network, missing, raw, "header.svix-timestamp");
    const other = await createNetwork();
    await expectRejectedSignature(network, svixHeaders(other.secret, raw), raw, "header.svix-signature");
    await expectNothingStored(network);
  });
});

describe("secret rotation", () => {
  it("issues a new whsec_ secret and keeps the old one working for the default grace period", async () => {
    const network = await createNetwork();
    const before = Date.now();
    const rotated = await rotate(network, {});
    expect(rotated.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(rotated.secret).not.toBe(network.secret);
    expect(rotated.secret_id).toMatch(/^sec_/);
    const graceMs = Number(env.SECRET_GRACE_PERIOD_SECONDS) * 1000;
    const expiresAt = Date.parse(rotated.previous_secrets_expire_at);
    expect(expiresAt).toBeGreaterThanOrEqual(before + graceMs - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + graceMs + 1000);

    const oldSigned = makePostback();
    const newSigned = makePostback();
    await expectStatus(await postback(network, oldSigned), 200);
    await expectStatus(await postback({ id: network.id, secret: rotated.secret }, newSigned), 200);
    await eventually(() => conversionInD1(network.id, String(oldSigned.transaction_id)));
    await eventually(() => conversionInD1(network.id, String(newSigned.transaction_id)));
  });

  it("rotates without a body", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network);
    await expectStatus(await postback({ id: network.id, secret: rotated.secret }, makePostback()), 200);
    await expectStatus(await postback(network, makePostback()), 200);
  });

  it("honours a custom grace period", async () => {
    const network = await createNetwork();
    const before = Date.now();
    const rotated = await rotate(network, { grace_period_seconds: 3600 });
    const expiresAt = Date.parse(rotated.previous_secrets_expire_at);
    expect(expiresAt).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 3_600_000 + 1000);
  });

  it("stops the old secret at once with grace_period_seconds 0, while the new one works", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network, { grace_period_seconds: 0 });
    const refused = makePostback();
    const problem = await expectProblem(await postback(network, refused), 401, "unauthorized");
    expectLocations(problem, ["header.webhook-signature"]);
    const accepted = makePostback();
    await expectStatus(await postback({ id: network.id, secret: rotated.secret }, accepted), 200);
    await eventually(() => conversionInD1(network.id, String(accepted.transaction_id)));
    expect(await conversionInD1(network.id, String(refused.transaction_id))).toBeNull();
  });

  it("keeps an earlier end when a second rotation follows a zero-grace one", async () => {
    const network = await createNetwork();
    const second = await rotate(network, { grace_period_seconds: 0 });
    const third = await rotate(network, { grace_period_seconds: 3600 });
    await expectProblem(await postback(network, makePostback()), 401, "unauthorized");
    await expectStatus(await postback({ id: network.id, secret: second.secret }, makePostback()), 200);
    await expectStatus(await postback({ id: network.id, secret: third.secret }, makePostback()), 200);
  });

  it.each([
    ["a negative grace period", { grace_period_seconds: -1 }, "body.grace_period_seconds"],
    ["a grace period as a string", { grace_period_seconds: "60" }, "body.grace_period_seconds"],
    ["a grace period over 30 days", { grace_period_seconds: 30 * 86_400 + 1 }, "body.grace_period_seconds"],
    ["an unknown field", { grace: 60 }, "body.grace"],
  ])("rejects a rotation with %s (422) and keeps the current secret", async (_, body, location) => {
    const network = await createNetwork();
    const response = await admin(`/v1/networks/${network.id}/secrets`, { method: "POST", body: JSON.stringify(body) });
    expectLocations(await expectProblem(response, 422, "validation_failed"), [location]);
    const detail = await expectStatus<NetworkDetail>(await admin(`/v1/networks/${network.id}`), 200);
    expect(detail.secrets).toHaveLength(1);
    expect(detail.secrets[0]?.expires_at).toBeNull();
  });

  it("answers 404 to a rotation for an unknown network", async () => {
    const response = await admin(`/v1/networks/${uniqueId("ghost")}/secrets`, { method: "POST", body: "{}" });
    await expectProblem(response, 404, "not_found");
  });
});

describe("secrets stay secret", () => {
  it("GET /v1/networks/{id} lists secret metadata but never a secret value", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network, {});
    const response = await admin(`/v1/networks/${network.id}`);
    const text = await response.clone().text();
    const detail = await expectStatus<NetworkDetail>(response, 200);
    expectNoSecretIn(text, [network.secret, rotated.secret]);
    expect(text).not.toMatch(/whsec_/);

    expect(detail.secrets).toHaveLength(2);
    const [current, previous] = detail.secrets;
    expect(current).toEqual({
      id: rotated.secret_id,
      kind: "signing",
      created_at: expect.any(String),
      expires_at: null,
      last_used_at: null,
    });
    expect(previous).toEqual({
      id: expect.stringMatching(/^sec_/),
      kind: "signing",
      created_at: expect.any(String),
      expires_at: rotated.previous_secrets_expire_at,
      last_used_at: null,
    });
    for (const secret of detail.secrets) {
      expect(Object.keys(secret).sort()).toEqual(["created_at", "expires_at", "id", "kind", "last_used_at"]);
    }
  });

  it("drops an expired secret from the metadata", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network, { grace_period_seconds: 0 });
    const detail = await expectStatus<NetworkDetail>(await admin(`/v1/networks/${network.id}`), 200);
    expect(detail.secrets.map((s) => s.id)).toEqual([rotated.secret_id]);
  });

  it("GET /v1/networks never contains a secret value", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network, {});
    const response = await admin("/v1/networks?limit=200");
    const text = await response.clone().text();
    await expectStatus(response, 200);
    expect(text).toContain(network.id);
    expectNoSecretIn(text, [network.secret, rotated.secret]);
    expect(text).not.toMatch(/whsec_/);
  });

  it("stores secrets encrypted: no ciphertext holds the plaintext, its base64 or its key bytes", async () => {
    const network = await createNetwork();
    const rotated = await rotate(network, {});
    const secrets = [network.secret, rotated.secret];
    const ciphertexts = await storedCiphertexts(network.id);
    expect(ciphertexts).toHaveLength(2);
    expect(new Set(ciphertexts).size).toBe(2);

    const { results } = await env.DB.prepare("SELECT * FROM network_secrets WHERE network_id = ?")
      .bind(network.id)
      .all();
    expectNoSecretIn(JSON.stringify(results), secrets);

    for (const ciphertext of ciphertexts) {
      expectNoSecretIn(ciphertext, secrets);
      const sealed = fromBase64(ciphertext);
      expect(sealed, "ciphertext is base64").not.toBeNull();
      for (const secret of secrets) {
        const keyBytes = fromBase64(secret.slice(SECRET_PREFIX.length));
        expect(keyBytes).not.toBeNull();
        if (!sealed || !keyBytes) continue;
        expect(containsBytes(sealed, keyBytes)).toBe(false);
        expect(containsBytes(sealed, utf8(secret))).toBe(false);
      }
    }
  });

  it("does not repeat a network's secret in the answer to a duplicate create", async () => {
    const network = await createNetwork();
    const response = await admin("/v1/networks", {
      method: "POST",
      body: JSON.stringify({ id: network.id, name: "again" }),
    });
    const text = await response.clone().text();
    await expectProblem(response, 409, "already_exists");
    expectNoSecretIn(text, [network.secret]);
    expect(text).not.toMatch(/whsec_/);
  });
});

// ------------------------------------------------------------------------------------------------
// Admin authentication, for every operation the OpenAPI document marks as secured
// ------------------------------------------------------------------------------------------------

interface OpenApiParameter {
  name: string;
  in: string;
  example?: unknown;
  schema?: { example?: unknown };
}

interface OpenApiOperation {
  security?: unknown[];
  parameters?: OpenApiParameter[];
  requestBody?: unknown;
}

interface OpenApiDocument {
  security?: unknown[];
  paths: Record<string, Record<string, OpenApiOperation | undefined>>;
}

const HTTP_METHODS = ["get", "put", "post", "delete", "patch", "head", "options"] as const;

interface Operation {
  method: string;
  path: string;
  operation: OpenApiOperation;
}

const openApiResponse = await exports.default.fetch(`${BASE}/openapi.json`);
if (openApiResponse.status !== 200) throw new Error(`GET /openapi.json answered ${openApiResponse.status}`);
const openApi = (await openApiResponse.json()) as OpenApiDocument;

const operations: Operation[] = Object.entries(openApi.paths).flatMap(([path, item]) =>
  HTTP_METHODS.flatMap((method) => {
    const operation = item[method];
    return operation ? [{ method: method.toUpperCase(), path, operation }] : [];
  }),
);
/** Operations that only the admin token opens (explain takes it too, or the network's credentials). */
const adminOperations = operations.filter(
  ({ operation }) =>
    (operation.security ?? []).length > 0 &&
    (operation.security ?? []).every((requirement) => "apiKey" in (requirement as object)),
);

/** The path with each `{param}` replaced by its documented example, or a plausible id. */
function concretePath({ path, operation }: Operation): string {
  return path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const parameter = operation.parameters?.find((p) => p.in === "path" && p.name === name);
    const example = parameter?.example ?? parameter?.schema?.example;
    return encodeURIComponent(typeof example === "string" ? example : `example-${name.replaceAll("_", "-")}`);
  });
}

function adminRequest(target: Operation, authorization: string | null): Request {
  const headers = new Headers();
  if (authorization !== null) headers.set("authorization", authorization);
  const init: RequestInit = { method: target.method, headers };
  if (target.operation.requestBody !== undefined) {
    headers.set("content-type", "application/json");
    init.body = "{}";
  }
  return new Request(`${BASE}${concretePath(target)}`, init);
}

const lastCharacter = ADMIN_TOKEN.slice(-1);
const BAD_CREDENTIALS: [string, string | null][] = [
  ["no Authorization header", null],
  ["a wrong bearer token of the same length", `Bearer ${"x".repeat(ADMIN_TOKEN.length)}`],
  [
    "the token with its last character changed",
    `Bearer ${ADMIN_TOKEN.slice(0, -1)}${lastCharacter === "a" ? "b" : "a"}`,
  ],
  ["a shorter token (a prefix of the real one)", `Bearer ${ADMIN_TOKEN.slice(0, -1)}`],
  ["a longer token (the real one plus a character)", `Bearer ${ADMIN_TOKEN}x`],
  ["a short wrong token", "Bearer nope"],
  ["an empty bearer token", "Bearer "],
  ["the token under the Basic scheme", `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}`],
  ["the token under a Token scheme", `Token ${ADMIN_TOKEN}`],
  ["the bare token without a scheme", ADMIN_TOKEN],
];

const authMatrix = adminOperations.flatMap((target) =>
  BAD_CREDENTIALS.map(([credential, authorization]) => ({
    name: `${target.method} ${target.path} with ${credential}`,
    target,
    authorization,
  })),
);

describe("admin authentication on every secured operation of /openapi.json", () => {
  it("finds the admin operations, so the checks below cannot pass vacuously", () => {
    const names = adminOperations.map(({ method, path }) => `${method} ${path}`);
    expect(names.length).toBeGreaterThan(0);
    expect(names).toEqual(
      expect.arrayContaining([
        "POST /v1/networks",
        "GET /v1/networks",
        "GET /v1/networks/{network_id}",
        "POST /v1/networks/{network_id}/secrets",
        "GET /v1/conversions",
        "POST /v1/offers",
        "GET /v1/offers",
        "GET /v1/offers/{offer_id}",
        "PATCH /v1/offers/{offer_id}",
        "POST /v1/offers/{offer_id}/pause",
        "POST /v1/offers/{offer_id}/resume",
        "POST /v1/replays",
        "GET /v1/replays/{replay_id}",
        "GET /v1/dead-letters",
        "POST /v1/dead-letters/{dead_letter_id}/replay",
        "GET /v1/alert-channels/{channel_id}/sends",
        "POST /v1/alert-channels/{channel_id}/sends/{alert_id}/resend",
        "POST /v1/alert-channels/{channel_id}/sends/resend",
      ]),
    );
    expect(authMatrix.length).toBe(names.length * BAD_CREDENTIALS.length);
  });

  it("documents the bearer scheme that the secured operations name", () => {
    const schemes = (openApi as { components?: { securitySchemes?: Record<string, unknown> } }).components
      ?.securitySchemes;
    expect(schemes?.apiKey).toMatchObject({ type: "http", scheme: "bearer" });
    for (const { operation } of adminOperations) expect(operation.security).toEqual([{ apiKey: [] }]);
  });

  it("leaves the ingest route and /health unsecured by the admin token", () => {
    expect(openApi.security ?? []).toEqual([]);
    const ingest = openApi.paths["/v1/postbacks/{network_id}"]?.post;
    const health = openApi.paths["/health"]?.get;
    expect(ingest).toBeDefined();
    expect(health).toBeDefined();
    // The ingest route takes the network's credentials, each a way of its own, never the admin token.
    expect(ingest?.security).toEqual([
      { webhookSignature: [] },
      { postbackToken: [] },
      { postbackTokenQuery: [] },
      { signedQuery: [] },
    ]);
    expect(health?.security ?? []).toEqual([]);
  });

  it("lets only explain take the admin token besides the admin operations", () => {
    const either = operations
      .filter(({ operation }) => (operation.security ?? []).some((requirement) => "apiKey" in (requirement as object)))
      .filter((target) => !adminOperations.includes(target))
      .map(({ method, path }) => `${method} ${path}`);
    expect(either.sort()).toEqual([
      "GET /v1/postbacks/{network_id}/explain",
      "POST /v1/postbacks/{network_id}/explain",
    ]);
  });

  it.each(authMatrix)("401 for $name", async ({ target, authorization }) => {
    const response = await exports.default.fetch(adminRequest(target, authorization));
    const wwwAuthenticate = response.headers.get("www-authenticate");
    const text = await response.clone().text();
    const problem = await expectProblem(response, 401, "unauthorized");
    expectLocations(problem, ["header.authorization"]);
    expect(wwwAuthenticate ?? "").toMatch(/^Bearer\b/i);
    expect(text).not.toContain(ADMIN_TOKEN);
  });

  it.each([
    ["a trailing slash", "GET", "/v1/networks/"],
    ["a trailing slash", "POST", "/v1/networks/"],
    ["a doubled slash", "GET", "/v1//networks"],
    ["upper case", "GET", "/V1/NETWORKS"],
    ["a percent-encoded letter", "GET", "/v1/%6eetworks"],
    ["a dot segment", "GET", "/v1/networks/./acme"],
    ["an encoded dot-dot segment", "GET", "/v1/networks/%2e%2e/networks"],
    ["an encoded slash", "POST", "/v1/networks/acme%2Fdisable"],
    ["a matrix parameter", "GET", "/v1/networks;x=1"],
    ["a trailing slash", "GET", "/v1/conversions/"],
  ])("never serves an admin path spelled with %s (%s %s) without the token", async (_, method, path) => {
    const init: RequestInit = { method };
    if (method === "POST") init.body = "{}";
    const response = await exports.default.fetch(
      new Request(`${BASE}${path}`, { ...init, headers: { "content-type": "application/json" } }),
    );
    const text = await response.text();
    expect([401, 404], `${method} ${path} → ${response.status}: ${text}`).toContain(response.status);
  });

  it.each(adminOperations)("lets the admin token through to $method $path", async (target) => {
    const response = await exports.default.fetch(adminRequest(target, `Bearer ${ADMIN_TOKEN}`));
    const text = await response.text();
    expect(response.status, text).not.toBe(401);
    expect(response.status, text).toBeLessThan(500);
  });
});

// ------------------------------------------------------------------------------------------------
// Admin routes are guarded by construction: the admin sub-app of src/app.ts
// ------------------------------------------------------------------------------------------------

/** `METHOD /path/{param}` for each route of a Hono app, as the document names operations. */
function routeNames(app: { routes: { method: string; path: string }[] }): string[] {
  const names = app.routes.map(({ method, path }) => `${method} ${path.replace(/:([^/]+)/g, "{$1}")}`);
  return [...new Set(names)].sort();
}

describe("the admin sub-app", () => {
  it("holds exactly the operations that the document secures with the admin token alone", () => {
    const documented = adminOperations.map(({ method, path }) => `${method} ${path}`).sort();
    expect(routeNames(createAdminApp())).toEqual(documented);
  });

  it("declares the apiKey security on every operation registered on it, and nothing else does", () => {
    for (const name of routeNames(createAdminApp())) {
      const [method = "", path = ""] = name.split(" ");
      const operation = openApi.paths[path]?.[method.toLowerCase() as (typeof HTTP_METHODS)[number]];
      expect(operation, `${name} is not in /openapi.json`).toBeDefined();
      expect(operation?.security, name).toEqual([{ apiKey: [] }]);
    }
    for (const name of ["GET /health", "POST /v1/postbacks/{network_id}", "GET /v1/postbacks/{network_id}/requests"]) {
      expect(routeNames(createAdminApp())).not.toContain(name);
    }
  });

  // A new admin route under a prefix no rule names, declaring no security: registering it on the
  // sub-app is what guards it and documents it.
  const REPORT = createRoute({
    method: "get",
    path: "/v2/reports/{report_id}",
    operationId: "getReport",
    summary: "A report",
    request: { params: z.object({ report_id: z.string() }) },
    responses: {
      200: { description: "The report.", content: { "application/json": { schema: z.object({ ok: z.boolean() }) } } },
    },
  });
  const withReport = () =>
    createApp(
      (routes) => {
        registerAdminRoutes(routes);
        routes.openapi(REPORT, (c) => c.json({ ok: true }, 200));
      },
      { ...ACCESS, getReport: { scopes: ["operator", "read-only"] } },
    );

  it("guards a route registered on it, whatever its path", async () => {
    const app = withReport();
    for (const [, authorization] of BAD_CREDENTIALS) {
      const headers = authorization === null ? undefined : { authorization };
      const response = await app.fetch(new Request(`${BASE}/v2/reports/r1`, { headers }), env);
      const problem = await expectProblem(response, 401, "unauthorized");
      expectLocations(problem, ["header.authorization"]);
    }
    const ok = await app.fetch(
      new Request(`${BASE}/v2/reports/r1`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }),
      env,
    );
    expect(await expectStatus(ok, 200)).toEqual({ ok: true });
    // The guard is on the sub-app's routes only: the public and network routes stay as they were.
    await expectStatus(await app.fetch(new Request(`${BASE}/health`), env), 200);
    await expectProblem(await app.fetch(new Request(`${BASE}/v2/nothing-here`), env), 404, "not_found");
  });

  it("documents a route registered on it with the apiKey security and its 401", async () => {
    const doc = (await (await withReport().fetch(new Request(`${BASE}/openapi.json`), env)).json()) as {
      paths: Record<string, Record<string, { security?: unknown; responses: Record<string, unknown> }>>;
    };
    const report = doc.paths["/v2/reports/{report_id}"]?.get;
    expect(report?.security).toEqual([{ apiKey: [] }]);
    expect(Object.keys(report?.responses ?? {})).toEqual(expect.arrayContaining(["200", "401"]));
  });

  it("refuses, at start-up, an admin route that no entry of the access policy names", () => {
    expect(() =>
      createApp((routes) => {
        routes.openapi(REPORT, (c) => c.json({ ok: true }, 200));
      }),
    ).toThrow(/GET \/v2\/reports\/\{report_id\} \(getReport\) has no entry in access\/policy.ts/);
  });

  it("refuses, at start-up, an admin route that declares other security", () => {
    expect(() =>
      createApp((routes) => {
        routes.openapi({ ...REPORT, security: [] }, (c) => c.json({ ok: true }, 200));
      }),
    ).toThrow(/GET \/v2\/reports\/\{report_id\} is an admin route but declares security \[\]/);
  });
});
