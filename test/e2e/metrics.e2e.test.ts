/**
 * GET /metrics as a scraper meets it: the real `wrangler dev`, a read-only key, the text parsed by
 * an independent Prometheus parser (parse-prometheus-text-format) in Node. Postbacks posted the way
 * a network posts them are counted by verdict; after wrangler dev is killed (SIGKILL, as a crash)
 * and started again on the same state, the counters hold, and count on from there.
 */
import { randomUUID } from "node:crypto";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback } from "./support";
import { startWranglerDev, type WranglerDev } from "./wrangler-dev";

interface Family {
  name: string;
  type: string;
  metrics: { labels?: Record<string, string>; value?: string }[];
}

let hub: WranglerDev;
let networkId: string;
let secret: string;
let scraperKey: string;

beforeAll(async () => {
  hub = await startWranglerDev({ label: "e2e-metrics" });
  networkId = `e2e-metrics-${randomUUID().slice(0, 8)}`;
  secret = (
    await expectStatus<{ secret: string }>(
      await adminRequest(hub, "/v1/networks", {
        method: "POST",
        body: JSON.stringify({ id: networkId, name: "E2E metrics" }),
      }),
      201,
    )
  ).secret;
  scraperKey = (
    await expectStatus<{ key: string }>(
      await adminRequest(hub, "/v1/keys", {
        method: "POST",
        body: JSON.stringify({ name: "scraper", scope: "read-only" }),
      }),
      201,
    )
  ).key;
}, 120_000);

afterAll(async () => {
  await hub?.stop();
});

async function scrape(): Promise<Family[]> {
  const response = await fetch(`${hub.baseUrl}/metrics`, {
    headers: { authorization: `Bearer ${scraperKey}` },
    signal: AbortSignal.timeout(30_000),
  });
  const text = await response.text();
  expect(response.status, text).toBe(200);
  expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheusTextFormat(text) as Family[];
}

function postbacks(families: Family[], verdict: string): number {
  const family = families.find((f) => f.name === "postback_hub_postbacks_total");
  expect(family?.type).toBe("COUNTER");
  return Number(
    family?.metrics.find((m) => m.labels?.network === networkId && m.labels.verdict === verdict)?.value ?? 0,
  );
}

async function counted(verdict: string, expected: number): Promise<void> {
  await eventually(
    async () => (postbacks(await scrape(), verdict) === expected ? true : null),
    `${expected} ${verdict} postbacks counted`,
    { context: () => hub.log() },
  );
}

describe("GET /metrics through the real wrangler dev", () => {
  it("counts postbacks by verdict, and keeps counting across a crash and a restart", async () => {
    const body = makePostback();
    await expectStatus(await signedPostback(hub, networkId, secret, body), 200);
    await expectStatus(await signedPostback(hub, networkId, secret, body), 200);
    await expectStatus(await signedPostback(hub, networkId, secret, makePostback()), 200);
    const refused = await signedPostback(
      hub,
      networkId,
      "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGwh",
      makePostback(),
    );
    expect(refused.status).toBe(401);
    await counted("accepted", 2);
    await counted("duplicate", 1);
    await counted("unauthorized", 1);
    const families = await scrape();
    for (const name of ["postback_hub_deliveries_backlog", "postback_hub_partner_state", "postback_hub_dead_letters"]) {
      expect(families.find((f) => f.name === name)?.type, name).toBe("GAUGE");
    }
    expect(families.find((f) => f.name === "postback_hub_delivery_latency_milliseconds")?.type).toBe("HISTOGRAM");

    await hub.kill("SIGKILL");
    await hub.restart();
    // Nothing is counted again, nothing is lost; the next postback counts on from there.
    expect(postbacks(await scrape(), "accepted")).toBe(2);
    await expectStatus(await signedPostback(hub, networkId, secret, makePostback()), 200);
    await counted("accepted", 3);
    expect(postbacks(await scrape(), "duplicate")).toBe(1);
  }, 180_000);
});
