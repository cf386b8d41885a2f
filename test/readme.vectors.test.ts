/**
 * The README is the contract for networks that sign their query strings: every published vector
 * (the same fixture the signed-query tests verify) must appear in it, signature and canonical form.
 */
import { describe, expect, it } from "vitest";
import readme from "../README.md?raw";
import fixture from "./fixtures/signed-query-vectors.json";

describe("README signed-query vectors", () => {
  it.each(fixture.vectors.map((v) => [v.name, v] as const))("publishes the %s vector", (_, vector) => {
    expect(readme).toContain(vector.signature);
    expect(readme).toContain(vector.canonical);
  });
});
