/**
 * The audit log: every change made through the admin API (create, update, rotate, disable, replay,
 * erase) writes one row naming the key that made it, the operation, the path, the ids it was on and
 * the answer's status; refused requests and reads write none; no body or secret lands in it; and
 * GET /v1/audit filters and pages it, newest first, for admin and operator keys only.
 */
import { env } from "cloudflare:workers";
import { createRoute, z } from "@hono/zod-openapi";
import { beforeAll, describe, expect, it } from "vitest";
import { ACCESS } from "../src/access/policy";
import { createApp, registerAdminRoutes } from "../src/app";
import { auditCount, auditRowsOf, createApiKey, type TestApiKey, withKey } from "./support/access";
import { pendingDelivery } from "./support/deliveries";
import { createPartner, expectStatus, PARTNER, uniqueId } from "./support/helpers";
import { expectProblem } from "./support/problems";

interface AuditEntry {
  id: string;
  at: string;
  key_id: string;
  key_name: string;
  scope: string;
  action: string;
  method: string;
  path: string;
  target: Record<string, string>;
  status: number;
  request_id: string;
  via: string;
}

let actor: TestApiKey;
let operator: TestApiKey;

beforeAll(async () => {
  actor = await createApiKey({ scope: "admin", name: uniqueId("auditor") });
  operator = await createApiKey({ scope: "operator", name: uniqueId("operator") });
});

/** Sends a change with the actor key and returns the one audit row it wrote (and the answer). */
async function oneRowFor(
  key: TestApiKey,
  method: string,
  path: string,
  status: number,
  body?: Record<string, unknown>,
): Promise<{ row: AuditEntry; answer: Record<string, unknown>; requestId: string }> {
  const before = await auditRowsOf(key.id);
  const response = await withKey(key.key, path, { method, ...(body ? { body: JSON.stringify(body) } : {}) });
  const requestId = response.headers.get("x-request-id") ?? "";
  const answer = await expectStatus<Record<string, unknown>>(response, status);
  const after = await auditRowsOf(key.id);
  expect(after.length, JSON.stringify(after.slice(before.length))).toBe(before.length + 1);
  const row = after.at(-1);
  if (!row) throw new Error("no audit row");
  expect(row.request_id).toBe(requestId);
  return { row: { ...row, target: JSON.parse(row.target) as Record<string, string> }, answer, requestId };
}

describe("a change writes one row", () => {
  it("for each of create, update, rotate, disable, replay and erase, with the key, action, path, target and status", async () => {
    const networkId = uniqueId("net");
    const created = await oneRowFor(actor, "POST", "/v1/networks", 201, { id: networkId, name: "Audited" });
    expect(created.row).toMatchObject({
      key_id: actor.id,
      key_name: actor.name,
      scope: "admin",
      action: "createNetwork",
      method: "POST",
      path: "/v1/networks",
      target: { id: networkId },
      status: 201,
      via: "api",
    });

    const updated = await oneRowFor(actor, "PATCH", `/v1/networks/${networkId}`, 200, { name: "Audited again" });
    expect(updated.row).toMatchObject({
      action: "updateNetwork",
      path: `/v1/networks/${networkId}`,
      target: { network_id: networkId },
      status: 200,
    });

    const rotated = await oneRowFor(actor, "POST", `/v1/networks/${networkId}/secrets`, 201);
    expect(rotated.row).toMatchObject({
      action: "rotateNetworkSecret",
      target: { network_id: networkId, secret_id: String(rotated.answer.secret_id) },
    });

    const disabled = await oneRowFor(actor, "POST", `/v1/networks/${networkId}/disable`, 200);
    expect(disabled.row).toMatchObject({ action: "disableNetwork", target: { network_id: networkId } });

    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("audit")}` });
    const delivery = await pendingDelivery(partner.id, { state: "failed", attempts: 3 });
    const replayed = await oneRowFor(actor, "POST", `/v1/deliveries/${delivery}/replay`, 202);
    expect(replayed.row).toMatchObject({ action: "replayDelivery", target: { delivery_id: delivery }, status: 202 });

    const erased = await oneRowFor(actor, "POST", "/v1/erasure", 201, { user_id: uniqueId("user") });
    expect(erased.row).toMatchObject({ action: "createErasure", target: { id: String(erased.answer.id) } });
  });

  it("for keys themselves: created, rotated and disabled, naming the key acted on", async () => {
    const made = await oneRowFor(actor, "POST", "/v1/keys", 201, { name: "made", scope: "read-only" });
    const madeId = String(made.answer.id);
    expect(made.row).toMatchObject({ action: "createApiKey", target: { id: madeId } });
    const rotated = await oneRowFor(actor, "POST", `/v1/keys/${madeId}/rotate`, 200);
    expect(rotated.row).toMatchObject({ action: "rotateApiKey", target: { key_id: madeId } });
    const disabled = await oneRowFor(actor, "PATCH", `/v1/keys/${madeId}`, 200, { status: "disabled" });
    expect(disabled.row).toMatchObject({ action: "updateApiKey", target: { key_id: madeId } });
  });

  it("by the ADMIN_TOKEN as admin_token", async () => {
    const { admin } = await import("./support/helpers");
    const before = await auditRowsOf("admin_token");
    await expectStatus(
      await admin("/v1/keys", { method: "POST", body: JSON.stringify({ name: "t", scope: "admin" }) }),
      201,
    );
    const after = await auditRowsOf("admin_token");
    expect(after.length).toBe(before.length + 1);
    expect(after.at(-1)).toMatchObject({ key_name: "ADMIN_TOKEN", scope: "admin", action: "createApiKey" });
  });
});

describe("a change that fails on the hub's side (5xx)", () => {
  // A route that changes something and then fails: the change may have happened, so the row stays.
  const HALF_DONE = createRoute({
    method: "post",
    path: "/v2/half-done/{thing_id}",
    operationId: "halfDone",
    request: { params: z.object({ thing_id: z.string() }) },
    responses: { 200: { description: "Never." } },
  });

  it("writes its row with the status, so an action that took effect in part is not lost", async () => {
    const app = createApp(
      (routes) => {
        registerAdminRoutes(routes);
        routes.openapi(HALF_DONE, () => {
          throw new Error("the queue is down after the row was written");
        });
      },
      { ...ACCESS, halfDone: { scopes: ["operator"] } },
    );
    const before = await auditRowsOf(operator.id);
    const response = await app.fetch(
      new Request("https://hub.test/v2/half-done/t1", {
        method: "POST",
        headers: { authorization: `Bearer ${operator.key}` },
      }),
      env,
    );
    await expectProblem(response, 500, "internal_error");
    const after = await auditRowsOf(operator.id);
    expect(after.length).toBe(before.length + 1);
    expect(after.at(-1)).toMatchObject({ action: "halfDone", status: 500, target: JSON.stringify({ thing_id: "t1" }) });
  });
});

describe("what writes no row", () => {
  it("a refused request: 401, 403, 404 and 422", async () => {
    const readOnly = await createApiKey({ scope: "read-only" });
    const before = await auditCount();
    await expectProblem(
      await withKey("phk_wrong", "/v1/networks", { method: "POST", body: "{}" }),
      401,
      "unauthorized",
    );
    await expectProblem(
      await withKey(readOnly.key, "/v1/networks", {
        method: "POST",
        body: JSON.stringify({ id: uniqueId("n"), name: "n" }),
      }),
      403,
      "forbidden",
    );
    await expectProblem(
      await withKey(operator.key, "/v1/keys", { method: "POST", body: JSON.stringify({ name: "n", scope: "admin" }) }),
      403,
      "forbidden",
    );
    await expectProblem(
      await withKey(actor.key, "/v1/networks", { method: "POST", body: "{}" }),
      422,
      "validation_failed",
    );
    await expectProblem(
      await withKey(actor.key, `/v1/networks/${uniqueId("none")}/disable`, { method: "POST" }),
      404,
      "not_found",
    );
    expect(await auditCount()).toBe(before);
  });

  it("a read", async () => {
    const before = await auditCount();
    await expectStatus(await withKey(actor.key, "/v1/networks"), 200);
    await expectStatus(await withKey(actor.key, "/v1/keys"), 200);
    await expectStatus(await withKey(operator.key, "/v1/audit"), 200);
    await withKey(actor.key, "/v1/networks", { method: "HEAD" });
    expect(await auditCount()).toBe(before);
  });
});

describe("no body or secret in the log", () => {
  it("holds none of the key values, network secrets and tokens, or partner secrets created", async () => {
    const secrets: string[] = [actor.key, operator.key];
    const key = await oneRowFor(actor, "POST", "/v1/keys", 201, { name: "secret holder", scope: "read-only" });
    secrets.push(String(key.answer.key));
    const rotatedKey = await oneRowFor(actor, "POST", `/v1/keys/${String(key.answer.id)}/rotate`, 200);
    secrets.push(String(rotatedKey.answer.key));
    const networkId = uniqueId("net");
    const network = await oneRowFor(actor, "POST", "/v1/networks", 201, {
      id: networkId,
      name: "Secretive",
      auth: { methods: ["standard_webhooks", "token"], ip_allowlist: [] },
    });
    secrets.push(String(network.answer.secret), String(network.answer.token));
    const token = await oneRowFor(actor, "POST", `/v1/networks/${networkId}/tokens`, 201);
    secrets.push(String(token.answer.token));
    const partner = await oneRowFor(actor, "POST", "/v1/partners", 201, {
      name: "Signed",
      url_template: `${PARTNER}/ok/${uniqueId("signed")}`,
      headers: { "x-api-key": "partner-header-secret" },
      sign: true,
    });
    secrets.push(String(partner.answer.signing_secret), "partner-header-secret");
    const user = uniqueId("personal-user");
    await oneRowFor(actor, "POST", "/v1/erasure", 201, { user_id: user });
    secrets.push(user);

    const { results } = await env.DB.prepare("SELECT * FROM audit_log").all();
    const dump = JSON.stringify(results);
    for (const secret of secrets) {
      expect(secret.length).toBeGreaterThan(5);
      expect(dump, `the audit log holds ${secret}`).not.toContain(secret);
    }
  });
});

describe("GET /v1/audit", () => {
  it("filters by key_id, action and since/until, newest first, paged with a cursor", async () => {
    const reader = await createApiKey({ scope: "admin" });
    const since = new Date().toISOString();
    const made: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { answer } = await oneRowFor(reader, "POST", "/v1/keys", 201, { name: `made ${i}`, scope: "read-only" });
      made.push(String(answer.id));
    }
    await oneRowFor(reader, "POST", `/v1/keys/${made[0]}/rotate`, 200);

    const mine = await expectStatus<{ data: AuditEntry[]; next_cursor: string | null }>(
      await withKey(operator.key, `/v1/audit?key_id=${reader.id}`),
      200,
    );
    expect(mine.data.map((e) => e.action)).toEqual(["rotateApiKey", "createApiKey", "createApiKey", "createApiKey"]);
    expect(mine.data.map((e) => e.target.id ?? e.target.key_id)).toEqual([made[0], made[2], made[1], made[0]]);
    expect(mine.data.every((e) => e.key_id === reader.id)).toBe(true);

    const creates = await expectStatus<{ data: AuditEntry[] }>(
      await withKey(operator.key, `/v1/audit?key_id=${reader.id}&action=createApiKey`),
      200,
    );
    expect(creates.data.length).toBe(3);

    const pages: AuditEntry[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `/v1/audit?key_id=${reader.id}&limit=1${cursor ? `&cursor=${cursor}` : ""}`;
      const page: { data: AuditEntry[]; next_cursor: string | null } = await expectStatus(
        await withKey(operator.key, query),
        200,
      );
      pages.push(...page.data);
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(pages.map((e) => e.id)).toEqual(mine.data.map((e) => e.id));

    const inRange = await expectStatus<{ data: AuditEntry[] }>(
      await withKey(
        operator.key,
        `/v1/audit?key_id=${reader.id}&since=${since}&until=${new Date(Date.now() + 60_000).toISOString()}`,
      ),
      200,
    );
    expect(inRange.data.length).toBe(4);
    const before = await expectStatus<{ data: AuditEntry[] }>(
      await withKey(operator.key, `/v1/audit?key_id=${reader.id}&until=${since}`),
      200,
    );
    expect(before.data).toEqual([]);
  });

  it("is read by admin and operator keys, not read-only, network or partner keys", async () => {
    await expectStatus(await withKey(actor.key, "/v1/audit"), 200);
    await expectStatus(await withKey(operator.key, "/v1/audit"), 200);
    const readOnly = await createApiKey({ scope: "read-only" });
    await expectProblem(await withKey(readOnly.key, "/v1/audit"), 403, "forbidden");
  });
});
