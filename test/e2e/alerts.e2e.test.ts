/**
 * An operator's alert, end to end: the real `wrangler dev` with ALERT_URL pointing at a real HTTP
 * server on 127.0.0.1. A partner starts failing; the cron's evaluation opens an incident and the
 * alert reaches the server, signed so that the standardwebhooks library verifies it; the partner
 * recovers, its successes dilute the failures below the rule's share, and the resolution arrives
 * with the same alert id.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "./partner-server";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback } from "./support";
import { startWranglerDev, type WranglerDev } from "./wrangler-dev";

const ALERT_SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const EVERY_15_MINUTES = "*/15 * * * *";

interface Notice {
  type: string;
  alert_id: string;
  rule: string;
  subject: string;
  summary: string;
}

let hub: WranglerDev;
let receiver: Server;
const notices: Notice[] = [];
const refused: string[] = [];
let partner: PartnerServer;
let failing = true;
let refusedDeliveries = 0;
let networkId: string;
let secret: string;
let partnerId: string;

beforeAll(async () => {
  const verifier = new Webhook(ALERT_SECRET);
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)]));
      try {
        notices.push(verifier.verify(body, headers) as Notice);
        res.writeHead(204).end();
      } catch (error) {
        refused.push(String(error));
        res.writeHead(400).end();
      }
    });
  });
  receiver.listen(0, "127.0.0.1");
  await once(receiver, "listening");
  const { port } = receiver.address() as AddressInfo;
  partner = await startPartnerServer(() => {
    if (!failing) return { status: 200, body: "ok" };
    refusedDeliveries += 1;
    return { status: 500, body: "down" };
  });
  hub = await startWranglerDev({
    label: "e2e-alerts",
    vars: { ALERT_URL: `http://127.0.0.1:${port}/alerts` },
    // Not through the env file: with [secrets] declared, wrangler dev loads only the required ones
    // from it, and ALERT_SECRET is optional.
    args: ["--var", `ALERT_SECRET:${ALERT_SECRET}`],
  });
  networkId = `e2e-alerts-${randomUUID().slice(0, 8)}`;
  secret = (
    await expectStatus<{ secret: string }>(
      await adminRequest(hub, "/v1/networks", {
        method: "POST",
        body: JSON.stringify({ id: networkId, name: "E2E alerts" }),
      }),
      201,
    )
  ).secret;
  partnerId = (
    await expectStatus<{ id: string }>(
      await adminRequest(hub, "/v1/partners", {
        method: "POST",
        body: JSON.stringify({
          name: "E2E failing partner",
          url_template: `${partner.origin}/pb?tx={transaction_id}`,
          filters: { networks: [networkId] },
          // Retries late enough that none dies while the test waits for the alert.
          retry_schedule_seconds: [5, 5, 5],
        }),
      }),
      201,
    )
  ).id;
  // Fire on the few attempts a test makes.
  await expectStatus(
    await adminRequest(hub, "/v1/alert-rules/partner_failure_share", {
      method: "PATCH",
      body: JSON.stringify({ min_attempts: 2, window_minutes: 60, share: 0.5 }),
    }),
    200,
  );
}, 120_000);

afterAll(async () => {
  await hub?.stop();
  await partner?.close();
  receiver?.close();
});

const mine = () => notices.filter((notice) => notice.subject === `partner:${partnerId}`);

describe("an alert from the real wrangler dev", () => {
  it("reaches the channel signed when a partner starts failing, and its resolution when it recovers", async () => {
    await expectStatus(await signedPostback(hub, networkId, secret, makePostback()), 200);
    await expectStatus(await signedPostback(hub, networkId, secret, makePostback()), 200);
    await eventually(async () => (partner.requests.length >= 2 ? true : null), "the partner refused two deliveries", {
      context: () => hub.log(),
    });
    const firing = await eventually(
      async () => {
        await hub.runCron(EVERY_15_MINUTES);
        return mine().find((notice) => notice.type === "alert.firing");
      },
      "the firing alert at the channel",
      { timeoutMs: 30_000, context: () => `${JSON.stringify(notices)}\n${refused.join("\n")}\n${hub.log()}` },
    );
    expect(firing).toMatchObject({ rule: "partner_failure_share", alert_id: expect.stringMatching(/^inc_/) });
    expect(refused).toEqual([]);
    const open = await expectStatus<{ data: { id: string; state: string }[] }>(
      await adminRequest(hub, "/v1/alerts?state=open"),
      200,
    );
    expect(open.data.map((incident) => incident.id)).toContain(firing.alert_id);

    // The partner recovers: more successes than failures in the window bring the share below half.
    failing = false;
    const successes = refusedDeliveries + 1;
    for (let i = 0; i < successes; i += 1) {
      await expectStatus(await signedPostback(hub, networkId, secret, makePostback()), 200);
    }
    const resolved = await eventually(
      async () => {
        await hub.runCron(EVERY_15_MINUTES);
        return mine().find((notice) => notice.type === "alert.resolved");
      },
      "the resolution at the channel",
      { timeoutMs: 60_000, context: () => `${JSON.stringify(notices)}\n${hub.log()}` },
    );
    expect(resolved.alert_id).toBe(firing.alert_id);
    expect(mine().filter((notice) => notice.type === "alert.firing")).toHaveLength(1);
    expect(refused).toEqual([]);
  }, 240_000);
});
