/**
 * GET /metrics against known traffic: real postbacks (accepted, duplicate, refused), deliveries to a
 * partner that answers and one that fails, clicks, a dead letter and partner states; every value as
 * expected, read back with a Prometheus text parser. Counters stay exact when the consumers get a
 * message twice (a redelivery, or two isolates reporting), since they live in D1, not in an isolate.
 */
import { env } from "cloudflare:workers";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { describe, expect, it } from "vitest";
import monitoringPage from "../docs/monitoring.md?raw";
import { RequestLogMessageSchema } from "../src/domain/messages";
import { METRICS } from "../src/domain/metrics";
import { createApiKey, withKey } from "./support/access";
import { click, seedOffer } from "./support/attribution";
import {
  admin,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, getPostback, TOKEN_ONLY, TRACKER_MAPPING } from "./support/inbound";
import { deliverAcked } from "./support/queues";

interface Family {
  name: string;
  type: string;
  metrics: {
    labels?: Record<string, string>;
    value?: string;
    buckets?: Record<string, string>;
    count?: string;
    sum?: string;
  }[];
}

async function scrape(accept?: string): Promise<{ text: string; families: Map<string, Family>; type: string | null }> {
  const response = await admin("/metrics", accept ? { headers: { accept } } : {});
  const text = await response.text();
  expect(response.status, text).toBe(200);
  const families = new Map((parsePrometheusTextFormat(text) as Family[]).map((family) => [family.name, family]));
  return { text, families, type: response.headers.get("content-type") };
}

function value(families: Map<string, Family>, name: string, labels: Record<string, string>): number {
  const family = families.get(name);
  const found = family?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return Number(found?.value ?? 0);
}

async function loggedVerdicts(networkId: string, count: number): Promise<void> {
  await eventually(async () => {
    const row = await env.DB.prepare("SELECT count(*) AS n FROM inbound_requests WHERE network_id = ?")
      .bind(networkId)
      .first<{ n: number }>();
    return (row?.n ?? 0) >= count ? true : null;
  });
}

describe("docs/monitoring.md", () => {
  it("lists every metric the hub serves, with its type and labels", () => {
    for (const definition of Object.values(METRICS)) {
      const name = definition.type === "counter" ? `${definition.name}_total` : definition.name;
      const cells = monitoringPage
        .split("\n")
        .map((line) => line.split("|").map((cell) => cell.trim()))
        .find((row) => row[1] === `\`${name}\``);
      expect(cells, `a row for ${name}`).toBeDefined();
      expect(cells?.[2]).toBe(definition.type);
      const row = cells?.[3] ?? "";
      for (const label of definition.labels) expect(row, `${name}'s label ${label}`).toContain(`\`${label}\``);
    }
  });
});

describe("GET /metrics", () => {
  it("counts postbacks by network and verdict, deliveries, latency, attempts, clicks; reads the gauges", async () => {
    const network = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
    const token = network.token ?? "";
    const txid = uniqueId("tx");
    expect((await getPostback(network.id, { txid, status: "1", token })).status).toBe(200);
    expect((await getPostback(network.id, { txid, status: "1", token })).status).toBe(200);
    expect((await getPostback(network.id, { txid: uniqueId("tx"), status: "1", token })).status).toBe(200);
    expect((await getPostback(network.id, { txid: uniqueId("tx"), status: "1", token: "pbt_wrong" })).status).toBe(401);
    await loggedVerdicts(network.id, 4);

    const signed = await createNetwork();
    const ok = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("m")}?tx={transaction_id}`,
      filters: { networks: [signed.id] },
    });
    const failing = await createPartner({
      url_template: `${PARTNER}/fail/${uniqueId("m")}?tx={transaction_id}`,
      filters: { networks: [signed.id] },
      retry_schedule_seconds: [1],
    });
    await expectStatus(await postback(signed, makePostback()), 200);
    // The ok partner's delivery ends in one attempt; the failing one's in two (one retry, then failed).
    await eventually(async () => {
      const row = await env.DB.prepare(
        "SELECT count(*) AS n FROM deliveries WHERE partner_id IN (?, ?) AND state IN ('delivered', 'failed', 'dead')",
      )
        .bind(ok.id, failing.id)
        .first<{ n: number }>();
      return row?.n === 2 ? true : null;
    }, 30_000);

    const offer = await seedOffer(signed.id);
    for (let i = 0; i < 3; i++) expect((await click(`/c/${offer.id}?p=${ok.id}`)).status).toBe(302);
    await eventually(async () => {
      const row = await env.DB.prepare("SELECT count(*) AS n FROM clicks WHERE offer_id = ?")
        .bind(offer.id)
        .first<{ n: number }>();
      return row?.n === 3 ? true : null;
    });
    await env.DB.prepare(
      "INSERT INTO dead_letters (id, queue, body, reason, attempts, created_at) VALUES (?, 'postback-metrics-test', '{}', 'test', 1, ?)",
    )
      .bind(uniqueId("dl"), new Date().toISOString())
      .run();
    await admin(`/v1/partners/${failing.id}/disable`, { method: "POST" });

    const { families, text, type } = await scrape();
    expect(type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(text).toContain("# TYPE postback_hub_postbacks_total counter");
    expect(value(families, "postback_hub_postbacks_total", { network: network.id, verdict: "accepted" })).toBe(2);
    expect(value(families, "postback_hub_postbacks_total", { network: network.id, verdict: "duplicate" })).toBe(1);
    expect(value(families, "postback_hub_postbacks_total", { network: network.id, verdict: "unauthorized" })).toBe(1);
    expect(value(families, "postback_hub_delivery_attempts_total", { partner: ok.id, outcome: "delivered" })).toBe(1);
    expect(value(families, "postback_hub_delivery_attempts_total", { partner: failing.id, outcome: "retry" })).toBe(1);
    expect(value(families, "postback_hub_delivery_attempts_total", { partner: failing.id, outcome: "dead" })).toBe(1);
    // The parser takes the histograms (their TYPE and samples) but merges their label sets, a bug of
    // its own; their samples are read from the text, line by line.
    expect(families.get("postback_hub_delivery_latency_milliseconds")?.type).toBe("HISTOGRAM");
    expect(families.get("postback_hub_delivery_attempts_per_delivery")?.type).toBe("HISTOGRAM");
    const line = (name: string, labels: string) => {
      const found = text.split("\n").find((l) => l.startsWith(`${name}{${labels}}`));
      return found === undefined ? undefined : Number(found.split(" ").at(-1));
    };
    expect(line("postback_hub_delivery_latency_milliseconds_count", `partner="${ok.id}"`)).toBe(1);
    expect(line("postback_hub_delivery_latency_milliseconds_bucket", `partner="${ok.id}",le="+Inf"`)).toBe(1);
    expect(line("postback_hub_delivery_latency_milliseconds_bucket", `partner="${ok.id}",le="30000"`)).toBe(1);
    // Its retries spent, the failing partner's delivery is dead after its second attempt.
    const ended = `partner="${failing.id}",state="dead"`;
    expect(line("postback_hub_delivery_attempts_per_delivery_count", ended)).toBe(1);
    expect(line("postback_hub_delivery_attempts_per_delivery_sum", ended)).toBe(2);
    expect(line("postback_hub_delivery_attempts_per_delivery_bucket", `${ended},le="1"`)).toBe(0);
    expect(line("postback_hub_delivery_attempts_per_delivery_bucket", `${ended},le="2"`)).toBe(1);
    expect(line("postback_hub_delivery_attempts_per_delivery_bucket", `${ended},le="+Inf"`)).toBe(1);
    expect(value(families, "postback_hub_clicks_total", { offer: offer.id })).toBe(3);
    expect(value(families, "postback_hub_dead_letters", { queue: "postback-metrics-test" })).toBe(1);
    expect(value(families, "postback_hub_partner_state", { partner: failing.id, state: "disabled" })).toBe(1);
    expect(value(families, "postback_hub_partner_state", { partner: ok.id, state: "active" })).toBe(1);
    expect(families.get("postback_hub_deliveries_backlog")?.type).toBe("GAUGE");

    const open = await scrape("application/openmetrics-text; version=1.0.0");
    expect(open.type).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8");
    expect(open.text.trimEnd().endsWith("# EOF")).toBe(true);
    expect(open.text).toContain("# TYPE postback_hub_postbacks counter");
  }, 60_000);

  it("counts a request log message once, however often and by however many isolates it comes", async () => {
    const networkId = uniqueId("net");
    const record = (requestId: string) => ({
      request_id: requestId,
      network_id: networkId,
      received_at: new Date().toISOString(),
      route: "postback",
      method: "POST",
      auth_method: "token",
      credential_id: null,
      client_ip: null,
      transaction_id: null,
      test: null,
      status: 422,
      verdict: "validation_failed",
      errors: [],
      items: null,
      body_bytes: 0,
      body_sha256: null,
      excerpt: { query: null, headers: {}, body: null },
    });
    const minute = "2026-01-01T00:00:00.000Z";
    const message = (unlogged: number) =>
      RequestLogMessageSchema.parse({
        v: 1,
        records: [record(`${networkId}-a`), record(`${networkId}-b`)],
        counts: [{ network_id: networkId, minute, isolate_id: "iso-1", unlogged }],
      });
    // The same records twice in one batch, then again later with a larger running count.
    await deliverAcked(env.REQUESTS_QUEUE_NAME, [message(3), message(3)]);
    await deliverAcked(env.REQUESTS_QUEUE_NAME, [message(5)]);
    await deliverAcked(env.REQUESTS_QUEUE_NAME, [message(4)]);
    const { families } = await scrape();
    expect(value(families, "postback_hub_postbacks_total", { network: networkId, verdict: "validation_failed" })).toBe(
      2,
    );
    expect(value(families, "postback_hub_postbacks_unlogged_total", { network: networkId })).toBe(5);
  });

  it("answers a read-only key, and refuses a network key", async () => {
    const readOnly = await createApiKey({ scope: "read-only" });
    const response = await withKey(readOnly.key, "/metrics");
    expect(response.status).toBe(200);
    const network = await createNetwork();
    const networkKey = await createApiKey({ scope: "network", subject_id: network.id });
    expect((await withKey(networkKey.key, "/metrics")).status).toBe(403);
  });
});
