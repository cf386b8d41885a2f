/**
 * docs/signed-query.md is the contract for networks that sign their query strings: every vector
 * the signed-query tests verify must appear in it, signature and canonical form.
 */
import { describe, expect, it } from "vitest";
import spec from "../docs/signed-query.md?raw";
import fixture from "./fixtures/signed-query-vectors.json";

describe("docs/signed-query.md vectors", () => {
  it.each(fixture.vectors.map((v) => [v.name, v] as const))("publishes the %s vector", (_, vector) => {
    expect(spec).toContain(vector.signature);
    expect(spec).toContain(vector.canonical);
    expect(spec).toContain(vector.signed_url);
  });
});
