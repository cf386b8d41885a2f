/**
 * An export that storage fails (docs/reports.md#exports): before the first byte, an ordinary problem
 * answer; after it, a broken transfer, never a file that ends cleanly without its rows. D1 fails for
 * real here: the conversions table is renamed away under a running export, and back afterwards.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { seedConversions, textOf } from "./support/exports";
import { admin, createNetwork } from "./support/helpers";
import { expectProblem } from "./support/problems";

/** Takes the conversions table away (every query on it fails) until `restore`, or the test's end. */
async function withoutConversionsTable(): Promise<{ restore: () => Promise<void> }> {
  await env.DB.prepare("ALTER TABLE conversions RENAME TO conversions_away").run();
  let away = true;
  const restore = async () => {
    if (!away) return;
    away = false;
    await env.DB.prepare("ALTER TABLE conversions_away RENAME TO conversions").run();
  };
  onTestFinished(restore);
  return { restore };
}

describe("an export when D1 fails", () => {
  const seeding = (async () => {
    const network = await createNetwork();
    await seedConversions(network.id, 2600, Date.parse("2026-05-01T00:00:00Z"));
    return network;
  })();

  it("breaks the transfer when a page fails after the answer started, and logs how far it got", async () => {
    const network = await seeding;
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    onTestFinished(() => errors.mockRestore());
    for (const format of ["csv", "ndjson"]) {
      const response = await admin(`/v1/conversions?network_id=${network.id}&format=${format}`);
      expect(response.status).toBe(200);
      const reader = response.body?.getReader();
      if (!reader) throw new Error("no body");
      const first = await reader.read();
      expect(first.done).toBe(false);
      const table = await withoutConversionsTable();
      const received: Uint8Array[] = first.value ? [first.value] : [];
      const outcome = await (async () => {
        for (;;) {
          const next = await reader.read();
          if (next.done) return "ended cleanly";
          received.push(next.value);
        }
      })().catch((error: unknown) => error);
      expect(outcome).not.toBe("ended cleanly");
      expect(outcome).toBeInstanceOf(Error);
      // What did arrive is a prefix: fewer rows than the export has.
      const lines = textOf(received).split(format === "csv" ? "\r\n" : "\n").length;
      expect(lines).toBeLessThan(2600);
      await table.restore();
    }
    const failures = errors.mock.calls
      .map(([line]) => String(line))
      .filter((line) => line.includes("export failed after it started"))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(failures).toHaveLength(2);
    for (const failure of failures) {
      expect(failure).toMatchObject({ export: "conversions", key_id: "admin_token" });
      expect(failure.rows).toBeGreaterThan(0);
      expect(failure.rows).toBeLessThan(2600);
      expect(String(failure.error)).toContain("conversions");
    }
  });

  it("answers a problem, not a 200, when the first page already fails", async () => {
    const network = await seeding;
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    onTestFinished(() => errors.mockRestore());
    await withoutConversionsTable();
    const problem = await expectProblem(
      await admin(`/v1/conversions?network_id=${network.id}&format=csv`),
      500,
      "internal_error",
    );
    expect(problem.detail).not.toContain("conversions_away");
  });
});
