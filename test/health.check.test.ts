import { createExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { expectStatus } from "./support/helpers";

describe("GET /health", () => {
  it("answers ok when configured and migrated", async () => {
    const body = await expectStatus(await exports.default.fetch("https://hub.test/health"), 200);
    expect(body).toMatchObject({ status: "ok" });
  });

  it("answers 503 when D1 lacks the schema", async () => {
    const response = await worker.fetch(
      new Request("https://hub.test/health"),
      { ...env, DB: env.UNMIGRATED_DB },
      createExecutionContext(),
    );
    const problem = await expectStatus<{ code: string; detail: string }>(response, 503);
    expect(problem.code).toBe("storage_unavailable");
    expect(problem.detail).toMatch(/migrations/);
  });

  it("answers 500 naming a missing secret, without revealing values", async () => {
    const { ENCRYPTION_KEY: _dropped, ...rest } = env;
    const response = await worker.fetch(
      new Request("https://hub.test/health"),
      { ...rest, ADMIN_TOKEN: "short" } as unknown as Env,
      createExecutionContext(),
    );
    const text = await response.text();
    expect(response.status, text).toBe(500);
    expect(text).toContain("ENCRYPTION_KEY");
    expect(text).toContain("ADMIN_TOKEN");
    expect(text).not.toContain("short");
  });
});
