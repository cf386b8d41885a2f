/**
 * Test and live apart, seen from outside: the real `wrangler dev`, a network posting with its
 * static token (test postbacks marked with `x-postback-test: 1`), and two real HTTP partners on
 * 127.0.0.1, one that takes test traffic and one that does not. A test reversal must leave the
 * live conversion approved and listed as live; a live postback identical to an earlier test one
 * must be accepted and reach the live partner.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, expectStatus, makePostback as makeSharedPostback, eventually as waitFor } from "./support";

const DEADLINE_MS = 60_000;
/** After the expected deliveries, how long to keep listening for a stray one. */
const QUIET_MS = 2_500;

interface IngestAnswer {
  status: string;
  event_id: string;
  conversion_status: string;
}

interface Conversion {
  transaction_id: string;
  status: string;
  test: boolean;
  events: { event_id: string; status: string; test: boolean }[];
}

let hub: SharedHub;
let partners: PartnerServer;
let networkId: string;
let token: string;

beforeAll(async () => {
  partners = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = sharedHub();
  networkId = `e2e-tl-${randomUUID().slice(0, 8)}`;
  const network = await expectStatus<{ token?: string }>(
    await admin("/v1/networks", {
      method: "POST",
      body: JSON.stringify({
        id: networkId,
        name: "E2E test and live",
        auth: { methods: ["token"], ip_allowlist: [] },
      }),
    }),
    201,
  );
  if (network.token === undefined) throw new Error("a token network was created without a token");
  token = network.token;
  for (const [path, receivesTests] of [
    ["live", false],
    ["tests", true],
  ] as const) {
    await expectStatus(
      await admin("/v1/partners", {
        method: "POST",
        body: JSON.stringify({
          name: `E2E ${path} partner`,
          url_template: `${partners.origin}/${path}?tx={transaction_id}&status={status}&test={test}`,
          method: "GET",
          filters: { networks: [networkId] },
          receives_test_traffic: receivesTests,
        }),
      }),
      201,
    );
  }
});

afterAll(async () => {
  await partners?.close();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function post(body: Record<string, unknown>, test: boolean): Promise<IngestAnswer> {
  const response = await fetch(`${hub.baseUrl}/v1/postbacks/${networkId}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-postback-token": token,
      ...(test ? { "x-postback-test": "1" } : {}),
    },
    body: JSON.stringify(body),
  });
  return expectStatus<IngestAnswer>(response, 200);
}

function eventually<T>(probe: () => Promise<T | null>, what: string): Promise<T> {
  return waitFor(probe, what, { timeoutMs: DEADLINE_MS, context: () => hub.log() });
}

/** The conversion of one world, once D1 holds it with `status`. */
function conversion(transactionId: string, test: boolean, status: string): Promise<Conversion> {
  return eventually(
    async () => {
      const response = await admin(`/v1/conversions/${networkId}/${transactionId}${test ? "?test=true" : ""}`);
      if (response.status !== 200) return null;
      const found = (await response.json()) as Conversion;
      return found.status === status ? found : null;
    },
    `the ${test ? "test" : "live"} conversion ${transactionId} as ${status}`,
  );
}

async function listed(test: boolean): Promise<{ transaction_id: string; status: string; test: boolean }[]> {
  const page = await expectStatus<{ data: { transaction_id: string; status: string; test: boolean }[] }>(
    await admin(`/v1/conversions?network_id=${networkId}&test=${test}&limit=200`),
    200,
  );
  return page.data;
}

/** What each partner received for a transaction: [path, status, test] per request. */
function receivedFor(transactionId: string): [string, string | null, string | null][] {
  return partners.requests
    .map((request) => new URL(request.url, partners.origin))
    .filter((url) => url.searchParams.get("tx") === transactionId)
    .map((url): [string, string | null, string | null] => [
      url.pathname,
      url.searchParams.get("status"),
      url.searchParams.get("test"),
    ])
    .sort();
}

function makePostback(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return makeSharedPostback({ amount: "42.00", ...overrides });
}

describe("test and live traffic for one transaction, through wrangler dev", () => {
  it("a test reversal leaves the live conversion approved, listed with ?test=false, and tells only the test partner", async () => {
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    expect(await post(body, false)).toMatchObject({ status: "accepted", conversion_status: "approved" });
    await conversion(transactionId, false, "approved");

    const reversal = await post({ transaction_id: transactionId, status: "reversed" }, true);
    expect(reversal).toMatchObject({ status: "accepted", conversion_status: "reversed" });
    await conversion(transactionId, true, "reversed");

    const live = await conversion(transactionId, false, "approved");
    expect(live.test).toBe(false);
    expect(live.events.map((e) => [e.status, e.test])).toEqual([["approved", false]]);
    expect(await listed(false)).toContainEqual(
      expect.objectContaining({ transaction_id: transactionId, status: "approved", test: false }),
    );
    expect((await listed(false)).filter((c) => c.transaction_id === transactionId)).toHaveLength(1);
    expect(await listed(true)).toContainEqual(
      expect.objectContaining({ transaction_id: transactionId, status: "reversed" }),
    );

    await eventually(async () => (receivedFor(transactionId).length >= 3 ? true : null), "three deliveries");
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(receivedFor(transactionId)).toEqual([
      ["/live", "approved", "false"],
      ["/tests", "approved", "false"],
      ["/tests", "reversed", "true"],
    ]);
  });

  it("a live postback identical to an earlier test one is accepted and reaches the live partner", async () => {
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    const trial = await post(body, true);
    expect(trial.status).toBe("accepted");
    await eventually(async () => (receivedFor(transactionId).length >= 1 ? true : null), "the test delivery");

    const real = await post(body, false);
    expect(real).toMatchObject({ status: "accepted", conversion_status: "approved" });
    expect(real.event_id).not.toBe(trial.event_id);
    await conversion(transactionId, false, "approved");

    await eventually(async () => (receivedFor(transactionId).length >= 3 ? true : null), "the live deliveries");
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(receivedFor(transactionId)).toEqual([
      ["/live", "approved", "false"],
      ["/tests", "approved", "false"],
      ["/tests", "approved", "true"],
    ]);
    // And the repeat of the live postback is the live one's duplicate, as before.
    expect(await post(body, false)).toMatchObject({ status: "duplicate", event_id: real.event_id });
  });
});
