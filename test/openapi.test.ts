import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { expectStatus } from "./support/helpers";

interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown[]; responses: Record<string, unknown> }>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
}

describe("GET /openapi.json", () => {
  it("is an OpenAPI 3.1 document generated from the zod schemas", async () => {
    const doc = await expectStatus<OpenApiDocument>(await exports.default.fetch("https://hub.test/openapi.json"), 200);
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

  it("answers unknown routes with a 404 problem", async () => {
    const response = await exports.default.fetch("https://hub.test/nope");
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });
});
