/**
 * API keys: created with the value shown once and kept as an HMAC, subjects that must exist,
 * expiry, disabling, rotation with and without a grace period, last_used_at, and what an operator
 * key may not do (issue keys or credentials). Times are passed to `authenticateToken` where a test
 * would otherwise have to wait for them.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { authenticateToken } from "../src/access/keys";
import { toBase64Url } from "../src/lib/bytes";
import { createApiKey, type TestApiKey, withKey } from "./support/access";
import {
  ADMIN_TOKEN,
  admin,
  BASE,
  createNetwork,
  createPartner,
  expectStatus,
  PARTNER,
  sha256Hex,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

async function keyRow(id: string) {
  return env.DB.prepare("SELECT * FROM api_keys WHERE id = ?").bind(id).first<Record<string, unknown>>();
}

async function rotateKey(id: string, body?: Record<string, unknown>): Promise<TestApiKey> {
  return expectStatus<TestApiKey>(
    await admin(`/v1/keys/${id}/rotate`, { method: "POST", ...(body ? { body: JSON.stringify(body) } : {}) }),
    200,
  );
}

async function expectWorks(key: string): Promise<void> {
  await expectStatus(await withKey(key, "/v1/networks"), 200);
}

async function expectRefused(key: string): Promise<void> {
  const response = await withKey(key, "/v1/networks");
  expect(response.headers.get("www-authenticate")).toBe('Bearer realm="postback-hub"');
  const problem = await expectProblem(response, 401, "unauthorized");
  expect(problem.errors[0]?.location).toBe("header.authorization");
}

describe("creating a key", () => {
  it("shows the value once, phk_-prefixed, and never again in GET or the list", async () => {
    const created = await createApiKey({ scope: "read-only" });
    expect(created.key).toMatch(/^phk_[A-Za-z0-9_-]{43}$/);
    expect(created).toMatchObject({
      scope: "read-only",
      subject_id: null,
      status: "active",
      created_by: "admin_token",
    });
    expect(created.key.startsWith(created.prefix)).toBe(true);
    expect(created.prefix.length).toBeLessThan(16);

    const one = await admin(`/v1/keys/${created.id}`);
    const oneText = await one.clone().text();
    expect((await expectStatus<Record<string, unknown>>(one, 200)).key).toBeUndefined();
    expect(oneText).not.toContain(created.key);
    const list = await admin("/v1/keys?limit=200");
    const listText = await list.clone().text();
    const page = await expectStatus<{ data: { id: string }[] }>(list, 200);
    expect(page.data.map((k) => k.id)).toContain(created.id);
    expect(listText).not.toContain(created.key);
    expect(listText).not.toContain(created.key.slice(created.prefix.length));
  });

  it("keeps no value in D1: a hash that is not the value's plain SHA-256", async () => {
    const created = await createApiKey({ scope: "operator" });
    const row = await keyRow(created.id);
    expect(JSON.stringify(row)).not.toContain(created.key);
    expect(JSON.stringify(row)).not.toContain(created.key.slice(created.prefix.length));
    const hash = String(row?.secret_hash);
    expect(hash.length).toBeGreaterThan(20);
    const plainHex = await sha256Hex(created.key);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(created.key)));
    const plainBase64Url = toBase64Url(digest);
    expect([plainHex, plainBase64Url]).not.toContain(hash);
  });

  it("works at once as the scope it names, and records who created it", async () => {
    const creator = await createApiKey({ scope: "admin" });
    const made = await expectStatus<TestApiKey>(
      await withKey(creator.key, "/v1/keys", {
        method: "POST",
        body: JSON.stringify({ name: uniqueId("k"), scope: "read-only" }),
      }),
      201,
    );
    expect(made.created_by).toBe(creator.id);
    await expectWorks(made.key);
    await expectProblem(await withKey(made.key, "/v1/offers", { method: "POST", body: "{}" }), 403, "forbidden");
  });

  it.each([
    ["a network key without subject_id", { scope: "network" }, "is required"],
    ["a partner key without subject_id", { scope: "partner" }, "is required"],
    ["an operator key with a subject_id", { scope: "operator", subject_id: "acme" }, "only for"],
    ["an admin key with a subject_id", { scope: "admin", subject_id: "acme" }, "only for"],
    ["a network key of an unknown network", { scope: "network", subject_id: "no-such-network" }, "not a known"],
    ["a partner key of an unknown partner", { scope: "partner", subject_id: "ptn_nobody" }, "not a known"],
  ])("refuses %s: 422 naming body.subject_id", async (_, fields, message) => {
    const before = (await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>())?.n;
    const problem = await expectProblem(
      await admin("/v1/keys", { method: "POST", body: JSON.stringify({ name: "x", ...fields }) }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.subject_id"]);
    expect(problem.errors.find((e) => e.location === "body.subject_id")?.message).toContain(message);
    expect((await env.DB.prepare("SELECT COUNT(*) AS n FROM api_keys").first<{ n: number }>())?.n).toBe(before);
  });

  it("makes network and partner keys of networks and partners that exist", async () => {
    const network = await createNetwork();
    const partner = await createPartner({ url_template: `${PARTNER}/ok/keys` });
    expect((await createApiKey({ scope: "network", subject_id: network.id })).subject_id).toBe(network.id);
    expect((await createApiKey({ scope: "partner", subject_id: partner.id })).subject_id).toBe(partner.id);
    // A network key is not a partner key of a partner that happens to share the id.
    const problem = await expectProblem(
      await admin("/v1/keys", {
        method: "POST",
        body: JSON.stringify({ name: "x", scope: "partner", subject_id: network.id }),
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.subject_id"]);
  });

  it("refuses an expires_at in the past", async () => {
    const problem = await expectProblem(
      await admin("/v1/keys", {
        method: "POST",
        body: JSON.stringify({ name: "x", scope: "read-only", expires_at: "2020-01-01T00:00:00Z" }),
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.expires_at"]);
  });
});

describe("a key that stops working", () => {
  it("is refused with 401 once expired", async () => {
    const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
    const created = await createApiKey({ scope: "read-only", expires_at: expiresAt });
    await expectWorks(created.key);
    expect(await authenticateToken(env, created.key, Date.parse(expiresAt) + 1)).toBeNull();
    // Time passing, as D1 sees it.
    await env.DB.prepare("UPDATE api_keys SET expires_at = ? WHERE id = ?")
      .bind(new Date(Date.now() - 1000).toISOString(), created.id)
      .run();
    await expectRefused(created.key);
    expect((await expectStatus<TestApiKey>(await admin(`/v1/keys/${created.id}`), 200)).status).toBe("expired");
  });

  it("is refused with 401 while disabled, and works again when enabled", async () => {
    const created = await createApiKey({ scope: "read-only" });
    await expectWorks(created.key);
    const disabled = await expectStatus<TestApiKey>(
      await admin(`/v1/keys/${created.id}`, { method: "PATCH", body: JSON.stringify({ status: "disabled" }) }),
      200,
    );
    expect(disabled.status).toBe("disabled");
    await expectRefused(created.key);
    await expectStatus(
      await admin(`/v1/keys/${created.id}`, { method: "PATCH", body: JSON.stringify({ status: "active" }) }),
      200,
    );
    await expectWorks(created.key);
  });

  it("cannot be disabled by itself", async () => {
    const self = await createApiKey({ scope: "admin" });
    const problem = await expectProblem(
      await withKey(self.key, `/v1/keys/${self.id}`, { method: "PATCH", body: JSON.stringify({ status: "disabled" }) }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.status"]);
    await expectWorks(self.key);
  });

  it("answers a wrong bearer, a wrong phk_ value and a malformed header with 401 and www-authenticate", async () => {
    const created = await createApiKey({ scope: "read-only" });
    const flipped = created.key.slice(0, -1) + (created.key.endsWith("A") ? "B" : "A");
    await expectRefused(flipped);
    await expectRefused(`phk_${"x".repeat(43)}`);
    await expectRefused(`${ADMIN_TOKEN}x`);
    for (const authorization of [`Basic ${created.key}`, created.key, "Bearer"]) {
      const response = await withKeyHeader(authorization);
      expect(response.headers.get("www-authenticate")).toBe('Bearer realm="postback-hub"');
      await expectProblem(response, 401, "unauthorized");
    }
  });
});

function withKeyHeader(authorization: string): Promise<Response> {
  return exports.default.fetch(new Request(`${BASE}/v1/networks`, { headers: { authorization } }));
}

describe("rotating a key", () => {
  it("stops the old value at once, even for an isolate whose clock lags behind", async () => {
    const created = await createApiKey({ scope: "read-only" });
    const rotated = await rotateKey(created.id);
    expect(rotated.key).not.toBe(created.key);
    expect(rotated.key).toMatch(/^phk_/);
    await expectRefused(created.key);
    await expectWorks(rotated.key);
    // No grace means no previous value at all, not one that expires "now" by someone's clock.
    const lagging = Date.parse(String(rotated.rotated_at)) - 5_000;
    expect(await authenticateToken(env, created.key, lagging)).toBeNull();
    expect((await keyRow(created.id))?.previous_secret_hash).toBeNull();
  });

  it("keeps the old value working through grace_period_seconds, and not after", async () => {
    const created = await createApiKey({ scope: "read-only" });
    const rotated = await rotateKey(created.id, { grace_period_seconds: 60 });
    await expectWorks(created.key);
    await expectWorks(rotated.key);
    const rotatedAt = Date.parse(String(rotated.rotated_at));
    expect(await authenticateToken(env, created.key, rotatedAt + 59_000)).not.toBeNull();
    expect(await authenticateToken(env, created.key, rotatedAt + 61_000)).toBeNull();
    expect(await authenticateToken(env, rotated.key, rotatedAt + 61_000)).not.toBeNull();
  });
});

describe("last_used_at", () => {
  it("is set on use, and written at most once a minute", async () => {
    const created = await createApiKey({ scope: "read-only" });
    expect(created.last_used_at).toBeNull();
    const t0 = Date.now();
    expect(await authenticateToken(env, created.key, t0)).not.toBeNull();
    const first = (await keyRow(created.id))?.last_used_at;
    expect(first).toBe(new Date(t0).toISOString());
    await authenticateToken(env, created.key, t0 + 30_000);
    expect((await keyRow(created.id))?.last_used_at).toBe(first);
    await authenticateToken(env, created.key, t0 + 61_000);
    expect((await keyRow(created.id))?.last_used_at).toBe(new Date(t0 + 61_000).toISOString());
  });

  it("shows in GET /v1/keys/{key_id} after a request", async () => {
    const created = await createApiKey({ scope: "read-only" });
    await expectWorks(created.key);
    const read = await expectStatus<TestApiKey>(await admin(`/v1/keys/${created.id}`), 200);
    expect(read.last_used_at).not.toBeNull();
  });
});

describe("an operator key", () => {
  it("cannot create, list, rotate or change keys, nor rotate credentials (403)", async () => {
    const operator = await createApiKey({ scope: "operator" });
    const other = await createApiKey({ scope: "read-only" });
    const network = await createNetwork();
    const partner = await createPartner({ url_template: `${PARTNER}/ok/operator` });
    for (const [method, path] of [
      ["POST", "/v1/keys"],
      ["GET", "/v1/keys"],
      ["POST", `/v1/keys/${other.id}/rotate`],
      ["PATCH", `/v1/keys/${other.id}`],
      ["POST", `/v1/networks/${network.id}/secrets`],
      ["POST", `/v1/networks/${network.id}/tokens`],
      ["POST", `/v1/partners/${partner.id}/secrets`],
    ] as const) {
      await expectProblem(
        await withKey(operator.key, path, { method, ...(method === "GET" ? {} : { body: "{}" }) }),
        403,
        "forbidden",
      );
    }
    await expectWorks(other.key);
  });

  it("updates a network, but may not turn its token method on (the answer would hold the token)", async () => {
    const operator = await createApiKey({ scope: "operator" });
    const network = await createNetwork();
    const renamed = await expectStatus<{ name: string }>(
      await withKey(operator.key, `/v1/networks/${network.id}`, {
        method: "PATCH",
        body: JSON.stringify({ name: "Renamed by the operator" }),
      }),
      200,
    );
    expect(renamed.name).toBe("Renamed by the operator");
    const problem = await expectProblem(
      await withKey(operator.key, `/v1/networks/${network.id}`, {
        method: "PATCH",
        body: JSON.stringify({ auth: { methods: ["standard_webhooks", "token"] } }),
      }),
      403,
      "forbidden",
    );
    expectLocations(problem, ["body.auth.methods"]);
    const { results } = await env.DB.prepare("SELECT kind FROM network_secrets WHERE network_id = ?")
      .bind(network.id)
      .all<{ kind: string }>();
    expect(results.map((r) => r.kind)).not.toContain("token");
  });

  it("updates a partner, but may not turn its signing on (the answer would hold the new secret)", async () => {
    const operator = await createApiKey({ scope: "operator" });
    const partner = await createPartner({ url_template: `${PARTNER}/ok/operator-sign` });
    await expectStatus(
      await withKey(operator.key, `/v1/partners/${partner.id}`, {
        method: "PATCH",
        body: JSON.stringify({ timeout_ms: 5000 }),
      }),
      200,
    );
    const response = await withKey(operator.key, `/v1/partners/${partner.id}`, {
      method: "PATCH",
      body: JSON.stringify({ sign: true }),
    });
    const text = await response.clone().text();
    const problem = await expectProblem(response, 403, "forbidden");
    expectLocations(problem, ["body.sign"]);
    expect(text).not.toMatch(/whsec_/);
    const secrets = await env.DB.prepare("SELECT COUNT(*) AS n FROM partner_secrets WHERE partner_id = ?")
      .bind(partner.id)
      .first<{ n: number }>();
    expect(secrets?.n).toBe(0);
    const stored = await expectStatus<{ sign: boolean }>(await admin(`/v1/partners/${partner.id}`), 200);
    expect(stored.sign).toBe(false);
    // An admin may.
    const signed = await expectStatus<{ signing_secret?: string }>(
      await admin(`/v1/partners/${partner.id}`, { method: "PATCH", body: JSON.stringify({ sign: true }) }),
      200,
    );
    expect(signed.signing_secret).toBeDefined();
  });
});
