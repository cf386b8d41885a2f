/**
 * A network's view of the hub: the real `wrangler dev` process, reached over HTTP with Node's
 * fetch, postbacks signed by the official Standard Webhooks library rather than the hub's own code.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback } from "./support";

interface Network {
  id: string;
  secret: string;
}

interface IngestAnswer {
  status: string;
  event_id: string;
  conversion_status: string;
}

interface Problem {
  code: string;
  errors: { location: string; message: string }[];
}

interface ConversionDetail {
  status: string;
  amount: string | null;
  currency: string | null;
  events: { event_id: string; verdict: string; status: string }[];
}

let hub: SharedHub;
let network: Network;

beforeAll(async () => {
  hub = sharedHub();
  const id = `e2e-${randomUUID().slice(0, 8)}`;
  const created = await expectStatus<Network>(
    await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id, name: "E2E Network" }) }),
    201,
  );
  network = { id, secret: created.secret };
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

/** Posts `body` byte for byte, signed as a network would sign it (a fresh timestamp per attempt). */
function post(body: Record<string, unknown>, secret = network.secret): Promise<Response> {
  return signedPostback(hub, network.id, secret, body);
}

async function getConversion(transactionId: string): Promise<{ status: number; body: string }> {
  const response = await admin(`/v1/conversions/${network.id}/${encodeURIComponent(transactionId)}`);
  return { status: response.status, body: await response.text() };
}

describe("a network posting to wrangler dev", () => {
  it("accepts a new transaction and answers a repeat as a duplicate of it", async () => {
    const body = makePostback();
    const first = await expectStatus<IngestAnswer>(await post(body), 200);
    expect(first).toMatchObject({ status: "accepted", conversion_status: "approved" });

    const repeat = await expectStatus<IngestAnswer>(await post(body), 200);
    expect(repeat).toMatchObject({ status: "duplicate", event_id: first.event_id });
  });

  it("applies pending → approved and records the conversion with its history in D1", async () => {
    const pending = makePostback({ status: "pending" });
    const accepted = await expectStatus<IngestAnswer>(await post(pending), 200);
    expect(accepted.status).toBe("accepted");
    const updated = await expectStatus<IngestAnswer>(await post({ ...pending, status: "approved" }), 200);
    expect(updated).toMatchObject({ status: "updated", conversion_status: "approved" });

    const transactionId = String(pending.transaction_id);
    const found = await eventually(() => getConversion(transactionId), "the conversion with both events", {
      ready: ({ status, body }) => status === 200 && (JSON.parse(body) as ConversionDetail).events.length >= 2,
      timeoutMs: 20_000,
      context: () => hub.log(),
    });
    const conversion = JSON.parse(found.body) as ConversionDetail;
    expect(conversion).toMatchObject({ status: "approved", amount: "29.99", currency: "USD" });
    expect(conversion.events.map(({ event_id, verdict, status }) => ({ event_id, verdict, status }))).toEqual([
      { event_id: accepted.event_id, verdict: "accepted", status: "pending" },
      { event_id: updated.event_id, verdict: "updated", status: "approved" },
    ]);

    const list = await expectStatus<{ data: { transaction_id: string; status: string }[]; next_cursor: unknown }>(
      await admin(`/v1/conversions?network_id=${network.id}`),
      200,
    );
    expect(list.next_cursor).toBeNull();
    expect(list.data).toContainEqual(expect.objectContaining({ transaction_id: transactionId, status: "approved" }));
  });

  it("rejects a signature made with another secret as a 401 problem", async () => {
    const otherSecret = `whsec_${randomBytes(32).toString("base64")}`;
    const response = await post(makePostback(), otherSecret);
    const problem = await expectStatus<Problem>(response, 401);
    expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(problem.code).toBe("unauthorized");
  });

  it("rejects a negative amount as a 422 problem naming body.amount", async () => {
    const response = await post(makePostback({ amount: "-5.00" }));
    const problem = await expectStatus<Problem>(response, 422);
    expect(response.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(problem.errors.map((error) => error.location)).toContain("body.amount");
  });

  it("accepts exactly one of 50 concurrent copies of a postback and answers the rest as duplicates", async () => {
    const body = makePostback();
    const responses = await Promise.all(Array.from({ length: 50 }, () => post(body)));
    const answers = await Promise.all(responses.map((response) => expectStatus<IngestAnswer>(response, 200)));
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === "accepted")).toHaveLength(1);
    expect(statuses.filter((status) => status === "duplicate")).toHaveLength(49);
    expect(new Set(answers.map((answer) => answer.event_id)).size).toBe(1);
  });
});
