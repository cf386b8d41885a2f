/**
 * Restart under load: SIGKILL the wrangler dev process group in the middle of a load run, start it
 * again on the same --persist-to state and port, and check that every postback that got a 2xx
 * before the kill is in D1 afterwards and reaches the partner.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "../partner-server";
import {
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
  startHub,
  statusHistogram,
} from "./harness";

const BEFORE_KILL = 300 * SCALE;
const AFTER_RESTART = 100 * SCALE;
/** Kill once this many postbacks got their 2xx, while the rest are still in flight. */
const KILL_AFTER_ACKS = Math.floor(BEFORE_KILL / 2);
const CONNECTIONS = 16;
const SETTLE_MS = 45_000 * SCALE;

let hub: Hub;
let partnerServer: PartnerServer;
let network: Network;

beforeAll(async () => {
  partnerServer = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = await startHub();
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
    settle_ms: Math.max(inD1.waitedMs, delivered.waitedMs),
  };
  report("restart under load", counts, Date.now() - started);
  console.log("statuses before kill:", statusHistogram(firstRun.map((s) => s.result)));
  console.log("statuses after restart:", statusHistogram(secondRun.map((s) => s.result)));
  if (counts.lost > 0) {
    console.log("missing in D1:", missingInD1.slice(0, 10), "missing at partner:", missingAtPartner.slice(0, 10));
  }

  expect(ackedBefore.length).toBeGreaterThanOrEqual(KILL_AFTER_ACKS);
  expect(ackedAfter.length).toBe(AFTER_RESTART);
  expect(firstRun.filter((s) => s.result.status >= 500).map((s) => s.result.error)).toEqual([]);
  expect(missingInD1).toEqual([]);
  expect(missingAtPartner).toEqual([]);
  expect(counts.lost).toBe(0);
});
