/**
 * Whose clock, seen from outside: the real `wrangler dev`, postbacks signed by the Standard
 * Webhooks library, a real HTTP partner on 127.0.0.1. approved (event_time 1 h ago) → paid (no
 * event_time) → reversed (event_time 10 min ago) must end reversed in D1, with the reversal
 * delivered; and an outsider, with nothing but the conversions API, Node's crypto and the RFC 8785
 * package of the RFC's author, recomputes the conversion's hash chain.
 */
import { createHash, randomUUID } from "node:crypto";
import canonicalize from "canonicalize";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, expectStatus, signedPostback, eventually as waitFor } from "./support";

const DEADLINE_MS = 60_000;
const QUIET_MS = 2_500;

interface IngestAnswer {
  status: string;
  event_id: string;
  conversion_status: string;
}

interface ConversionDetail {
  network_id: string;
  transaction_id: string;
  test: boolean;
  status: string;
  event_time: string;
  event_time_supplied: boolean;
  events: {
    event_id: string;
    seq: number;
    verdict: string;
    status: string;
    received_at: string;
    event: Record<string, unknown>;
    hash: string | null;
    prev_hash: string | null;
  }[];
}

let hub: SharedHub;
let partner: PartnerServer;
let networkId: string;
let secret: string;

beforeAll(async () => {
  partner = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = sharedHub();
  networkId = `e2e-clk-${randomUUID().slice(0, 8)}`;
  secret = (
    await expectStatus<{ secret: string }>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: networkId, name: "E2E clocks" }) }),
      201,
    )
  ).secret;
  await expectStatus(
    await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({
        name: "E2E clocks partner",
        url_template: `${partner.origin}/pb?tx={transaction_id}&status={status}&event={event_id}`,
        method: "GET",
        filters: { networks: [networkId] },
      }),
    }),
    201,
  );
});

afterAll(async () => {
  await partner?.close();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function post(body: Record<string, unknown>): Promise<IngestAnswer> {
  return expectStatus<IngestAnswer>(await signedPostback(hub, networkId, secret, body), 200);
}

function eventually<T>(probe: () => Promise<T | null>, what: string): Promise<T> {
  return waitFor(probe, what, { timeoutMs: DEADLINE_MS, context: () => hub.log() });
}

const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();

describe("a network's own clock against the hub's receipt time, through wrangler dev", () => {
  it("approved (1 h ago) → paid (no time) → reversed (10 min ago) ends reversed, and the partner hears of the reversal", async () => {
    const transactionId = `tx-${randomUUID()}`;
    const approved = await post({
      transaction_id: transactionId,
      status: "approved",
      amount: "80.00",
      currency: "EUR",
      event_time: minutesAgo(60),
    });
    expect(approved.status).toBe("accepted");
    const paid = await post({ transaction_id: transactionId, status: "paid" });
    expect(paid).toMatchObject({ status: "updated", conversion_status: "paid" });
    const reversedAt = minutesAgo(10);
    const reversed = await post({ transaction_id: transactionId, status: "reversed", event_time: reversedAt });
    expect(reversed).toMatchObject({ status: "updated", conversion_status: "reversed" });

    const detail = await eventually(async () => {
      const response = await admin(`/v1/conversions/${networkId}/${transactionId}`);
      if (response.status !== 200) return null;
      const found = (await response.json()) as ConversionDetail;
      return found.events.length === 3 && found.status === "reversed" ? found : null;
    }, "the reversed conversion in D1");
    expect(detail).toMatchObject({
      status: "reversed",
      event_time: new Date(reversedAt).toISOString(),
      event_time_supplied: true,
    });
    expect(detail.events.map((e) => [e.event_id, e.verdict, e.status])).toEqual([
      [approved.event_id, "accepted", "approved"],
      [paid.event_id, "updated", "paid"],
      [reversed.event_id, "updated", "reversed"],
    ]);

    const delivered = await eventually(async () => {
      const seen = partner.requests.filter(
        (r) => new URL(r.url, partner.origin).searchParams.get("tx") === transactionId,
      );
      return seen.length >= 3 ? seen : null;
    }, "three deliveries");
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    expect(partner.requests.filter((r) => r.url.includes(transactionId))).toHaveLength(3);
    expect(
      delivered
        .map((r) => new URL(r.url, partner.origin).searchParams)
        .map((params) => [params.get("event"), params.get("status")])
        .sort(),
    ).toEqual(
      [
        [approved.event_id, "approved"],
        [paid.event_id, "paid"],
        [reversed.event_id, "reversed"],
      ].sort(),
    );

    // The outsider's check of the history: SHA-256 over the RFC 8785 text of each event's content.
    let previous: string | null = null;
    for (const event of detail.events) {
      const content = {
        v: 1,
        network_id: detail.network_id,
        transaction_id: detail.transaction_id,
        test: detail.test,
        seq: event.seq,
        event_id: event.event_id,
        verdict: event.verdict,
        received_at: event.received_at,
        event: event.event,
        prev_hash: previous,
      };
      const hash: string = createHash("sha256")
        .update(canonicalize(content) ?? "", "utf8")
        .digest("hex");
      expect({ seq: event.seq, hash: event.hash, prev_hash: event.prev_hash }).toEqual({
        seq: event.seq,
        hash,
        prev_hash: previous,
      });
      previous = hash;
    }
    const proof = await expectStatus<{ status: string; head: { seq: number; hash: string } }>(
      await admin(`/v1/conversions/${networkId}/${transactionId}/proof`),
      200,
    );
    expect(proof).toMatchObject({ status: "verified", head: { seq: 3, hash: previous } });
  });
});
