import { createExecutionContext, createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";

async function insertDelivery(id: string, state: string, createdAt: string) {
  await env.DB.prepare(
    `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at, updated_at)
     VALUES (?, ?, 'ptn_x', 'acme', 'tx', ?, '{}', ?, ?)`,
  )
    .bind(id, `evt_${id}`, state, createdAt, createdAt)
    .run();
}

describe("retention cron", () => {
  it("prunes old history, clicks and finished deliveries, keeping conversions and unfinished deliveries", async () => {
    const old = "2020-01-01T00:00:00.000Z";
    const recent = new Date().toISOString();
    await env.DB.batch([
      env.DB.prepare(
        `INSERT INTO conversion_events (event_id, network_id, transaction_id, seq, verdict, status, payload, received_at)
         VALUES ('evt_old', 'acme', 'tx', 1, 'accepted', 'approved', '{}', ?), ('evt_new', 'acme', 'tx', 2, 'updated', 'paid', '{}', ?)`,
      ).bind(old, recent),
      env.DB.prepare(
        `INSERT INTO conversions (network_id, transaction_id, status, event_time, first_seen_at, updated_at, version)
         VALUES ('acme', 'tx', 'paid', ?, ?, ?, 2)`,
      ).bind(old, old, old),
    ]);
    const click = (id: string, at: string) =>
      env.DB.prepare(
        "INSERT INTO clicks (click_id, offer_id, partner_id, clicked_at, recorded_at) VALUES (?, 'ofr_x', 'ptn_x', ?, ?)",
      ).bind(id, at, at);
    await env.DB.batch([click("click-old", old), click("click-new", recent)]);
    await insertDelivery("dlv_old_done", "delivered", old);
    await insertDelivery("dlv_old_parked", "parked", old);
    await insertDelivery("dlv_new_done", "delivered", recent);
    await env.DB.prepare(
      `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, latency_ms, outcome)
       VALUES ('dlv_old_done', 1, 'ptn_x', ?, 5, 'delivered')`,
    )
      .bind(old)
      .run();

    const handler: ExportedHandler<Env> = worker;
    await handler.scheduled?.(
      createScheduledController({ cron: "17 3 * * *", scheduledTime: Date.now() }),
      env,
      createExecutionContext(),
    );

    const events = await env.DB.prepare("SELECT event_id FROM conversion_events ORDER BY event_id").all();
    expect(events.results).toEqual([{ event_id: "evt_new" }]);
    const deliveries = await env.DB.prepare("SELECT id FROM deliveries ORDER BY id").all();
    expect(deliveries.results).toEqual([{ id: "dlv_new_done" }, { id: "dlv_old_parked" }]);
    const clicks = await env.DB.prepare("SELECT click_id FROM clicks WHERE offer_id = 'ofr_x'").all();
    expect(clicks.results).toEqual([{ click_id: "click-new" }]);
    const attempts = await env.DB.prepare("SELECT count(*) AS n FROM delivery_attempts").first();
    expect(attempts).toEqual({ n: 0 });
    expect(await env.DB.prepare("SELECT status FROM conversions WHERE transaction_id = 'tx'").first()).toEqual({
      status: "paid",
    });
  });
});
