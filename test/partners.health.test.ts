/**
 * A partner's health outside its coordinator: each breaker transition is recorded, marks the
 * partner paused (with the reason) or disables it, and raises an operator alert signed with
 * Standard Webhooks (checked with the `standardwebhooks` library) and sent again by the cron until
 * it is received. And through the whole pipeline (ingest, queues, coordinator, fake partner): a
 * partner down for a while receives each conversion's updates in order once it recovers.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { type AlertTarget, resendDueAlerts } from "../src/alerts/alerts";
import { recordTransition } from "../src/coordinator/partner-health";
import type { Transition } from "../src/delivery/breaker";
import { requeueStrandedDeliveries } from "../src/operations/sweep";
import type { DeliveriesQueue } from "../src/queues/delivery-messages";
import { deliveryRow, pendingDelivery } from "./support/deliveries";
import {
  admin,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";

const SECRET = `whsec_${btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))))}`;

/** An alert receiver that answers in turn from `statuses` (the last one repeats), keeping each request. */
function receiver(...statuses: number[]) {
  const received: Request[] = [];
  const target: AlertTarget = {
    url: "https://alerts.test/hook",
    secret: SECRET,
    fetch: (async (input: RequestInfo | URL, init?: RequestInit) => {
      const request = new Request(input, init);
      received.push(request);
      return new Response("", { status: statuses[Math.min(received.length - 1, statuses.length - 1)] });
    }) as typeof fetch,
  };
  return { target, received };
}

const at = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();
const move = (from: Transition["from"], to: Transition["to"], reason: string, when = at()): Transition => ({
  from,
  to,
  reason,
  at: when,
});

async function partnerStatus(id: string) {
  return expectStatus<{
    status: string;
    paused_reason: string | null;
    disabled_reason: string | null;
    health: { transitions: { to: string; reason: string }[] };
  }>(await admin(`/v1/partners/${id}`), 200);
}

async function alertRows(partnerId: string) {
  const { results } = await env.DB.prepare("SELECT * FROM alerts WHERE partner_id = ? ORDER BY created_at")
    .bind(partnerId)
    .all<Record<string, unknown>>();
  return results;
}

describe("breaker transitions", () => {
  it("pause the partner with the reason while open, record each move, and alert signed; closing resumes", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const { target, received } = receiver(200);
    await recordTransition(env.DB, target, partner.id, move("closed", "open", "12 of 12 attempts failed in 72 h"));
    let status = await partnerStatus(partner.id);
    expect(status).toMatchObject({ status: "paused", paused_reason: "12 of 12 attempts failed in 72 h" });
    expect(status.health.transitions).toMatchObject([{ to: "open", reason: "12 of 12 attempts failed in 72 h" }]);

    expect(received).toHaveLength(1);
    const request = received[0] as Request;
    const body = await request.text();
    const verified = new Webhook(SECRET).verify(body, Object.fromEntries(request.headers)) as Record<string, unknown>;
    expect(verified).toMatchObject({ type: "partner_breaker", partner_id: partner.id, from: "closed", to: "open" });
    expect(request.headers.get("webhook-id")).toMatch(/^alr_[0-9a-f]{32}$/);
    // A tampered body does not verify: the signature covers it.
    expect(() =>
      new Webhook(SECRET).verify(body.replace("open", "shut"), Object.fromEntries(request.headers)),
    ).toThrow();

    await recordTransition(env.DB, target, partner.id, move("open", "closed", "the probe succeeded", at(1)));
    status = await partnerStatus(partner.id);
    expect(status).toMatchObject({ status: "active", paused_reason: null });
    expect(status.health.transitions.map((t) => t.to)).toEqual(["closed", "open"]);
    expect(received).toHaveLength(2);
    expect((await alertRows(partner.id)).map((row) => row.delivered_at !== null)).toEqual([true, true]);
  });

  it("records and alerts a transition told twice once", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const { target, received } = receiver(200);
    const transition = move("closed", "open", "10 of 10 attempts failed in 72 h");
    await recordTransition(env.DB, target, partner.id, transition);
    await recordTransition(env.DB, target, partner.id, transition);
    expect(received).toHaveLength(1);
    expect(await alertRows(partner.id)).toHaveLength(1);
    expect((await partnerStatus(partner.id)).health.transitions).toHaveLength(1);
  });

  it("disables the partner when the breaker gives up, parking its deliveries", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const waiting = await pendingDelivery(partner.id);
    const { target } = receiver(200);
    await recordTransition(env.DB, target, partner.id, move("closed", "open", "failing"));
    await recordTransition(env.DB, target, partner.id, move("open", "disabled", "open for 5 days: disabled", at(1)));
    expect(await partnerStatus(partner.id)).toMatchObject({
      status: "disabled",
      disabled_reason: "failing",
      paused_reason: null,
    });
    expect((await deliveryRow(waiting))?.state).toBe("parked");
  });
});

describe("alerts", () => {
  it("are sent again by the cron until the receiver takes one, then no more", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const { target, received } = receiver(503, 503, 200);
    await recordTransition(env.DB, target, partner.id, move("closed", "open", "failing"));
    let [row] = await alertRows(partner.id);
    expect(row).toMatchObject({ attempts: 1, delivered_at: null, last_error: "ALERT_URL answered 503" });
    // Not due yet: nothing is sent.
    await resendDueAlerts(env.DB, target, Date.now());
    expect(received).toHaveLength(1);
    const later = Date.now() + 3 * 3_600_000;
    await resendDueAlerts(env.DB, target, later);
    await resendDueAlerts(env.DB, target, later + 3 * 3_600_000);
    expect(received).toHaveLength(3);
    [row] = await alertRows(partner.id);
    expect(row).toMatchObject({ attempts: 3, next_attempt_at: null, last_error: null });
    expect(row?.delivered_at).not.toBeNull();
    // Each attempt is signed afresh, with the same webhook-id.
    expect(new Set(received.map((r) => r.headers.get("webhook-id"))).size).toBe(1);
    await resendDueAlerts(env.DB, target, later + 24 * 3_600_000);
    expect(received).toHaveLength(3);
  });

  it("are kept, not attempted, without ALERT_URL", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const { target, received } = receiver(200);
    await recordTransition(env.DB, { ...target, url: null }, partner.id, move("closed", "open", "failing"));
    expect(received).toHaveLength(0);
    expect(await alertRows(partner.id)).toMatchObject([
      { attempts: 0, next_attempt_at: null, delivered_at: null, last_error: "ALERT_URL is not set" },
    ]);
  });

  it("are never sent unsigned: without ALERT_SECRET they are kept with the reason", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const { target, received } = receiver(200);
    await recordTransition(env.DB, { ...target, secret: null }, partner.id, move("closed", "open", "failing"));
    expect(received).toHaveLength(0);
    const [row] = await alertRows(partner.id);
    expect(row?.last_error).toBe("ALERT_SECRET is not set, so the alert cannot be signed");
    expect(row?.next_attempt_at).not.toBeNull();
  });
});

describe("the sweep and a paused partner", () => {
  it("leaves a paused partner's waiting deliveries to its coordinator", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("h")}` });
    const waiting = await pendingDelivery(partner.id);
    await env.DB.prepare("UPDATE deliveries SET updated_at = '2026-01-01T00:00:00.000Z' WHERE id = ?")
      .bind(waiting)
      .run();
    await recordTransition(env.DB, receiver(200).target, partner.id, move("closed", "open", "failing"));
    const queue = { sendBatch: async () => undefined } as unknown as DeliveriesQueue;
    expect(await requeueStrandedDeliveries(env.DB, queue, Date.now(), 600_000)).not.toContain(waiting);
    await recordTransition(env.DB, receiver(200).target, partner.id, move("open", "closed", "ok", at(1)));
    expect(await requeueStrandedDeliveries(env.DB, queue, Date.now(), 600_000)).toContain(waiting);
  });
});

describe("order through the pipeline", () => {
  it("delivers each conversion's updates in order to a partner that was down, once it recovers", async () => {
    const network = await createNetwork();
    const unique = uniqueId("order");
    // The partner fails its first 4 requests, then answers 200.
    await createPartner({
      url_template: `${PARTNER}/flaky/4/${unique}?tx={transaction_id}&s={status}`,
      retry_schedule_seconds: [1, 1, 1, 1, 1, 1],
      filters: { networks: [network.id] },
      breaker: { min_attempts: 1000 },
    });
    const tx = [uniqueId("tx"), uniqueId("tx")];
    for (const status of ["pending", "approved", "paid"]) {
      for (const transaction_id of tx) {
        expect((await postback(network, makePostback({ transaction_id, status }))).status).toBe(200);
      }
    }
    const log = await eventually(async () => {
      const requests = await partnerLog(`/flaky/4/${unique}`);
      const delivered = requests.length - 4;
      return delivered >= 6 ? requests : null;
    }, 30_000);
    for (const transaction_id of tx) {
      const statuses = log
        .map((r) => new URL(r.url).searchParams)
        .filter((q) => q.get("tx") === transaction_id)
        .map((q) => q.get("s"));
      // Retries of one update come before the next update; the next never overtakes it.
      const firstSeen = statuses.filter((s, i) => statuses.indexOf(s) === i);
      expect(firstSeen).toEqual(["pending", "approved", "paid"]);
      const lastOfEach = ["pending", "approved", "paid"].map((s) => statuses.lastIndexOf(s));
      const firstOfNext = ["approved", "paid"].map((s) => statuses.indexOf(s));
      expect(firstOfNext[0]).toBeGreaterThan(lastOfEach[0] as number);
      expect(firstOfNext[1]).toBeGreaterThan(lastOfEach[1] as number);
    }
  });

  it("sends a coalescing partner only the newest state once it recovers, telling it the status it last had", async () => {
    const network = await createNetwork();
    const unique = uniqueId("coalesce");
    const partner = await createPartner({
      url_template: `${PARTNER}/fail/${unique}?tx={transaction_id}&s={status}&was={previous_status}`,
      retry_schedule_seconds: [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
      filters: { networks: [network.id] },
      delivery_order: "coalesce",
      breaker: { min_attempts: 1000 },
    });
    const transaction_id = uniqueId("tx");
    for (const status of ["pending", "approved", "paid"]) {
      expect((await postback(network, makePostback({ transaction_id, status }))).status).toBe(200);
    }
    // All three deliveries exist, and the partner has failed at least one request.
    await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 3 && (await partnerLog(`/fail/${unique}`)).length > 0 ? rows : null;
    });
    await expectStatus(
      await admin(`/v1/partners/${partner.id}`, {
        method: "PATCH",
        body: JSON.stringify({
          url_template: `${PARTNER}/ok/${unique}?tx={transaction_id}&s={status}&was={previous_status}`,
        }),
      }),
      200,
    );
    const rows = await eventually(async () => {
      const all = await deliveriesOf(partner.id);
      return all.every((d) => d.state === "delivered" || d.state === "superseded") ? all : null;
    }, 30_000);
    expect(rows.map((d) => d.state).sort()).toEqual(["delivered", "superseded", "superseded"]);
    const received = await partnerLog(`/ok/${unique}`);
    // The partner never took a request before: it hears only the newest state, with nothing before it.
    expect(received.map((r) => Object.fromEntries(new URL(r.url).searchParams))).toEqual([
      { tx: transaction_id, s: "paid", was: "" },
    ]);
    for (const superseded of rows.filter((d) => d.state === "superseded")) {
      expect(superseded.last_error).toMatch(
        /^superseded by dlv_\w+: a newer state of the conversion was waiting \(coalesce\)$/,
      );
    }
  });
});
