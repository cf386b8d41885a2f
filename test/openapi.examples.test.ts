/**
 * The examples of the API reference are true: what /docs's "Test request" sends from the documented
 * examples, in the order the reference's "Getting started" tells, works against a fresh hub. Every
 * value below is read from /openapi.json; only the token comes from the hub's answer, as a reader's would.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ADMIN_TOKEN, BASE, eventually, expectStatus } from "./support/helpers";

interface Parameter {
  name: string;
  in: string;
  example?: unknown;
  schema?: { example?: unknown };
}

interface Operation {
  operationId: string;
  parameters?: Parameter[];
  requestBody?: { content: Record<string, { example?: unknown }> };
}

interface OpenApiDocument {
  paths: Record<string, Record<string, Operation>>;
}

const doc = await expectStatus<OpenApiDocument>(await exports.default.fetch(`${BASE}/openapi.json`), 200);

function find(operationId: string): { method: string; path: string; operation: Operation } {
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (operation.operationId === operationId) return { method: method.toUpperCase(), path, operation };
    }
  }
  throw new Error(`no operation ${operationId}`);
}

function exampleOf(parameter: Parameter): string | undefined {
  const example = parameter.example ?? parameter.schema?.example;
  return example === undefined ? undefined : String(example);
}

/**
 * The request the reference builds from an operation's examples: path, query and JSON body. `path`
 * fills in a path parameter as a reader would, with an id the hub answered earlier.
 */
function exampleRequest(
  operationId: string,
  headers: Record<string, string>,
  query: Record<string, string> = {},
  pathValues: Record<string, string> = {},
) {
  const { method, path, operation } = find(operationId);
  const parameters = operation.parameters ?? [];
  const url = new URL(
    `${BASE}${path.replace(/\{([^}]+)\}/g, (_, name: string) => {
      const parameter = parameters.find((p) => p.in === "path" && p.name === name);
      const example = pathValues[name] ?? (parameter && exampleOf(parameter));
      if (example === undefined) throw new Error(`${operationId}: path parameter ${name} has no example`);
      return encodeURIComponent(example);
    })}`,
  );
  for (const parameter of parameters) {
    const example = exampleOf(parameter);
    if (parameter.in === "query" && example !== undefined) url.searchParams.set(parameter.name, example);
  }
  for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
  const body = operation.requestBody?.content["application/json"]?.example;
  return new Request(url, {
    method,
    headers: body === undefined ? headers : { ...headers, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

describe("the API reference's examples", () => {
  it("register a network, post its conversion as a GET and as JSON, and read it back", async () => {
    const adminAuth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const created = await expectStatus<{ id: string; token?: string; auth: { ip_allowlist: string[] } }>(
      await exports.default.fetch(exampleRequest("createNetwork", adminAuth)),
      201,
    );
    // An allowlist in the example would turn the postbacks below (from localhost) into 403s.
    expect(created.auth.ip_allowlist).toEqual([]);
    expect(created.token, "the example network has the token method").toMatch(/^pbt_/);
    const token = created.token ?? "";

    const viaGet = await exports.default.fetch(exampleRequest("postPostbackAsGet", {}, { token }));
    expect(await expectStatus(viaGet, 200)).toMatchObject({ status: "accepted", network_id: created.id });

    // The JSON example is the same conversion: the network repeating itself is a duplicate, not a conflict.
    const viaJson = await exports.default.fetch(exampleRequest("postPostback", { "x-postback-token": token }));
    expect(viaJson.headers.get("idempotent-replayed")).toBe("true");
    const answer = await expectStatus<{ status: string; transaction_id: string }>(viaJson, 200);
    expect(answer.status).toBe("duplicate");

    const explained = await exports.default.fetch(exampleRequest("explainPostback", { "x-postback-token": token }));
    await expectStatus(explained, 200);

    const conversion = await eventually(async () => {
      const response = await exports.default.fetch(exampleRequest("getConversion", adminAuth));
      return response.status === 200 ? ((await response.json()) as { transaction_id: string; amount: string }) : null;
    });
    expect(conversion).toMatchObject({ transaction_id: answer.transaction_id, amount: "29.99" });
  });

  it("create an offer for the example network, update it, and read it back", async () => {
    const adminAuth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    // The example network: created by the test above, or here when this one runs alone.
    const network = await exports.default.fetch(exampleRequest("createNetwork", adminAuth));
    expect([201, 409], await network.clone().text()).toContain(network.status);
    await network.body?.cancel();

    const created = await expectStatus<{ id: string; network_id: string; tracking_link: string }>(
      await exports.default.fetch(exampleRequest("createOffer", adminAuth)),
      201,
    );
    expect(created.tracking_link).toBe(`${BASE}/c/${created.id}?p={partner_id}`);

    const path = { offer_id: created.id };
    const updated = await expectStatus<{ name: string }>(
      await exports.default.fetch(exampleRequest("updateOffer", adminAuth, {}, path)),
      200,
    );
    const read = await expectStatus(await exports.default.fetch(exampleRequest("getOffer", adminAuth, {}, path)), 200);
    expect(read).toMatchObject({ ...updated, clicks: 0 });
    const listed = await expectStatus<{ data: { id: string }[] }>(
      await exports.default.fetch(exampleRequest("listOffers", adminAuth, { network_id: created.network_id })),
      200,
    );
    expect(listed.data.map((offer) => offer.id)).toContain(created.id);
  });
});
