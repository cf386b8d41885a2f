/**
 * The overview's numbers against rows this file writes itself (storage is this file's own): the
 * postbacks by verdict from the inbound log, delivery attempts by outcome, each partner's success
 * rate and latency percentiles, the backlog, partners held back and networks gone silent.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateAlertRules } from "../src/alerts/rules";
import { page, signIn, textOf } from "./support/console";

const NOW = Date.now();
const ago = (ms: number) => new Date(NOW - ms).toISOString();
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let requestCounter = 0;
function inbound(networkId: string, receivedAt: string, route: string, status: number, verdict: string) {
  requestCounter += 1;
  return env.DB.prepare(
    `INSERT INTO inbound_requests (request_id, network_id, received_at, route, method, status, verdict, body_bytes, excerpt)
     VALUES (?, ?, ?, ?, 'POST', ?, ?, 10, '{}')`,
  ).bind(`req-${requestCounter}`, networkId, receivedAt, route, status, verdict);
}

let deliveryCounter = 0;
function delivery(partnerId: string, state: string, createdAt: string) {
  deliveryCounter += 1;
  return env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
     VALUES (?, ?, ?, 'net-a', ?, ?, '{}', ?, ?)`,
  ).bind(
    `dlv-${deliveryCounter}`,
    `evt-${deliveryCounter}`,
    partnerId,
    `tx-${deliveryCounter}`,
    state,
    createdAt,
    createdAt,
  );
}

function attempt(
  deliveryId: string,
  n: number,
  partnerId: string,
  startedAt: string,
  latency: number,
  outcome: string,
) {
  return env.DB.prepare(
    `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, outcome)
     VALUES (?, ?, ?, ?, 200, ?, ?)`,
  ).bind(deliveryId, n, partnerId, startedAt, latency, outcome);
}

function partner(id: string, status: string, pausedReason: string | null) {
  return env.DB.prepare(
    `INSERT INTO partners (id, name, status, disabled_reason, url_template, method, timeout_ms, retry_schedule, paused_reason, created_at, updated_at)
     VALUES (?, ?, ?, ?, 'https://partner.test/ok', 'GET', 5000, '[60]', ?, ?, ?)`,
  ).bind(id, id, status, status === "disabled" ? "operator" : null, pausedReason, ago(HOUR), ago(HOUR));
}

function network(id: string) {
  return env.DB.prepare("INSERT INTO networks (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)").bind(
    id,
    id,
    ago(HOUR),
    ago(HOUR),
  );
}

beforeAll(async () => {
  await env.DB.batch([
    network("net-a"),
    network("net-quiet"),
    // In the last hour: 3 accepted, 1 duplicate, 1 updated, 1 stale, 2 rejected (a 401 and a refused batch).
    inbound("net-a", ago(2 * MINUTE), "postback", 202, "accepted"),
    inbound("net-a", ago(2 * MINUTE), "postback", 202, "accepted"),
    inbound("net-a", ago(10 * MINUTE), "postback", 200, "accepted"),
    inbound("net-a", ago(10 * MINUTE), "postback", 200, "duplicate"),
    inbound("net-a", ago(20 * MINUTE), "postback", 200, "updated"),
    inbound("net-a", ago(20 * MINUTE), "postback", 200, "stale"),
    inbound("net-a", ago(30 * MINUTE), "postback", 401, "unauthorized"),
    inbound("net-a", ago(30 * MINUTE), "batch", 422, "validation_failed"),
    // Not postbacks: the network reading its log, an explain.
    inbound("net-a", ago(5 * MINUTE), "requests", 200, "listed"),
    inbound("net-a", ago(5 * MINUTE), "explain", 200, "explained"),
    // Outside the hour, inside the day: 1 accepted. And net-quiet's last accepted postback, 8 hours ago.
    inbound("net-a", ago(3 * HOUR), "postback", 202, "accepted"),
    inbound("net-quiet", ago(8 * HOUR), "postback", 202, "accepted"),
    partner("ptn-fast", "active", null),
    partner("ptn-paused", "active", "breaker open: 5 failures in 60 s"),
    partner("ptn-off", "disabled", null),
    // The backlog: 2 pending (the oldest 40 minutes old), 1 retrying; finished ones do not count.
    delivery("ptn-fast", "pending", ago(40 * MINUTE)),
    delivery("ptn-fast", "pending", ago(5 * MINUTE)),
    delivery("ptn-fast", "retrying", ago(10 * MINUTE)),
    delivery("ptn-fast", "delivered", ago(50 * MINUTE)),
    delivery("ptn-paused", "failed", ago(50 * MINUTE)),
  ]);
  // ptn-fast: 10 attempts in the hour, latencies 10..100 ms, 8 delivered, 2 retries.
  const attempts = [];
  for (let i = 1; i <= 10; i++) {
    attempts.push(attempt("dlv-4", i, "ptn-fast", ago(i * MINUTE), i * 10, i <= 8 ? "delivered" : "retry"));
  }
  // ptn-paused: 2 attempts, both failed; one more outside the hour.
  attempts.push(attempt("dlv-5", 1, "ptn-paused", ago(3 * MINUTE), 900, "failed"));
  attempts.push(attempt("dlv-5", 2, "ptn-paused", ago(4 * MINUTE), 1100, "failed"));
  attempts.push(attempt("dlv-5", 3, "ptn-paused", ago(2 * HOUR), 5000, "dead"));
  await env.DB.batch(attempts);
});

/** The legend's totals of a chart: series → count. */
function totals(html: string, chartId: string): Record<string, number> {
  const figure = html.slice(html.indexOf(`id="${chartId}"`));
  const legend = figure.slice(figure.indexOf('class="legend"'), figure.indexOf("</ul>"));
  return Object.fromEntries(
    [...legend.matchAll(/data-series="([^"]+)">(\d+)</g)].map((m) => [m[1] ?? "", Number(m[2])]),
  );
}

describe("the overview", () => {
  it("counts the last hour's postbacks by verdict and delivery attempts by outcome", async () => {
    const html = await page(await signIn(), "/console");
    expect(totals(html, "postbacks-chart")).toEqual({
      accepted: 3,
      duplicate: 1,
      updated: 1,
      stale: 1,
      rejected: 2,
    });
    expect(totals(html, "attempts-chart")).toEqual({ delivered: 8, retry: 2, failed: 2, dead: 0, gone: 0 });
    // The bars and the table beside them: one row per minute with postbacks (2, 10, 20 and 30 minutes ago).
    const data = html.slice(
      html.indexOf('id="postbacks-chart-data"'),
      html.indexOf("</table>", html.indexOf('id="postbacks-chart-data"')),
    );
    expect(data.match(/<tr><th scope="row">/g)?.length).toBe(4);
    const svg = html.slice(
      html.indexOf('<svg role="img" aria-labelledby="postbacks-chart-title'),
      html.indexOf("</svg>"),
    );
    expect(svg.match(/<rect [^>]*class="bar c-accepted"/g)?.length).toBe(2);
    expect(svg.match(/<rect [^>]*class="bar c-rejected"/g)?.length).toBe(1);
    // Accessible charts: an image with a title and a description naming the totals.
    expect(html).toMatch(/<svg role="img" aria-labelledby="postbacks-chart-title postbacks-chart-desc"/);
    expect(html).toContain("8 in all: accepted 3, duplicate 1, updated 1, stale 1, rejected 2.");
  });

  it("over the day, counts what the hour leaves out", async () => {
    const html = await page(await signIn(), "/console?range=day");
    // The hour's 3, one 3 hours ago, and net-quiet's 8 hours ago.
    expect(totals(html, "postbacks-chart").accepted).toBe(5);
    expect(totals(html, "attempts-chart").dead).toBe(1);
  });

  it("shows each partner's success rate and p50/p95 latency", async () => {
    const html = await page(await signIn(), "/console");
    const fast = textOf(html.replace('data-partner="ptn-fast"', 'id="row-fast"'), "row-fast");
    expect(fast).toBe("ptn-fast 10 8 80.0 % 50 ms 100 ms");
    const paused = textOf(html.replace('data-partner="ptn-paused"', 'id="row-paused"'), "row-paused");
    expect(paused).toBe("ptn-paused 2 0 0.0 % 900 ms 1100 ms");
  });

  it("shows the backlog, partners held back and networks gone silent", async () => {
    const html = await page(await signIn(), "/console");
    expect(html).toContain('<dd data-backlog="waiting">3</dd>');
    expect(html).toContain('<dd data-backlog="pending">2</dd>');
    expect(html).toContain('<dd data-backlog="retrying">1</dd>');
    expect(html).toMatch(/<dd data-backlog="oldest">(40|41) min<\/dd>/);
    const held = textOf(html, "held-partners");
    expect(held).toMatch(/ptn-paused\s?: paused \(breaker open: 5 failures in 60 s\)/);
    expect(held).toMatch(/ptn-off\s?: disabled \(operator\)/);
    expect(held).not.toContain("ptn-fast");
    const silent = textOf(html, "silent-networks");
    expect(silent).toContain("net-quiet");
    expect(silent).not.toContain("net-a");
  });

  it("shows the alert rules' open incidents, and no longer once they resolved", async () => {
    const before = await page(await signIn(), "/console");
    expect(textOf(before, "open-alerts")).not.toContain("network_silent");
    // net-quiet has been silent for 8 hours: the rule finds it.
    await evaluateAlertRules({ db: env.DB, target: { url: null, secret: null } });
    const open = textOf(await page(await signIn(), "/console"), "open-alerts");
    expect(open).toContain("network_silent");
    expect(open).toContain("net-quiet");
  });

  it("serves the live part alone for the poller, with the same numbers", async () => {
    const html = await page(await signIn(), "/console/overview/live?range=hour");
    expect(html.startsWith('<div id="live" data-refresh="/console/overview/live?range=hour"')).toBe(true);
    expect(totals(html, "postbacks-chart").rejected).toBe(2);
    expect(html).toContain('id="recent-conversions"');
  });
});
