/**
 * Every built-in alert rule fires for what it watches, notifies once, notifies again at its
 * interval while the incident lasts, and resolves (and says so) when it ends; each notification is
 * signed so that the standardwebhooks library verifies it, and GET /v1/alerts lists the incidents.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { resendDueAlerts } from "../src/alerts/alerts";
import { evaluateAlertRules } from "../src/alerts/rules";
import { generateSecret } from "../src/lib/credentials";
import { reportUnconfirmedStatements } from "../src/storage/metrics";
import { admin, createNetwork, createPartner, expectStatus, uniqueId } from "./support/helpers";

const SECRET = generateSecret();
const MIN = 60_000;
const T = Date.parse("2026-11-20T12:00:00.000Z");
const iso = (ms: number) => new Date(ms).toISOString();

interface Notice {
  type: string;
  alert_id: string;
  rule: string;
  subject: string;
  summary: string;
}

/** Where the notifications go: every request verified with the standardwebhooks library, then kept. */
function channel() {
  const received: Notice[] = [];
  const verifier = new Webhook(SECRET);
  const target = {
    url: "https://alerts.test/hook",
    secret: SECRET,
    fetch: (async (_url: string | URL | Request, init?: RequestInit) => {
      const headers = Object.fromEntries(new Headers(init?.headers).entries());
      const body = new TextDecoder().decode(init?.body as Uint8Array);
      received.push(verifier.verify(body, headers) as Notice);
      return new Response("ok");
    }) as typeof fetch,
  };
  return { target, received };
}

async function evaluate(target: ReturnType<typeof channel>["target"], at: number) {
  return evaluateAlertRules({ db: env.DB, target }, at);
}

const of = (received: Notice[], subject: string) =>
  received.filter((n) => n.subject === subject).map((n) => `${n.rule} ${n.type}`);

async function deliveryOf(partnerId: string, state: string, createdAt: number): Promise<string> {
  const id = uniqueId("dlv");
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
     VALUES (?, ?, ?, 'n', ?, ?, '{}', ?, ?)`,
  )
    .bind(id, uniqueId("evt"), partnerId, uniqueId("tx"), state, iso(createdAt), iso(createdAt))
    .run();
  return id;
}

async function attempt(deliveryId: string, partnerId: string, n: number, outcome: string, at: number) {
  await env.DB.prepare(
    `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, latency_ms, outcome) VALUES (?, ?, ?, ?, 20, ?)`,
  )
    .bind(deliveryId, n, partnerId, iso(at), outcome)
    .run();
}

async function inbound(networkId: string, status: number, verdict: string, at: number) {
  await env.DB.prepare(
    `INSERT INTO inbound_requests (request_id, network_id, received_at, route, method, status, verdict, body_bytes, excerpt)
     VALUES (?, ?, ?, 'postback', 'POST', ?, ?, 0, '{}')`,
  )
    .bind(uniqueId("req"), networkId, iso(at), status, verdict)
    .run();
}

async function renotifyEvery(rule: string, minutes: number): Promise<void> {
  await expectStatus(
    await admin(`/v1/alert-rules/${rule}`, { method: "PATCH", body: JSON.stringify({ renotify_minutes: minutes }) }),
    200,
  );
}

describe("alert rules", () => {
  it("a failing partner: its failure share and its dead deliveries fire, re-notify, and resolve", async () => {
    const { target, received } = channel();
    const partner = await createPartner({ url_template: "https://partner.test/ok/x?tx={transaction_id}" });
    const delivery = await deliveryOf(partner.id, "dead", T - 5 * MIN);
    for (let n = 1; n <= 10; n++) await attempt(delivery, partner.id, n, n === 10 ? "dead" : "retry", T - 5 * MIN + n);
    const subject = `partner:${partner.id}`;

    await evaluate(target, T);
    expect(of(received, subject).sort()).toEqual([
      "dead_deliveries alert.firing",
      "partner_failure_share alert.firing",
    ]);
    // Still failing a minute later: nothing new (re-notified hourly by default)…
    await evaluate(target, T + MIN);
    expect(of(received, subject)).toHaveLength(2);
    // …until the interval is set shorter.
    await expectStatus(
      await admin("/v1/alert-rules/partner_failure_share", {
        method: "PATCH",
        body: JSON.stringify({ renotify_minutes: 1 }),
      }),
      200,
    );
    await evaluate(target, T + 3 * MIN);
    expect(of(received, subject)).toContain("partner_failure_share alert.renotify");
    // An hour on, the window holds none of those attempts: both end, and say so.
    await evaluate(target, T + 90 * MIN);
    expect(
      of(received, subject)
        .filter((line) => line.endsWith("resolved"))
        .sort(),
    ).toEqual(["dead_deliveries alert.resolved", "partner_failure_share alert.resolved"]);
    const listed = await expectStatus<{
      data: { subject: string; state: string; notifications: number; rule: string }[];
    }>(await admin("/v1/alerts?limit=200"), 200);
    const mine = listed.data.filter((incident) => incident.subject === subject);
    expect(mine.map((i) => [i.rule, i.state]).sort()).toEqual([
      ["dead_deliveries", "resolved"],
      ["partner_failure_share", "resolved"],
    ]);
    expect(mine.find((i) => i.rule === "partner_failure_share")?.notifications).toBe(2);
    await expectStatus(
      await admin("/v1/alert-rules/partner_failure_share", {
        method: "PATCH",
        body: JSON.stringify({ renotify_minutes: 60 }),
      }),
      200,
    );
  });

  it("a backlog older than its limit fires for the hub, re-notifies, and resolves once the delivery is sent", async () => {
    const { target, received } = channel();
    const partner = await createPartner({ url_template: "https://partner.test/ok/y?tx={transaction_id}" });
    const delivery = await deliveryOf(partner.id, "pending", T - 45 * MIN);
    await evaluate(target, T);
    expect(of(received, "hub")).toContain("backlog_age alert.firing");
    await renotifyEvery("backlog_age", 1);
    await evaluate(target, T + 2 * MIN);
    expect(of(received, "hub")).toContain("backlog_age alert.renotify");
    await env.DB.prepare("UPDATE deliveries SET state = 'delivered' WHERE id = ?").bind(delivery).run();
    await env.DB.prepare("UPDATE deliveries SET state = 'delivered' WHERE state IN ('pending', 'retrying')").run();
    await evaluate(target, T + MIN);
    expect(of(received, "hub")).toContain("backlog_age alert.resolved");
  });

  it("a network gone silent, and a network whose postbacks are suddenly refused", async () => {
    const { target, received } = channel();
    const silent = await createNetwork();
    const refused = await createNetwork();
    await inbound(silent.id, 200, "accepted", T - 8 * 60 * MIN);
    for (let i = 0; i < 25; i++) await inbound(refused.id, 401, "unauthorized", T - 2 * MIN);
    await inbound(refused.id, 200, "accepted", T - 2 * MIN);
    await evaluate(target, T);
    expect(of(received, `network:${silent.id}`)).toEqual(["network_silent alert.firing"]);
    expect(of(received, `network:${refused.id}`)).toEqual(["rejection_spike alert.firing"]);
    await renotifyEvery("network_silent", 1);
    await renotifyEvery("rejection_spike", 1);
    await evaluate(target, T + 2 * MIN);
    expect(of(received, `network:${silent.id}`)).toEqual([
      "network_silent alert.firing",
      "network_silent alert.renotify",
    ]);
    expect(of(received, `network:${refused.id}`)).toEqual([
      "rejection_spike alert.firing",
      "rejection_spike alert.renotify",
    ]);
    // The silent one sends again; the refusals age out of the window.
    await inbound(silent.id, 200, "accepted", T + MIN);
    await evaluate(target, T + 30 * MIN);
    expect(of(received, `network:${silent.id}`)).toEqual([
      "network_silent alert.firing",
      "network_silent alert.renotify",
      "network_silent alert.resolved",
    ]);
    expect(of(received, `network:${refused.id}`)).toEqual([
      "rejection_spike alert.firing",
      "rejection_spike alert.renotify",
      "rejection_spike alert.resolved",
    ]);
  });

  it("an old credential still in use shortly before it stops working", async () => {
    const { target, received } = channel();
    const network = await createNetwork();
    const credential = uniqueId("sec");
    await env.DB.prepare(
      "INSERT INTO network_secrets (id, network_id, ciphertext, created_at, expires_at, kind, last_used_at) VALUES (?, ?, 'x', ?, ?, 'signing', ?)",
    )
      .bind(credential, network.id, iso(T - 86_400_000), iso(T + 120 * MIN), iso(T - 5 * MIN))
      .run();
    await evaluate(target, T);
    expect(of(received, `credential:${credential}`)).toEqual(["credential_expiring alert.firing"]);
    await renotifyEvery("credential_expiring", 1);
    await evaluate(target, T + 2 * MIN);
    await evaluate(target, T + 121 * MIN);
    expect(of(received, `credential:${credential}`)).toEqual([
      "credential_expiring alert.firing",
      "credential_expiring alert.renotify",
      "credential_expiring alert.resolved",
    ]);
  });

  it("an offer that converts usually, with many clicks and no conversion for hours", async () => {
    const { target, received } = channel();
    const offer = uniqueId("ofr");
    const hour = (ms: number) => iso(ms).slice(0, 13);
    await env.DB.prepare(
      `INSERT INTO stats_clicks_hourly (hour, network_id, offer_id, campaign_id, partner_id, country, device, sub1, clicks)
       VALUES (?, 'n', ?, '', 'p', '', '', '', 60)`,
    )
      .bind(hour(T - 60 * MIN), offer)
      .run();
    await env.DB.prepare(
      `INSERT INTO stats_conversions_hourly (hour, test, network_id, offer_id, campaign_id, partner_id, platform, country,
         device, event_type, status, amount_currency, revenue_currency, payout_currency, conversions, amount_integer,
         amount_fraction, revenue_integer, revenue_fraction, payout_integer, payout_fraction)
       VALUES (?, 0, 'n', ?, '', 'p', '', '', '', '', 'approved', '', '', '', 3, 0, 0, 0, 0, 0, 0)`,
    )
      .bind(hour(T - 3 * 24 * 60 * MIN), offer)
      .run();
    await evaluate(target, T);
    expect(of(received, `offer:${offer}`)).toEqual(["clicks_without_conversions alert.firing"]);
    await renotifyEvery("clicks_without_conversions", 1);
    await evaluate(target, T + 2 * MIN);
    // Seven hours on, the clicks are out of the window: it ends.
    await evaluate(target, T + 7 * 60 * MIN);
    expect(of(received, `offer:${offer}`)).toEqual([
      "clicks_without_conversions alert.firing",
      "clicks_without_conversions alert.renotify",
      "clicks_without_conversions alert.resolved",
    ]);
  });

  it("events D1 did not confirm in time, sent again by their objects", async () => {
    const { target, received } = channel();
    await env.DB.prepare(
      "INSERT INTO metric_counters (name, labels, value) VALUES ('outbox_resends_hourly', json_array(?), 3)",
    )
      .bind(iso(T - 10 * MIN).slice(0, 13))
      .run();
    await evaluate(target, T);
    expect(of(received, "hub")).toContain("outbox_unconfirmed alert.firing");
    await evaluate(target, T + 3 * 60 * MIN);
    expect(of(received, "hub")).toContain("outbox_unconfirmed alert.resolved");
  });

  it("events unconfirmed now (the gauge): fires while they wait, resolves once D1 has them", async () => {
    const { target, received } = channel();
    const objectId = uniqueId("obj");
    const reportOf = (events: number) =>
      env.DB.batch(
        reportUnconfirmedStatements(
          env.DB,
          { object_id: objectId, network_id: "n", transaction_id: "t", events, oldest_at: events > 0 ? iso(T) : null },
          iso(T),
        ),
      );
    // Well after the hourly resends of the test above: only the gauge can fire it.
    const at = T + 6 * 60 * MIN;
    // Reported twice (a retried alarm): counted once.
    await reportOf(2);
    await reportOf(2);
    await evaluate(target, at);
    expect(of(received, "hub")).toEqual(["outbox_unconfirmed alert.firing"]);
    const [incident] = (
      await expectStatus<{ data: { rule: string; state: string; details: Record<string, unknown> }[] }>(
        await admin("/v1/alerts?state=open"),
        200,
      )
    ).data.filter((row) => row.rule === "outbox_unconfirmed");
    expect(incident?.details).toMatchObject({ unconfirmed: 2, resends: 0 });
    await reportOf(0);
    await evaluate(target, at + MIN);
    expect(of(received, "hub")).toEqual(["outbox_unconfirmed alert.firing", "outbox_unconfirmed alert.resolved"]);
  });

  it("resolves a rule's incidents when the rule is disabled", async () => {
    const { target, received } = channel();
    const network = await createNetwork();
    await inbound(network.id, 200, "accepted", T - 8 * 60 * MIN);
    await evaluate(target, T);
    expect(of(received, `network:${network.id}`)).toEqual(["network_silent alert.firing"]);
    await expectStatus(
      await admin("/v1/alert-rules/network_silent", { method: "PATCH", body: JSON.stringify({ enabled: false }) }),
      200,
    );
    await evaluate(target, T + MIN);
    expect(of(received, `network:${network.id}`)).toEqual([
      "network_silent alert.firing",
      "network_silent alert.resolved",
    ]);
    await expectStatus(
      await admin("/v1/alert-rules/network_silent", { method: "PATCH", body: JSON.stringify({ enabled: true }) }),
      200,
    );
  });

  it("keeps a notification the channel did not take, and sends it again until it is received", async () => {
    const network = await createNetwork();
    await inbound(network.id, 200, "accepted", T - 10 * 60 * MIN);
    let up = false;
    const received: string[] = [];
    const target = {
      url: "https://alerts.test/hook",
      secret: SECRET,
      fetch: (async (_url: string | URL | Request, init?: RequestInit) => {
        if (!up) return new Response("down", { status: 503 });
        received.push(new TextDecoder().decode(init?.body as Uint8Array));
        return new Response("ok");
      }) as typeof fetch,
    };
    await evaluateAlertRules({ db: env.DB, target }, T);
    expect(received).toEqual([]);
    up = true;
    await resendDueAlerts(env.DB, target, Date.now() + 3_600_000);
    expect(received.some((body) => body.includes(`network:${network.id}`))).toBe(true);
  });

  it("refuses a setting out of range, naming it, and lists every rule with its defaults", async () => {
    const refused = await admin("/v1/alert-rules/partner_failure_share", {
      method: "PATCH",
      body: JSON.stringify({ share: 2 }),
    });
    const problem = await expectStatus<{ errors: { location: string }[] }>(refused, 422);
    expect(problem.errors[0]?.location).toBe("body.share");
    const unknown = await admin("/v1/alert-rules/partner_failure_share", {
      method: "PATCH",
      body: JSON.stringify({ nope: 1 }),
    });
    expect(unknown.status).toBe(422);
    const rules = await expectStatus<{ data: { rule: string; defaults: Record<string, unknown> }[] }>(
      await admin("/v1/alert-rules"),
      200,
    );
    expect(rules.data.map((r) => r.rule)).toEqual([
      "partner_failure_share",
      "dead_deliveries",
      "backlog_age",
      "network_silent",
      "rejection_spike",
      "credential_expiring",
      "outbox_unconfirmed",
      "clicks_without_conversions",
    ]);
    expect(rules.data[0]?.defaults).toMatchObject({
      enabled: true,
      renotify_minutes: 60,
      window_minutes: 15,
      min_attempts: 10,
      share: 0.5,
    });
  });
});
