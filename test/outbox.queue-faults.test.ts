/**
 * Reliability, in workerd: queue send failures injected into the outbox flush lose nothing. Every
 * conversion's object gets a queue that first refuses the send (an exception), then takes the
 * message and loses it (what wrangler dev's in-memory queue does when it is killed), and only then
 * delivers. Every acknowledged postback must still reach D1 and the partner, exactly once.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { expect, it } from "vitest";
import type { ConversionObject } from "../src/conversions/conversion-object";
import { conversionObjectName } from "../src/domain/conversion";
import {
  createNetwork,
  createPartner,
  eventually,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";

const CONVERSIONS = 24;

it("loses nothing when the outbox's queue refuses, then loses, every event's first sends", async () => {
  const network = await createNetwork();
  const prefix = `/ok/${uniqueId("faults")}`;
  await createPartner({ url_template: `${PARTNER}${prefix}?tx={transaction_id}`, filters: { networks: [network.id] } });
  const bodies = Array.from({ length: CONVERSIONS }, () => makePostback());
  const stubs = bodies.map((body) =>
    env.CONVERSIONS.getByName(conversionObjectName(network.id, String(body.transaction_id), false)),
  );
  const injected = { refused: 0, swallowed: 0, passed: 0 };
  for (const stub of stubs) {
    await runInDurableObject(stub, (instance: ConversionObject) => {
      const real = instance.eventsQueue;
      let calls = 0;
      instance.eventsQueue = {
        sendBatch: async (messages, options) => {
          calls++;
          if (calls === 1) {
            injected.refused++;
            throw new Error("injected: queue refused the send");
          }
          if (calls === 2) {
            injected.swallowed++;
            return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } };
          }
          injected.passed++;
          return real.sendBatch(messages, options);
        },
      };
    });
  }

  const resends = async () =>
    (
      await env.DB.prepare(
        "SELECT coalesce(sum(value), 0) AS n FROM metric_counters WHERE name = 'postback_hub_outbox_resends'",
      ).first<{
        n: number;
      }>()
    )?.n ?? 0;
  const resendsBefore = await resends();
  const answers = await Promise.all(bodies.map((body) => postback(network, body)));
  const acknowledged = answers.filter((response) => response.status === 200).length;
  // The refused sends retry on their own (1 s backoff); the lost ones wait OUTBOX_RESEND_SECONDS
  // (300 s), which the test skips by making every row due and running each object's alarm.
  await eventually(async () => (injected.swallowed === CONVERSIONS ? true : null), 20_000);
  for (const stub of stubs) {
    await runInDurableObject(stub, (_instance, state) => {
      state.storage.sql.exec("UPDATE outbox SET due_at = 0");
    });
    await runDurableObjectAlarm(stub);
  }

  const ids = bodies.map((body) => String(body.transaction_id));
  const stored = await eventually(async () => {
    const { results } = await env.DB.prepare(
      "SELECT transaction_id FROM conversions WHERE network_id = ? AND transaction_id IN (SELECT value FROM json_each(?))",
    )
      .bind(network.id, JSON.stringify(ids))
      .all<{ transaction_id: string }>();
    return results.length === CONVERSIONS ? results : null;
  }, 20_000);
  const received = await eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= CONVERSIONS ? log : null;
  }, 20_000);
  const deliveredIds = received.map((request) => new URL(request.url).searchParams.get("tx"));
  // Each event's receipt empties its object's outbox.
  await Promise.all(stubs.map((stub) => eventually(async () => ((await stub.inspect()).outbox === 0 ? true : null))));
  const outboxes = await Promise.all(stubs.map(async (stub) => (await stub.inspect()).outbox));
  const counts = {
    sent: bodies.length,
    acknowledged,
    ...injected,
    stored: stored.length,
    delivered: new Set(deliveredIds).size,
    lost: ids.filter((id) => !deliveredIds.includes(id) || !stored.some((row) => row.transaction_id === id)).length,
    outbox_rows_left: outboxes.reduce((sum, n) => sum + n, 0),
  };
  console.log("[reliability] queue send failures in the outbox flush", JSON.stringify(counts));

  expect(acknowledged).toBe(CONVERSIONS);
  expect(injected).toEqual({ refused: CONVERSIONS, swallowed: CONVERSIONS, passed: CONVERSIONS });
  expect(counts.lost).toBe(0);
  expect(deliveredIds.toSorted()).toEqual(ids.toSorted());
  expect(counts.outbox_rows_left).toBe(0);
  // Each lost send was sent again once, and D1 was told (GET /metrics, the outbox_unconfirmed rule).
  expect((await resends()) - resendsBefore).toBe(CONVERSIONS);
});
