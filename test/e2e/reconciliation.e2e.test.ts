/**
 * Reconciliation from outside: conversions posted to the real `wrangler dev` as a network posts them
 * (signed by the Standard Webhooks library), then the advertiser's month-end report, in its own
 * column names and status words, uploaded as CSV over HTTP. The diff must find exactly the
 * differences written into the report; applying one moves the conversion through its Durable
 * Object, and the partner (a real HTTP server on 127.0.0.1) hears of the change.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PartnerServer, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback } from "./support";

interface Reconciliation {
  id: string;
  state: string;
  error: string | null;
  differences: Record<string, number> | null;
  totals: {
    report: { amount: { currency: string; amount: string }[] };
    hub: { amount: { currency: string; amount: string }[] };
  };
}

interface Difference {
  id: string;
  class: string;
  transaction_id: string;
}

let hub: SharedHub;
let partner: PartnerServer;
let networkId: string;
let secret: string;

beforeAll(async () => {
  partner = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = sharedHub();
  networkId = `e2e-rec-${randomUUID().slice(0, 8)}`;
  const network = await expectStatus<{ secret: string }>(
    await admin("/v1/networks", {
      method: "POST",
      body: JSON.stringify({ id: networkId, name: "E2E Reconciliation" }),
    }),
    201,
  );
  secret = network.secret;
  await expectStatus(
    await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({
        name: "E2E reconciliation partner",
        url_template: `${partner.origin}/pb?tx={transaction_id}&status={status}&amount={amount}`,
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

async function post(fields: Record<string, unknown>): Promise<string> {
  const body = makePostback(fields);
  await expectStatus(await signedPostback(hub, networkId, secret, body), 200);
  return String(body.transaction_id);
}

describe("a month-end report against the real hub", () => {
  it("finds exactly the known differences, and a correction reaches the partner", async () => {
    const since = new Date(Date.now() - 60_000).toISOString();
    const agreed = await post({ status: "approved", amount: "10.00", currency: "USD" });
    const declinedThere = await post({ status: "approved", amount: "20.00", currency: "USD" });
    const paidLess = await post({ status: "approved", amount: "30.00", currency: "EUR" });
    const unknownThere = await post({ status: "pending", amount: "40.00", currency: "USD" });
    const neverPosted = `tx-${randomUUID()}`;
    // Every conversion in D1 (the hub's side of the diff is D1's record).
    await eventually(
      async () => {
        const page = await expectStatus<{ data: unknown[] }>(
          await admin(`/v1/conversions?network_id=${networkId}&limit=50`),
          200,
        );
        return page.data.length === 4 ? page : null;
      },
      "four conversions in D1",
      { context: () => hub.log() },
    );

    const report = [
      "Order;State;Sale amount;Currency;Date",
      `${agreed};Confirmed;10;USD;2026-11-30`,
      `${declinedThere};Cancelled;20.00;USD;2026-11-30`,
      `${paidLess};Confirmed;27.5;EUR;2026-11-30`,
      `${neverPosted};Confirmed;5.25;USD;2026-11-29`,
      "",
    ].join("\n");
    const query = new URLSearchParams({
      network_id: networkId,
      since,
      until: new Date(Date.now() + 60_000).toISOString(),
      delimiter: "semicolon",
      transaction_id_column: "Order",
      status_column: "State",
      amount_column: "Sale amount",
      date_column: "Date",
      approved_values: "Confirmed",
      declined_values: "Cancelled",
    });
    const uploaded = await fetch(`${hub.baseUrl}/v1/reconciliations?${query}`, {
      method: "POST",
      headers: { authorization: `Bearer ${hub.adminToken}`, "content-type": "text/csv" },
      body: report,
    });
    const created = await expectStatus<Reconciliation>(uploaded, 202);
    const location = uploaded.headers.get("location");
    expect(location).toBe(`/v1/reconciliations/${created.id}`);

    const done = await eventually(
      async () => {
        const body = await expectStatus<Reconciliation>(await admin(location ?? ""), 200);
        return body.state === "finished" || body.state === "failed" ? body : null;
      },
      "the diff finished",
      { context: () => hub.log() },
    );
    expect(done.state, done.error ?? "").toBe("finished");
    expect(done.differences).toEqual({
      missing_in_hub: 1,
      missing_in_report: 1,
      status: 1,
      amount: 1,
      payout: 0,
      credit: 0,
    });
    const differences = await expectStatus<{ data: Difference[] }>(
      await admin(`/v1/reconciliations/${created.id}/differences`),
      200,
    );
    expect(differences.data.map((d) => `${d.class} ${d.transaction_id}`).sort()).toEqual(
      [
        `amount ${paidLess}`,
        `missing_in_hub ${neverPosted}`,
        `missing_in_report ${unknownThere}`,
        `status ${declinedThere}`,
      ].sort(),
    );
    expect(done.totals.report.amount).toEqual([
      { currency: "EUR", amount: "27.5" },
      { currency: "USD", amount: "35.25" },
    ]);
    expect(done.totals.hub.amount).toEqual([
      { currency: "EUR", amount: "30" },
      { currency: "USD", amount: "70" },
    ]);

    // The partner heard of the four postbacks first; nothing else is on its way to it.
    await eventually(
      async () => {
        const heard = new Set(partner.requests.map((r) => new URL(r.url, partner.origin).searchParams.get("tx")));
        return [agreed, declinedThere, paidLess, unknownThere].every((tx) => heard.has(tx)) ? heard : null;
      },
      "the partner told of the four postbacks",
      { context: () => hub.log() },
    );
    // The advertiser is right about the cancelled sale: a dry run, then the correction.
    const heardBefore = partner.requests.length;
    const dry = await expectStatus<{ results: { outcome: string }[] }>(
      await admin(`/v1/reconciliations/${created.id}/corrections`, {
        method: "POST",
        body: JSON.stringify({ difference_ids: [`status:${declinedThere}`], dry_run: true }),
      }),
      200,
    );
    expect(dry.results.map((r) => r.outcome)).toEqual(["applied"]);
    const applied = await expectStatus<{ results: { outcome: string; verdict: string }[] }>(
      await admin(`/v1/reconciliations/${created.id}/corrections`, {
        method: "POST",
        body: JSON.stringify({ difference_ids: [`status:${declinedThere}`] }),
      }),
      200,
    );
    expect(applied.results).toEqual([expect.objectContaining({ outcome: "applied", verdict: "updated" })]);

    const notice = await eventually(
      async () =>
        partner.requests.find(
          (request) =>
            new URL(request.url, partner.origin).searchParams.get("tx") === declinedThere &&
            new URL(request.url, partner.origin).searchParams.get("status") === "declined",
        ),
      "the partner told of the decline",
      { context: () => `${JSON.stringify(partner.requests.map((r) => r.url))}\n${hub.log()}` },
    );
    expect(notice.method).toBe("GET");
    // The dry run told nobody anything: the only request since is the correction's.
    const afterwards = partner.requests.slice(heardBefore).filter((r) => r.url.includes(declinedThere));
    expect(afterwards.map((r) => new URL(r.url, partner.origin).searchParams.get("status"))).toEqual(["declined"]);
    const conversion = await expectStatus<{ status: string }>(
      await admin(`/v1/conversions/${networkId}/${declinedThere}`),
      200,
    );
    expect(conversion.status).toBe("declined");
  });
});
