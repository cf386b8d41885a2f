import { describe, expect, it } from "vitest";
import {
  admin,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  type TestNetwork,
} from "./support/helpers";

interface Conversion {
  network_id: string;
  transaction_id: string;
  status: string;
  campaign_id: string | null;
  platform: string | null;
  first_seen_at: string;
  test: boolean;
}
interface Page {
  data: Conversion[];
  next_cursor: string | null;
}

async function seed(network: TestNetwork, bodies: Record<string, unknown>[]) {
  for (const body of bodies) await expectStatus(await postback(network, body), 200);
  await eventually(async () => {
    const page = await expectStatus<Page>(await admin(`/v1/conversions?network_id=${network.id}&limit=200`), 200);
    return page.data.length === bodies.length ? page : null;
  });
}

async function listAll(query: string): Promise<Conversion[]> {
  const all: Conversion[] = [];
  let cursor: string | null = null;
  do {
    const suffix: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page: Page = await expectStatus(await admin(`/v1/conversions?${query}${suffix}`), 200);
    all.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return all;
}

describe("GET /v1/conversions", () => {
  it("filters by network, status, campaign and platform, and pages with a cursor", async () => {
    const network = await createNetwork();
    const other = await createNetwork();
    await seed(network, [
      makePostback({ status: "pending", campaign_id: "c-1", platform: "ios" }),
      makePostback({ status: "approved", campaign_id: "c-1", platform: "android" }),
      makePostback({ status: "approved", campaign_id: "c-2", platform: "ios" }),
      makePostback({ status: "paid", campaign_id: "c-2", platform: "web" }),
      makePostback({ status: "approved", campaign_id: "c-1", platform: "ios" }),
    ]);
    await seed(other, [makePostback({ status: "approved", campaign_id: "c-1" })]);

    const mine = await listAll(`network_id=${network.id}&limit=2`);
    expect(mine).toHaveLength(5);
    expect(new Set(mine.map((c) => c.transaction_id)).size).toBe(5);
    const times = mine.map((c) => c.first_seen_at);
    expect([...times].sort().reverse()).toEqual(times);

    const approved = await listAll(`network_id=${network.id}&status=approved`);
    expect(approved.map((c) => c.status)).toEqual(["approved", "approved", "approved"]);
    const c1ios = await listAll(`network_id=${network.id}&campaign_id=c-1&platform=ios`);
    expect(c1ios).toHaveLength(2);
    expect(c1ios.every((c) => c.campaign_id === "c-1" && c.platform === "ios")).toBe(true);
  });

  it("filters by a time range on first_seen_at", async () => {
    const network = await createNetwork();
    await seed(network, [makePostback(), makePostback()]);
    const all = await listAll(`network_id=${network.id}`);
    const newest = all[0]?.first_seen_at ?? "";
    const since = await listAll(`network_id=${network.id}&since=${encodeURIComponent(newest)}`);
    expect(since.map((c) => c.first_seen_at)).toEqual([newest]);
    const until = await listAll(`network_id=${network.id}&until=${encodeURIComponent(newest)}`);
    expect(until.every((c) => c.first_seen_at < newest)).toBe(true);
    expect(since.length + until.length).toBe(all.length);
  });

  it("shows which conversions came from test postbacks, and filters on it", async () => {
    const network = await createNetwork();
    const live = makePostback();
    const trial = makePostback();
    await expectStatus(await postback(network, live), 200);
    await expectStatus(await postback(network, { ...trial, test: true }), 200);
    const all = await eventually(async () => {
      const found = await listAll(`network_id=${network.id}`);
      return found.length === 2 ? found : null;
    });
    const flags = Object.fromEntries(all.map((c) => [c.transaction_id, c.test]));
    expect(flags).toEqual({ [String(live.transaction_id)]: false, [String(trial.transaction_id)]: true });
    const tests = await listAll(`network_id=${network.id}&test=true`);
    expect(tests.map((c) => c.transaction_id)).toEqual([trial.transaction_id]);
    const lives = await listAll(`network_id=${network.id}&test=false`);
    expect(lives.map((c) => c.transaction_id)).toEqual([live.transaction_id]);
    const detail = await expectStatus<{ test: boolean; events: { test: boolean }[] }>(
      // The detail serves the live conversion unless asked for the test one.
      await admin(`/v1/conversions/${network.id}/${trial.transaction_id}?test=true`),
      200,
    );
    expect(detail.test).toBe(true);
    expect(detail.events.map((e) => e.test)).toEqual([true]);
  });

  it("rejects bad filters with 422 naming the parameter", async () => {
    const problem = await expectStatus<{ errors: { location: string; message: string }[] }>(
      await admin("/v1/conversions?status=maybe&since=yesterday&limit=500&test=yes"),
      422,
    );
    expect(problem.errors.map((e) => e.location).sort()).toEqual([
      "query.limit",
      "query.since",
      "query.status",
      "query.test",
    ]);
    expect(problem.errors.find((e) => e.location === "query.test")?.message).toBe("must be true or false");
  });

  it("answers 404 for a conversion that does not exist", async () => {
    const problem = await expectStatus<{ code: string }>(await admin("/v1/conversions/acme/never-seen"), 404);
    expect(problem.code).toBe("not_found");
  });
});
