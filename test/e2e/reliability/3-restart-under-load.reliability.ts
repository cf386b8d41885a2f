/**
 * Restart under load: SIGKILL the wrangler dev process group in the middle of a load run, start it
 * again on the same --persist-to state and port, and check that every postback that got a 2xx
 * before the kill is in D1 afterwards and reaches the partner.
 *
 * wrangler dev's queues live in memory, so the kill loses every message in them: events (the
 * conversion objects send again what D1 never confirmed, after OUTBOX_RESEND_SECONDS) and
 * deliveries (the cron's sweep re-queues them after DELIVERY_SWEEP_AFTER_SECONDS). Both timers are
 * shortened here, and the test runs the cron as the deployed trigger would, since wrangler dev never does.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "../partner-server";
import {
  adminJson,
  conversions,
  createNetwork,
  createPartner,
  type Hub,
  makePostback,
  type Network,
  type PostResult,
  pollUntil,
  postSigned,
  report,
  runPool,
  SCALE,
  scaled,
  startHub,
  statusHistogram,
} from "./harness";

const BEFORE_KILL = scaled(300, 80);
const AFTER_RESTART = scaled(100, 20);
/** Kill once this many postbacks got their 2xx, while the rest are still in flight. */
const KILL_AFTER_ACKS = Math.floor(BEFORE_KILL / 2);
const CONNECTIONS = 16;
// Past the longest partner timeout of an attempt the kill interrupted, and the coordinator's retry of it.
const SETTLE_MS = 60_000 * Math.max(1, SCALE);
const RESEND_SECONDS = 5;
const SWEEP_CRON = "*/15 * * * *";
const CRON_EVERY_MS = 3_000;

let hub: Hub;
let partnerServer: PartnerServer;
let network: Network;

beforeAll(async () => {
  partnerServer = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = await startHub({
    vars: { OUTBOX_RESEND_SECONDS: String(RESEND_SECONDS), DELIVERY_SWEEP_AFTER_SECONDS: String(RESEND_SECONDS) },
  });
  network = await createNetwork(hub, "restart");
  await createPartner(hub, partnerServer.origin, [network.id]);
});

afterAll(async () => {
  await partnerServer?.close();
  await hub?.stop();
});

interface Sent {
  transactionId: string;
  result: PostResult;
  /** The answer came before the kill began. */
  beforeKill: boolean;
}

it("keeps every postback acknowledged before a SIGKILL, in D1 and at the partner", async () => {
  const started = Date.now();
  let acks = 0;
  let killing: Promise<void> | undefined;
  let killedAt = 0;
  const sendOne = async (prefix: string): Promise<Sent> => {
    const transactionId = `${prefix}-${randomUUID()}`;
    const result = await postSigned(hub, network, makePostback(transactionId));
    const beforeKill = killedAt === 0;
    if (result.status >= 200 && result.status < 300 && beforeKill) acks++;
    if (acks >= KILL_AFTER_ACKS && killing === undefined) {
      killedAt = Date.now();
      killing = hub.kill("SIGKILL");
    }
    return { transactionId, result, beforeKill };
  };
  // The load keeps going into the kill: requests in flight fail (connection reset or refused).
  const firstRun = await runPool(BEFORE_KILL, CONNECTIONS, () => sendOne("pre"));
  await killing;
  const downAt = Date.now();
  await hub.restart();
  const restartMs = Date.now() - downAt;
  let cronRuns = 0;
  const cron = setInterval(() => {
    hub.runCron(SWEEP_CRON).then(
      () => cronRuns++,
      (error: unknown) => console.warn(String(error)),
    );
  }, CRON_EVERY_MS);
  const secondRun = await runPool(AFTER_RESTART, CONNECTIONS, () => sendOne("post"));

  const ok = (s: Sent) => s.result.status >= 200 && s.result.status < 300;
  const ackedBefore = firstRun.filter((s) => ok(s) && s.beforeKill);
  const ackedAfter = secondRun.filter(ok);
  const mustExist = [...ackedBefore, ...ackedAfter];
  const wanted = new Set(mustExist.map((s) => s.transactionId));

  const inD1 = await pollUntil(
    async () => new Set((await conversions(hub, network.id)).map((c) => c.transaction_id)),
    (found) => [...wanted].every((id) => found.has(id)),
    SETTLE_MS,
  );
  const atPartner = () =>
    new Set(
      partnerServer.requests
        .filter((r) => r.answeredStatus === 200)
        .map((r) => new URL(r.url, partnerServer.origin).searchParams.get("tx") ?? ""),
    );
  const delivered = await pollUntil(
    async () => atPartner(),
    (found) => [...wanted].every((id) => found.has(id)),
    SETTLE_MS,
  );
  clearInterval(cron);
  const missingInD1 = [...wanted].filter((id) => !inD1.value.has(id));
  const missingAtPartner = [...wanted].filter((id) => !delivered.value.has(id));
  const lostBeforeKill = ackedBefore.filter(
    (s) => !inD1.value.has(s.transactionId) || !delivered.value.has(s.transactionId),
  ).length;
  const counts = {
    sent: firstRun.length + secondRun.length,
    acknowledged: mustExist.length,
    acknowledged_before_kill: ackedBefore.length,
    failed_or_after_kill: firstRun.length - ackedBefore.length,
    stored: [...wanted].filter((id) => inD1.value.has(id)).length,
    delivered: [...wanted].filter((id) => delivered.value.has(id)).length,
    lost: new Set([...missingInD1, ...missingAtPartner]).size,
    lost_before_kill: lostBeforeKill,
    restart_ms: restartMs,
    cron_runs: cronRuns,
    // The recovery at work, from the hub's own log lines (how much the kill took with it varies).
    events_resent: sumLogged(hub.log(), "outbox re-sent unconfirmed events", "rows"),
    deliveries_requeued: sumLogged(hub.log(), "re-queued stranded deliveries", "count"),
    settle_ms: Math.max(inD1.waitedMs, delivered.waitedMs),
  };
  report("restart under load", counts, Date.now() - started);
  console.log("statuses before kill:", statusHistogram(firstRun.map((s) => s.result)));
  console.log("statuses after restart:", statusHistogram(secondRun.map((s) => s.result)));
  if (counts.lost > 0) {
    console.log("missing in D1:", missingInD1.slice(0, 10), "missing at partner:", missingAtPartner.slice(0, 10));
    // Where each lost delivery stands, to tell a lost message from a stuck delivery or a failed attempt.
    const byTransaction = new Map(mustExist.map((s) => [s.transactionId, s.result.answer?.event_id]));
    for (const id of missingAtPartner.slice(0, 5)) {
      const eventId = byTransaction.get(id);
      const found = eventId ? await adminJson(hub, `/v1/deliveries?event_id=${eventId}`, 200) : "no event id";
      console.log(id, JSON.stringify(found));
    }
  }

  expect(ackedBefore.length).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);
  expect(ackedAfter.length).toBe(AFTER_RESTART);
  expect(firstRun.filter((s) => s.result.status >= 500).map((s) => s.result.error)).toEqual([]);
  expect(missingInD1).toEqual([]);
  expect(missingAtPartner).toEqual([]);
  expect(counts.lost).toBe(0);
  // Under this load the queues are never empty, so the kill must have taken messages with it.
  expect(
    counts.events_resent + counts.deliveries_requeued,
    "the kill lost no message: nothing was recovered",
  ).toBeGreaterThan(0);
});

/** Sums `field` over the JSON log lines whose message is `message`. */
function sumLogged(log: string, message: string, field: string): number {
  let total = 0;
  for (const line of log.split("\n")) {
    const start = line.indexOf("{");
    if (start < 0 || !line.includes(message)) continue;
    try {
      const entry = JSON.parse(line.slice(start)) as Record<string, unknown>;
      if (entry.message === message && typeof entry[field] === "number") total += entry[field];
    } catch {
      // Not one of the hub's JSON lines.
    }
  }
  return total;
}
