/**
 * The click redirect's budget (docs/architecture.md): for a known offer and partner in steady
 * state (both cached in the isolate), no D1 query, no Durable Object call and no queue send
 * before the 302; the click's record is sent after it. The Worker runs with an env whose bindings
 * count every use.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { BROWSER_UA, clickRows, LANDING, seedOffer } from "./support/attribution";
import { BASE, createNetwork, createPartner, eventually, PARTNER } from "./support/helpers";

interface Counts {
  d1: number;
  clicks: number;
  objects: number;
  limiter: number;
}

function countingEnv(counts: Counts): Env {
  const counting = <T extends object>(target: T, key: keyof Counts): T =>
    new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          counts[key]++;
          return value.apply(object, args);
        };
      },
    });
  return {
    ...env,
    DB: counting(env.DB, "d1"),
    CLICKS: counting(env.CLICKS, "clicks"),
    CONVERSIONS: counting(env.CONVERSIONS, "objects"),
    CLICK_RECORD_LIMITER: counting(env.CLICK_RECORD_LIMITER, "limiter"),
  };
}

async function follow(testEnv: Env, counts: Counts, path: string) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(
    new Request(`${BASE}${path}`, { headers: { "user-agent": BROWSER_UA }, redirect: "manual" }),
    testEnv,
    ctx,
  );
  const atAnswer = { ...counts };
  await waitOnExecutionContext(ctx);
  return { response, atAnswer, afterwards: { ...counts } };
}

describe("click hot path", () => {
  it("redirects a known offer's click with no D1 query, object call or queue send before the answer", async () => {
    const network = await createNetwork();
    const partner = await createPartner({ url_template: `${PARTNER}/hot?tx={transaction_id}`, routing: "attributed" });
    const offer = await seedOffer(network.id);
    const counts: Counts = { d1: 0, clicks: 0, objects: 0, limiter: 0 };
    const testEnv = countingEnv(counts);
    const link = `/c/${offer.id}?p=${partner.id}&sub1=hot`;

    // The first click of an isolate loads the offer and the partner (two reads, in parallel).
    const cold = await follow(testEnv, counts, link);
    expect(cold.response.status).toBe(302);
    expect(cold.atAnswer.d1).toBeGreaterThan(0);
    expect(cold.atAnswer.clicks).toBe(0);

    for (const key of Object.keys(counts) as (keyof Counts)[]) counts[key] = 0;
    const warm = await follow(testEnv, counts, link);
    expect(warm.response.status).toBe(302);
    expect(warm.response.headers.get("location")).toContain(LANDING);
    expect(warm.atAnswer).toEqual({ d1: 0, clicks: 0, objects: 0, limiter: 0 });
    // Checked against the flood limit and sent after the answer, never touching D1 or an object.
    expect(warm.afterwards.limiter).toBe(1);
    expect(warm.afterwards.clicks).toBeGreaterThanOrEqual(1);
    expect(warm.afterwards.d1).toBe(0);
    expect(warm.afterwards.objects).toBe(0);
    const rows = await eventually(async () => {
      const found = await clickRows(offer.id);
      return found.length >= 2 ? found : null;
    });
    expect(rows.map((r) => r.sub1)).toEqual(["hot", "hot"]);
  });
});

describe("a click flood", () => {
  it("is redirected in full but recorded only up to the limit per offer and address range", async () => {
    const network = await createNetwork();
    const partner = await createPartner({
      url_template: `${PARTNER}/flood?tx={transaction_id}`,
      routing: "attributed",
    });
    const offer = await seedOffer(network.id);
    // The test limiter allows 3 a minute per key, where the deployed one allows 120.
    const testEnv: Env = { ...env, CLICK_RECORD_LIMITER: env.TEST_RATE_LIMITER };
    const from = (ip: string) => ({ "user-agent": BROWSER_UA, "cf-connecting-ip": ip });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const ctx = createExecutionContext();
      const response = await worker.fetch(
        new Request(`${BASE}/c/${offer.id}?p=${partner.id}&sub1=flood-${i}`, {
          headers: from(`198.51.100.${10 + i}`),
          redirect: "manual",
        }),
        testEnv,
        ctx,
      );
      statuses.push(response.status);
      await waitOnExecutionContext(ctx);
    }
    // Another /24 has its own budget.
    const ctx = createExecutionContext();
    await worker.fetch(
      new Request(`${BASE}/c/${offer.id}?p=${partner.id}&sub1=elsewhere`, {
        headers: from("203.0.113.9"),
        redirect: "manual",
      }),
      testEnv,
      ctx,
    );
    await waitOnExecutionContext(ctx);
    expect(statuses).toEqual([302, 302, 302, 302, 302, 302]);
    const rows = await eventually(async () => {
      const found = await clickRows(offer.id);
      return found.length >= 4 ? found : null;
    });
    expect(rows.map((r) => r.sub1).sort()).toEqual(["elsewhere", "flood-0", "flood-1", "flood-2"]);
  });
});
