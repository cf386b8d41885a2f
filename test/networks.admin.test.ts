import { describe, expect, it } from "vitest";
import { admin, createNetwork, expectStatus, uniqueId } from "./support/helpers";

interface Network {
  id: string;
  name: string;
  status: string;
  secret?: string;
  secrets?: { id: string; expires_at: string | null }[];
}

describe("admin API: networks", () => {
  it("creates a network and shows its Standard Webhooks secret once", async () => {
    const id = uniqueId("acme");
    const created = await expectStatus<Network>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id, name: "Acme Network" }) }),
      201,
    );
    expect(created).toMatchObject({ id, name: "Acme Network", status: "active" });
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(atob(String(created.secret).slice(6))).toHaveLength(32);

    const fetched = await expectStatus<Network>(await admin(`/v1/networks/${id}`), 200);
    expect(fetched.secret).toBeUndefined();
    expect(fetched.secrets).toHaveLength(1);
    expect(fetched.secrets?.[0]?.expires_at).toBeNull();
  });

  it("refuses a taken id with 409 and an invalid one with 422", async () => {
    const { id } = await createNetwork();
    const taken = await expectStatus<{ code: string }>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id, name: "Again" }) }),
      409,
    );
    expect(taken.code).toBe("already_exists");
    const invalid = await expectStatus<{ code: string; errors: { location: string }[] }>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: "Bad Id!", name: "", extra: 1 }) }),
      422,
    );
    expect(invalid.code).toBe("validation_failed");
    expect(invalid.errors.map((e) => e.location).sort()).toEqual(["body.extra", "body.id", "body.name"]);
  });

  it("answers 400 for a body that is not JSON", async () => {
    const response = await admin("/v1/networks", { method: "POST", body: "{not json" });
    const problem = await expectStatus<{ code: string }>(response, 400);
    expect(problem.code).toBe("malformed_json");
    expect(response.headers.get("content-type")).toBe("application/problem+json");
  });

  it("lists networks page by page with a cursor", async () => {
    const ids = [uniqueId("page-a"), uniqueId("page-b"), uniqueId("page-c")];
    for (const id of ids) await createNetwork(id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=2&cursor=${encodeURIComponent(cursor)}` : "?limit=2";
      const pageBody: { data: Network[]; next_cursor: string | null } = await expectStatus(
        await admin(`/v1/networks${query}`),
        200,
      );
      expect(pageBody.data.length).toBeLessThanOrEqual(2);
      seen.push(...pageBody.data.map((n) => n.id));
      cursor = pageBody.next_cursor;
    } while (cursor);
    for (const id of ids) expect(seen).toContain(id);
    expect(new Set(seen).size).toBe(seen.length);
    expect([...seen].sort()).toEqual(seen);
  });

  it("rejects a forged cursor and an out-of-range limit", async () => {
    const forged = await expectStatus<{ errors: { location: string }[] }>(
      await admin("/v1/networks?cursor=bm90LWEtY3Vyc29y"),
      400,
    );
    expect(forged.errors[0]?.location).toBe("query.cursor");
    const limit = await expectStatus<{ errors: { location: string }[] }>(await admin("/v1/networks?limit=0"), 422);
    expect(limit.errors[0]?.location).toBe("query.limit");
  });

  it("disables and enables a network", async () => {
    const { id } = await createNetwork();
    expect(
      (await expectStatus<Network>(await admin(`/v1/networks/${id}/disable`, { method: "POST" }), 200)).status,
    ).toBe("disabled");
    expect((await expectStatus<Network>(await admin(`/v1/networks/${id}`), 200)).status).toBe("disabled");
    expect(
      (await expectStatus<Network>(await admin(`/v1/networks/${id}/enable`, { method: "POST" }), 200)).status,
    ).toBe("active");
  });

  it("answers 404 problem+json for a network that does not exist", async () => {
    for (const [path, method] of [
      ["/v1/networks/nobody-here", "GET"],
      ["/v1/networks/nobody-here/disable", "POST"],
      ["/v1/networks/nobody-here/secrets", "POST"],
    ] as const) {
      const problem = await expectStatus<{ code: string }>(await admin(path, { method }), 404);
      expect(problem.code).toBe("not_found");
    }
  });

  it("rotates a secret and lists the old one with the end of its grace period", async () => {
    const { id } = await createNetwork();
    const rotated = await expectStatus<{ secret: string; secret_id: string; previous_secrets_expire_at: string }>(
      await admin(`/v1/networks/${id}/secrets`, {
        method: "POST",
        body: JSON.stringify({ grace_period_seconds: 3600 }),
      }),
      201,
    );
    expect(rotated.secret).toMatch(/^whsec_/);
    const graceMs = Date.parse(rotated.previous_secrets_expire_at) - Date.now();
    expect(graceMs).toBeGreaterThan(3500_000);
    expect(graceMs).toBeLessThanOrEqual(3600_000);
    const detail = await expectStatus<Network>(await admin(`/v1/networks/${id}`), 200);
    expect(detail.secrets?.map((s) => s.expires_at)).toEqual([null, rotated.previous_secrets_expire_at]);
    expect(detail.secrets?.[0]?.id).toBe(rotated.secret_id);
  });
});

describe("admin API: content types", () => {
  it("answers 415 problem+json, not 500, for a form or text body", async () => {
    for (const contentType of ["application/x-www-form-urlencoded", "text/plain"]) {
      const response = await admin("/v1/networks", {
        method: "POST",
        headers: { "content-type": contentType },
        body: "id=acme&name=Acme",
      });
      const problem = await expectStatus<{ code: string }>(response, 415);
      expect(problem.code).toBe("unsupported_media_type");
      expect(response.headers.get("content-type")).toBe("application/problem+json");
    }
  });
});
