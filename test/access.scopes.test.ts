/**
 * Scopes on every admin route: each operation of /openapi.json, called with a key of each scope
 * (admin, operator, read-only, a network key of network A, a partner key of partner P), is refused
 * with 403 problem+json exactly where access/policy.ts says so, and only there. The matrix is built
 * from the document and ACCESS, so a new route is covered without touching this file. Then the
 * subject rules as an attacker tries them: another network's or partner's ids in the path, the
 * query, a record's id, case and percent-encoded variants, repeated parameters, HEAD, and explain.
 */
import { env, exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { ACCESS, type Access, type SubjectRule, scopeAllows } from "../src/access/policy";
import type { Principal, Scope } from "../src/domain/access";
import { createApiKey, withKey } from "./support/access";
import { pendingDelivery } from "./support/deliveries";
import {
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  type TestNetwork,
  type TestPartner,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, getPostback, TOKEN_ONLY, TRACKER_MAPPING, tokenOf } from "./support/inbound";
import { expectLocations, expectProblem, type ProblemBody } from "./support/problems";

interface Operation {
  operationId?: string;
  security?: Record<string, unknown>[];
  parameters?: { name: string; in: string }[];
  requestBody?: unknown;
}

const HTTP_METHODS = ["get", "post", "put", "patch", "delete"] as const;
const document = (await (await exports.default.fetch(`${BASE}/openapi.json`)).json()) as {
  paths: Record<string, Partial<Record<(typeof HTTP_METHODS)[number], Operation>>>;
};

interface AdminOperation {
  method: string;
  path: string;
  operationId: string;
  access: Access;
  hasBody: boolean;
}

/** Every operation whose security is exactly the API key: the admin API. */
const adminOperations: AdminOperation[] = Object.entries(document.paths).flatMap(([path, item]) =>
  HTTP_METHODS.flatMap((method) => {
    const operation = item[method];
    if (JSON.stringify(operation?.security) !== JSON.stringify([{ apiKey: [] }])) return [];
    const operationId = operation?.operationId ?? `(no operationId: ${method} ${path})`;
    return [
      {
        method: method.toUpperCase(),
        path,
        operationId,
        access: ACCESS[operationId] ?? { scopes: [] },
        hasBody: operation?.requestBody !== undefined,
      },
    ];
  }),
);

const SCOPES = ["admin", "operator", "read-only", "network", "partner"] as const satisfies readonly Scope[];

/** What the fixtures are: two networks, two partners, and records of each. */
interface World {
  a: TestNetwork & { token: string };
  b: TestNetwork;
  p: TestPartner;
  q: TestPartner;
  txA: string;
  txB: string;
  /** Inbound log request ids (the x-request-id of a postback's answer). */
  requestA: string;
  requestB: string;
  /** Failed deliveries of P and Q. */
  deliveryP: string;
  deliveryQ: string;
  keys: Record<Scope, string>;
}

let world: World;

/** The ids a request of a key names: its own subject's, another's, or made-up ones (the other scopes). */
function idsFor(scope: Scope, whose: "own" | "other"): Record<string, string> {
  if (scope !== "network" && scope !== "partner") return {};
  const own = whose === "own";
  return {
    network_id: own ? world.a.id : world.b.id,
    transaction_id: own ? world.txA : world.txB,
    partner_id: own ? world.p.id : world.q.id,
    delivery_id: own ? world.deliveryP : world.deliveryQ,
    request_id: own ? world.requestA : world.requestB,
  };
}

function ruleOf(scope: Scope, access: Access): SubjectRule | undefined {
  return scope === "network" ? access.network : scope === "partner" ? access.partner : undefined;
}

function requestFor(target: AdminOperation, scope: Scope, whose: "own" | "other" = "own"): Promise<Response> {
  const ids = idsFor(scope, whose);
  const path = target.path.replace(/\{([^}]+)\}/g, (_, name: string) =>
    encodeURIComponent(ids[name] ?? `example-${name.replaceAll("_", "-")}`),
  );
  const rule = ruleOf(scope, target.access);
  const query = rule && "query" in rule ? `?${rule.query}=${encodeURIComponent(ids[rule.query] ?? "")}` : "";
  return withKey(world.keys[scope], `${path}${query}`, {
    method: target.method,
    ...(target.hasBody ? { body: "{}" } : {}),
  });
}

function principal(scope: Scope): Principal {
  return { key_id: "k", name: "k", scope, subject_id: null, issued_at_ms: 0 };
}

/** The location a refusal names: the key itself, or where the request named someone else's. */
function refusedAt(rule: SubjectRule | undefined): string {
  if (!rule) return "header.authorization";
  if ("path" in rule) return `path.${rule.path}`;
  if ("query" in rule) return `query.${rule.query}`;
  return rule.owner === "delivery" ? "path.delivery_id" : "path.request_id";
}

const matrix = adminOperations.flatMap((target) =>
  SCOPES.map((scope) => ({ ...target, scope, allowed: scopeAllows(principal(scope), target.access) })),
);
const refused = matrix.filter((entry) => !entry.allowed);
const allowed = matrix.filter((entry) => entry.allowed);
/** Allowed only for the key's own network or partner: the same call naming another's is refused. */
const subjectBound = allowed.filter((entry) => ruleOf(entry.scope, entry.access) !== undefined);

/** What an admin action could have changed: counts and states a refused request must leave alone. */
async function adminState(): Promise<unknown[]> {
  const tables = ["networks", "network_secrets", "partners", "partner_secrets", "offers", "api_keys", "audit_log"];
  const counts = await Promise.all(
    [...tables, "replay_jobs", "erasures"].map(
      async (table) => (await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table}`).first<{ n: number }>())?.n,
    ),
  );
  const { results: networks } = await env.DB.prepare("SELECT id, status, updated_at FROM networks ORDER BY id").all();
  const { results: partners } = await env.DB.prepare("SELECT id, status, updated_at FROM partners ORDER BY id").all();
  const { results: deliveries } = await env.DB.prepare(
    "SELECT id, state, attempts FROM deliveries WHERE id IN (?, ?) ORDER BY id",
  )
    .bind(world.deliveryP, world.deliveryQ)
    .all();
  return [counts, networks, partners, deliveries];
}

/** Posts a conversion and waits for it and its inbound log row; returns the row's request id. */
async function loggedPostback(send: () => Promise<Response>, networkId: string, transactionId: string) {
  const response = await send();
  await expectStatus(response, 200);
  const requestId = response.headers.get("x-request-id") ?? "";
  await eventually(() => conversionInD1(networkId, transactionId));
  await eventually(async () => ((await admin(`/v1/requests/${requestId}`)).status === 200 ? true : null));
  return requestId;
}

beforeAll(async () => {
  const a = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
  const b = await createNetwork();
  const prefix = `/ok/${uniqueId("scopes")}`;
  const p = await createPartner({ url_template: `${PARTNER}${prefix}/p?tx={transaction_id}` });
  const q = await createPartner({ url_template: `${PARTNER}${prefix}/q?tx={transaction_id}` });
  const txA = uniqueId("tx");
  const txB = uniqueId("tx");
  const requestA = await loggedPostback(
    () => getPostback(a.id, { txid: txA, payout: "1.00", status: "1", token: tokenOf(a) }),
    a.id,
    txA,
  );
  const requestB = await loggedPostback(() => postback(b, makePostback({ transaction_id: txB })), b.id, txB);
  const keys = {
    admin: (await createApiKey({ scope: "admin" })).key,
    operator: (await createApiKey({ scope: "operator" })).key,
    "read-only": (await createApiKey({ scope: "read-only" })).key,
    network: (await createApiKey({ scope: "network", subject_id: a.id })).key,
    partner: (await createApiKey({ scope: "partner", subject_id: p.id })).key,
  };
  world = {
    a: { ...a, token: tokenOf(a) },
    b,
    p,
    q,
    txA,
    txB,
    requestA,
    requestB,
    deliveryP: await pendingDelivery(p.id, { state: "failed", attempts: 3 }),
    deliveryQ: await pendingDelivery(q.id, { state: "failed", attempts: 3 }),
    keys,
  };
});

describe("the policy table and the OpenAPI document", () => {
  it("finds the admin operations, so the matrix cannot pass vacuously", () => {
    expect(adminOperations.length).toBeGreaterThan(40);
    expect(matrix.length).toBe(adminOperations.length * SCOPES.length);
    expect(refused.length).toBeGreaterThan(0);
    expect(subjectBound.length).toBeGreaterThan(0);
  });

  it("has an entry for every admin operation, and none for an operation that is not there", () => {
    const documented = adminOperations.map((target) => target.operationId).sort();
    expect(Object.keys(ACCESS).sort()).toEqual(documented);
  });

  it("names each operation's scopes in its description", () => {
    for (const target of adminOperations) {
      const operation = document.paths[target.path]?.[target.method.toLowerCase() as "get"] as
        | { description?: string }
        | undefined;
      expect(operation?.description, target.operationId).toMatch(/Scopes: admin[^.]*\.$/);
    }
  });
});

describe("a key outside the operation's scope", () => {
  let before: unknown[];
  beforeAll(async () => {
    before = await adminState();
  });

  it.each(refused)("$scope: $method $path ($operationId) → 403 forbidden", async (entry) => {
    const problem = await expectProblem(await requestFor(entry, entry.scope), 403, "forbidden");
    expect(problem.errors[0]?.location, JSON.stringify(problem)).toBe("header.authorization");
    expect(problem.detail).toContain(entry.operationId);
  });

  it("changed nothing (no row created, no status or delivery touched, no audit row)", async () => {
    expect(await adminState()).toEqual(before);
  });

  it("is refused before its body is read: a valid create does nothing either", async () => {
    const creates: [string, string, Record<string, unknown>][] = [
      ["operator", "/v1/keys", { name: "sneaky", scope: "admin" }],
      ["read-only", "/v1/networks", { id: uniqueId("net"), name: "sneaky" }],
      ["network", "/v1/partners", { name: "sneaky", url_template: `${PARTNER}/ok/sneaky` }],
      ["partner", "/v1/offers", { network_id: world.a.id, name: "sneaky", landing_url: "https://shop.test/l" }],
      ["partner", "/v1/replays", { partner_id: world.p.id }],
    ];
    const state = await adminState();
    for (const [scope, path, body] of creates) {
      await expectProblem(
        await withKey(world.keys[scope as Scope], path, { method: "POST", body: JSON.stringify(body) }),
        403,
        "forbidden",
      );
    }
    expect(await adminState()).toEqual(state);
  });
});

describe("a key inside the operation's scope", () => {
  it.each(allowed)("$scope: $method $path ($operationId) is not refused", async (entry) => {
    const response = await requestFor(entry, entry.scope);
    const text = await response.text();
    expect([401, 403], `${response.status}: ${text}`).not.toContain(response.status);
  });

  it.each(subjectBound)("$scope: $operationId naming another's record → 403 forbidden", async (entry) => {
    const problem = await expectProblem(await requestFor(entry, entry.scope, "other"), 403, "forbidden");
    expect(problem.errors[0]?.location, JSON.stringify(problem)).toBe(refusedAt(ruleOf(entry.scope, entry.access)));
  });
});

describe("a network key", () => {
  const key = () => world.keys.network;

  it("lists its own conversions only with network_id naming it, live and test, never another network's", async () => {
    const page = await expectStatus<{ data: { network_id: string; transaction_id: string }[] }>(
      await withKey(key(), `/v1/conversions?network_id=${world.a.id}&limit=200`),
      200,
    );
    expect(page.data.map((c) => c.transaction_id)).toContain(world.txA);
    expect(new Set(page.data.map((c) => c.network_id))).toEqual(new Set([world.a.id]));

    const other = await expectProblem(
      await withKey(key(), `/v1/conversions?network_id=${world.b.id}`),
      403,
      "forbidden",
    );
    expectLocations(other, ["query.network_id"]);
    const missing = await expectProblem(await withKey(key(), "/v1/conversions?status=approved"), 403, "forbidden");
    expect(missing.errors[0]?.location).toBe("query.network_id");
  });

  it("cannot smuggle another network in a repeated, re-cased or encoded parameter, or a cursor", async () => {
    const twice = await withKey(key(), `/v1/conversions?network_id=${world.a.id}&network_id=${world.b.id}`);
    const twiceText = await twice.text();
    expect(twice.status, twiceText).not.toBe(200);
    expect(twiceText).not.toContain(world.txB);
    const reversed = await withKey(key(), `/v1/conversions?network_id=${world.b.id}&network_id=${world.a.id}`);
    expect((await reversed.text()).includes(world.txB)).toBe(false);
    expect(reversed.status).not.toBe(200);

    await expectProblem(await withKey(key(), `/v1/networks/${world.a.id.toUpperCase()}`), 403, "forbidden");
    const encoded = [...world.b.id].map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0")}`).join("");
    await expectProblem(await withKey(key(), `/v1/networks/${encoded}`), 403, "forbidden");
    await expectProblem(await withKey(key(), `/v1/networks/${encoded}/requests`), 403, "forbidden");
    // Its own id percent-encoded is its own id.
    const ownEncoded = [...world.a.id].map((ch) => `%${ch.charCodeAt(0).toString(16).padStart(2, "0")}`).join("");
    await expectStatus(await withKey(key(), `/v1/networks/${ownEncoded}`), 200);

    // An operator's cursor over every network keeps the network key's filter.
    const all = await expectStatus<{ next_cursor: string | null }>(await admin("/v1/conversions?limit=1"), 200);
    expect(all.next_cursor).not.toBeNull();
    const next = await expectStatus<{ data: { network_id: string }[] }>(
      await withKey(key(), `/v1/conversions?network_id=${world.a.id}&cursor=${all.next_cursor}`),
      200,
    );
    for (const row of next.data) expect(row.network_id).toBe(world.a.id);
  });

  it("answers HEAD as it answers GET: refused for another network", async () => {
    const head = await withKey(key(), `/v1/networks/${world.b.id}`, { method: "HEAD" });
    expect(head.status).toBe(403);
    expect((await withKey(key(), `/v1/networks/${world.a.id}`, { method: "HEAD" })).status).toBe(200);
  });

  it("reads its own conversion and its proof, not another network's", async () => {
    await expectStatus(await withKey(key(), `/v1/conversions/${world.a.id}/${world.txA}`), 200);
    await expectStatus(await withKey(key(), `/v1/conversions/${world.a.id}/${world.txA}/proof`), 200);
    for (const suffix of ["", "/proof"]) {
      const problem = await expectProblem(
        await withKey(key(), `/v1/conversions/${world.b.id}/${world.txB}${suffix}`),
        403,
        "forbidden",
      );
      expect(problem.errors[0]?.location).toBe("path.network_id");
    }
  });

  it("reads its inbound log by network and by request id; another's request id and a made-up one get the same 403", async () => {
    const page = await expectStatus<{ data: { request_id: string; network_id: string }[] }>(
      await withKey(key(), `/v1/networks/${world.a.id}/requests`),
      200,
    );
    expect(page.data.map((r) => r.request_id)).toContain(world.requestA);
    expect(new Set(page.data.map((r) => r.network_id))).toEqual(new Set([world.a.id]));
    await expectStatus(await withKey(key(), `/v1/requests/${world.requestA}`), 200);
    await expectStatus(await withKey(key(), `/v1/requests/unlogged?network_id=${world.a.id}`), 200);
    await expectProblem(await withKey(key(), `/v1/requests/unlogged`), 403, "forbidden");

    const theirs = await expectProblem(await withKey(key(), `/v1/requests/${world.requestB}`), 403, "forbidden");
    const madeUp = await expectProblem(await withKey(key(), `/v1/requests/${uniqueId("req")}`), 403, "forbidden");
    const shape = (problem: ProblemBody) => ({ detail: problem.detail, errors: problem.errors });
    expect(shape(theirs)).toEqual(shape(madeUp));
    expect(JSON.stringify(theirs)).not.toContain(world.b.id);
  });

  it("explains its own network's postbacks with failing network credentials, in the network's view", async () => {
    const url = `/v1/postbacks/${world.a.id}/explain?txid=${uniqueId("tx")}&payout=2.00&status=1&token=wrong-token`;
    const explanation = await expectStatus<{ partners: Record<string, unknown>[] }>(await withKey(key(), url), 200);
    expect(explanation.partners.length).toBeGreaterThan(0);
    for (const partner of explanation.partners) expect(partner).not.toHaveProperty("request");
    // The operator's keys get the partners' rendered requests.
    const asOperator = await expectStatus<{ partners: Record<string, unknown>[] }>(
      await withKey(world.keys.operator, url),
      200,
    );
    expect(asOperator.partners.some((partner) => "request" in partner)).toBe(true);
  });

  it("may not explain another network's postbacks; nor may a partner key explain any", async () => {
    const url = `/v1/postbacks/${world.b.id}/explain`;
    const problem = await expectProblem(
      await withKey(key(), url, { method: "POST", body: JSON.stringify(makePostback()) }),
      403,
      "forbidden",
    );
    expect(problem.errors[0]?.location).toBe("header.authorization");
    await expectProblem(await withKey(world.keys.partner, `/v1/postbacks/${world.a.id}/explain`), 403, "forbidden");
  });
});

describe("a partner key", () => {
  const key = () => world.keys.partner;

  it("lists deliveries only with partner_id naming its partner, and sees only those", async () => {
    const page = await expectStatus<{ data: { id: string; partner_id: string }[] }>(
      await withKey(key(), `/v1/deliveries?partner_id=${world.p.id}&limit=200`),
      200,
    );
    expect(page.data.map((d) => d.id)).toContain(world.deliveryP);
    expect(new Set(page.data.map((d) => d.partner_id))).toEqual(new Set([world.p.id]));
    const other = await expectProblem(
      await withKey(key(), `/v1/deliveries?partner_id=${world.q.id}`),
      403,
      "forbidden",
    );
    expect(other.errors[0]?.location).toBe("query.partner_id");
    await expectProblem(await withKey(key(), `/v1/deliveries?state=failed`), 403, "forbidden");
    const twice = await withKey(key(), `/v1/deliveries?partner_id=${world.p.id}&partner_id=${world.q.id}`);
    const text = await twice.text();
    expect(twice.status, text).not.toBe(200);
    expect(text).not.toContain(world.deliveryQ);
  });

  it("reads its own delivery, without the conversion's attribution (another partner's payout)", async () => {
    const id = await pendingDelivery(world.p.id, { state: "failed", attempts: 1 });
    await env.DB.prepare("UPDATE deliveries SET payload = json_set(payload, '$.attribution', json(?)) WHERE id = ?")
      .bind(JSON.stringify({ partner_id: world.q.id, payout: { amount: "77.77", currency: "USD" } }), id)
      .run();
    const response = await withKey(key(), `/v1/deliveries/${id}`);
    const text = await response.clone().text();
    await expectStatus(response, 200);
    expect(text).not.toContain("77.77");
    expect(text).not.toContain(world.q.id);
  });

  it("replays its own delivery; another partner's delivery is refused and left as it was", async () => {
    const own = await pendingDelivery(world.p.id, { state: "failed", attempts: 2 });
    const theirs = await pendingDelivery(world.q.id, { state: "failed", attempts: 2 });
    await expectStatus(await withKey(key(), `/v1/deliveries/${own}/replay`, { method: "POST" }), 202);
    for (const method of ["GET", "POST"]) {
      const path = method === "GET" ? `/v1/deliveries/${theirs}` : `/v1/deliveries/${theirs}/replay`;
      const problem = await expectProblem(await withKey(key(), path, { method }), 403, "forbidden");
      expect(problem.errors[0]?.location).toBe("path.delivery_id");
    }
    const row = await env.DB.prepare("SELECT state, attempts FROM deliveries WHERE id = ?").bind(theirs).first();
    expect(row).toEqual({ state: "failed", attempts: 2 });
  });

  it("reads its own partner page, not another's", async () => {
    await expectStatus(await withKey(key(), `/v1/partners/${world.p.id}`), 200);
    await expectProblem(await withKey(key(), `/v1/partners/${world.q.id}`), 403, "forbidden");
    await expectProblem(await withKey(key(), "/v1/partners"), 403, "forbidden");
  });

  it("bulk-replays its own partner only", async () => {
    const theirs = await pendingDelivery(world.q.id, { state: "failed", attempts: 1 });
    const result = await expectStatus<{ dry_run: boolean; matched: number }>(
      await withKey(key(), `/v1/partners/${world.p.id}/replay`, {
        method: "POST",
        body: JSON.stringify({ dry_run: true }),
      }),
      200,
    );
    expect(result.dry_run).toBe(true);
    const problem = await expectProblem(
      await withKey(key(), `/v1/partners/${world.q.id}/replay`, { method: "POST", body: "{}" }),
      403,
      "forbidden",
    );
    expect(problem.errors[0]?.location).toBe("path.partner_id");
    await expectProblem(
      await withKey(key(), "/v1/replays", { method: "POST", body: JSON.stringify({ partner_id: world.q.id }) }),
      403,
      "forbidden",
    );
    const row = await env.DB.prepare("SELECT state FROM deliveries WHERE id = ?").bind(theirs).first();
    expect(row).toEqual({ state: "failed" });
  });
});
