/**
 * Reconciliation as an operator uses it: postbacks through the real pipeline, a report that differs
 * in known ways, exactly those differences with exact totals per currency, corrections dry-run then
 * applied through each conversion's Durable Object (lifecycle, chain, partners told), kept and
 * idempotent; and every refused upload leaving nothing behind.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { seedOffer } from "./support/attribution";
import {
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { allDifferences, correct, finished, keptOf, type Reconciliation, upload } from "./support/reconciliation";

const PERIOD = () => ({
  since: new Date(Date.now() - 3_600_000).toISOString(),
  until: new Date(Date.now() + 3_600_000).toISOString(),
});

async function posted(network: TestNetwork, fields: Record<string, unknown>): Promise<string> {
  const body = makePostback(fields);
  await expectStatus(await postback(network, body), 200);
  const transactionId = String(body.transaction_id);
  await eventually(() => conversionInD1(network.id, transactionId, false));
  return transactionId;
}

function csv(rows: string[][]): string {
  return `${rows.map((row) => row.join(",")).join("\r\n")}\r\n`;
}

/** A network with six conversions, and a report in the network's own words that differs in each class. */
async function scenario() {
  const network = await createNetwork();
  const same = await posted(network, { status: "approved", amount: "10.00", currency: "USD" });
  const status = await posted(network, { status: "approved", amount: "20.00", currency: "USD" });
  const amount = await posted(network, { status: "approved", amount: "30.00", currency: "USD" });
  const currency = await posted(network, { status: "pending", amount: "40.00", currency: "USD" });
  const unreported = await posted(network, { status: "approved", amount: "50.00", currency: "EUR" });
  const final = await posted(network, { status: "declined", amount: "60.00", currency: "USD" });
  const unknown = uniqueId("tx");
  const report = csv([
    ["Order ID", "State", "Revenue", "Cur", "Day"],
    [same, "Confirmed", "10", "usd", "2026-06-01"],
    [status, "Rejected", "20.00", "USD", ""],
    [amount, "Confirmed", "31.50", "USD", ""],
    [currency, "pending", "40.00", "EUR", ""],
    [unknown, "Confirmed", "0.10", "USD", "2026-06-02"],
    [final, "Confirmed", "60.00", "USD", ""],
  ]);
  const query = {
    network_id: network.id,
    ...PERIOD(),
    transaction_id_column: "Order ID",
    status_column: "state",
    amount_column: "Revenue",
    currency_column: "Cur",
    date_column: "Day",
    approved_values: "Confirmed",
    declined_values: "Rejected, Cancelled",
  };
  const answer = await upload(query, report);
  const created = await expectStatus<Reconciliation>(answer, 202);
  expect(answer.headers.get("location")).toBe(`/v1/reconciliations/${created.id}`);
  return { network, created, tx: { same, status, amount, currency, unreported, final, unknown } };
}

describe("POST /v1/reconciliations: the diff", () => {
  it("finds exactly the report's differences, with exact totals per currency on both sides", async () => {
    const { created, tx } = await scenario();
    expect(created).toMatchObject({ state: "queued", progress: { report_rows: 6 } });
    const done = await finished(created.id);
    expect(done.state, done.error ?? "").toBe("finished");
    expect(done.progress).toMatchObject({
      phase: "done",
      report_rows: 6,
      report_rows_done: 6,
      hub_conversions_done: 6,
    });
    expect(done.differences).toEqual({
      missing_in_hub: 1,
      missing_in_report: 1,
      status: 2,
      amount: 2,
      payout: 0,
      credit: 0,
    });
    const differences = await allDifferences(created.id);
    expect(differences.map((d) => [d.class, d.transaction_id]).sort()).toEqual(
      [
        ["amount", tx.amount],
        ["amount", tx.currency],
        ["missing_in_hub", tx.unknown],
        ["missing_in_report", tx.unreported],
        ["status", tx.status],
        ["status", tx.final],
      ].sort(),
    );
    const amount = differences.find((d) => d.id === `amount:${tx.amount}`);
    expect(amount).toMatchObject({
      line: 4,
      correctable: true,
      hub: { status: "approved", amount: "30.00", currency: "USD" },
      report: { status: "approved", amount: "31.50", currency: "USD" },
      correction: null,
    });
    expect(done.totals.report).toEqual({
      conversions: 6,
      amount: [
        { currency: "EUR", amount: "40" },
        { currency: "USD", amount: "121.6" },
      ],
      payout: [],
    });
    expect(done.totals.hub).toEqual({
      conversions: 6,
      amount: [
        { currency: "EUR", amount: "50" },
        { currency: "USD", amount: "160" },
      ],
      payout: [],
    });
    const classOnly = await allDifferences(created.id, { class: "status" });
    expect(classOnly.map((d) => d.transaction_id).sort()).toEqual([tx.status, tx.final].sort());
  });
});

describe("POST /v1/reconciliations/{id}/corrections", () => {
  it("dry-runs without changing anything, then applies through each conversion's object, once", async () => {
    const prefix = `/${uniqueId("recon")}`;
    const { network, created, tx } = await scenario();
    const partner = await createPartner({
      url_template: `${PARTNER}${prefix}/pb?tx={transaction_id}&s={status}&a={amount}`,
      filters: { networks: [network.id] },
    });
    await finished(created.id);
    const ids = [
      `amount:${tx.amount}`,
      `status:${tx.status}`,
      `amount:${tx.currency}`,
      `missing_in_hub:${tx.unknown}`,
      `missing_in_report:${tx.unreported}`,
      `status:${tx.final}`,
    ];

    const untouched = await conversionInD1(network.id, tx.amount, false);
    const dry = await correct(created.id, ids, true);
    expect(dry.summary).toEqual({ applied: 5, unchanged: 0, refused: 1, already_applied: 0 });
    const refusedFinal = dry.results.find((r) => r.difference_id === `status:${tx.final}`);
    // approved can only come before declined: the lifecycle reads it as a late arrival and never moves back.
    expect(refusedFinal).toMatchObject({ outcome: "refused", verdict: "stale" });
    expect(refusedFinal?.reason).toMatch(/is declined, which comes after the corrected status/);
    expect(await conversionInD1(network.id, tx.amount, false)).toEqual(untouched);
    expect(untouched).toMatchObject({ amount: "30.00" });
    expect(await conversionInD1(network.id, tx.unknown, false)).toBeNull();
    const before = await env.DB.prepare("SELECT count(*) AS n FROM conversion_events WHERE network_id = ?")
      .bind(network.id)
      .first<{ n: number }>();

    const applied = await correct(created.id, ids, false);
    expect(applied.summary).toEqual({ applied: 5, unchanged: 0, refused: 1, already_applied: 0 });
    const amountResult = applied.results.find((r) => r.difference_id === `amount:${tx.amount}`);
    expect(amountResult).toMatchObject({ outcome: "applied", verdict: "updated" });
    expect(amountResult?.event_id).toMatch(/^evt_/);

    // Each change reached D1 through the events queue, as a correction event in the conversion's chain.
    const corrected = await eventually(async () => {
      const row = await conversionInD1(network.id, tx.amount, false);
      return row?.amount === "31.50" ? row : null;
    });
    expect(corrected).toMatchObject({ status: "approved", currency: "USD", source: "correction" });
    await eventually(async () => {
      const row = await conversionInD1(network.id, tx.status, false);
      return row?.status === "declined" ? row : null;
    });
    await eventually(async () => {
      const row = await conversionInD1(network.id, tx.unreported, false);
      return row?.status === "declined" ? row : null;
    });
    const recorded = await eventually(() => conversionInD1(network.id, tx.unknown, false));
    expect(recorded).toMatchObject({ status: "approved", amount: "0.10", currency: "USD", source: "correction" });
    const event = await env.DB.prepare("SELECT verdict, source, status FROM conversion_events WHERE event_id = ?")
      .bind(amountResult?.event_id ?? "")
      .first();
    expect(event).toEqual({ verdict: "updated", source: "correction", status: "approved" });
    const after = await env.DB.prepare("SELECT count(*) AS n FROM conversion_events WHERE network_id = ?")
      .bind(network.id)
      .first<{ n: number }>();
    expect((after?.n ?? 0) - (before?.n ?? 0)).toBe(5);

    const proof = await expectStatus<{ verified: boolean; breaks: unknown[] }>(
      await admin(`/v1/conversions/${network.id}/${tx.amount}/proof`),
      200,
    );
    expect(proof).toMatchObject({ verified: true, breaks: [] });

    // The partner hears of the real changes: the new amount, the decline, the new conversion.
    const heard = await eventually(async () => {
      const log = await partnerLog(prefix);
      const urls = log.map((request) => new URL(request.url));
      return urls.some((url) => url.searchParams.get("tx") === tx.amount && url.searchParams.get("a") === "31.50") &&
        urls.some((url) => url.searchParams.get("tx") === tx.status && url.searchParams.get("s") === "declined") &&
        urls.some((url) => url.searchParams.get("tx") === tx.unknown)
        ? urls
        : null;
    });
    expect(heard.length).toBeGreaterThanOrEqual(3);
    expect(partner.id).toMatch(/^ptn_/);

    // Kept with the differences, with the key that applied them; a second request applies nothing.
    const kept = (await allDifferences(created.id)).find((d) => d.id === `amount:${tx.amount}`);
    expect(kept?.correction).toMatchObject({
      outcome: "applied",
      verdict: "updated",
      event_id: amountResult?.event_id,
    });
    expect(kept?.correction?.key_id).toBeTruthy();
    const again = await correct(created.id, ids, false);
    expect(again.summary).toEqual({ applied: 0, unchanged: 0, refused: 1, already_applied: 5 });
    const audit = await env.DB.prepare(
      "SELECT count(*) AS n FROM audit_log WHERE action = 'applyReconciliationCorrections' AND target LIKE ?",
    )
      .bind(`%${created.id}%`)
      .first<{ n: number }>();
    expect(audit?.n).toBe(3);
  });

  it("corrects an amount back and forth: each correction is judged against the conversion as it is now", async () => {
    const network = await createNetwork();
    const tx = await posted(network, { status: "approved", amount: "10.00", currency: "USD" });
    for (const amount of ["12.00", "10.00", "12.00"]) {
      const created = await expectStatus<Reconciliation>(
        await upload(
          { network_id: network.id, ...PERIOD() },
          csv([
            ["transaction_id", "status", "amount", "currency"],
            [tx, "approved", amount, "USD"],
          ]),
        ),
        202,
      );
      expect((await finished(created.id)).differences?.amount).toBe(1);
      const answer = await correct(created.id, [`amount:${tx}`], false);
      expect(answer.results[0], `to ${amount}`).toMatchObject({ outcome: "applied", verdict: "updated" });
      await eventually(async () => ((await conversionInD1(network.id, tx, false))?.amount === amount ? true : null));
    }
  });

  it("refuses payout and credit differences, and names unknown differences", async () => {
    const network = await createNetwork();
    const partner = await createPartner({ url_template: `${PARTNER}/recon-none/pb?tx={transaction_id}` });
    // The network names the partner for its offer's campaign: the hub credits it, with the offer's payout.
    const offer = await seedOffer(network.id, {
      campaign_id: uniqueId("camp"),
      payouts: { default: [{ fixed: { amount: "4", currency: "USD" } }], partners: {} },
    });
    const fields = { status: "approved", amount: "5.00", currency: "USD", campaign_id: offer.campaign_id };
    const mine = await posted(network, { ...fields, partner_id: partner.id });
    const notMine = await posted(network, fields);
    expect(await conversionInD1(network.id, mine, false)).toMatchObject({
      attributed_partner_id: partner.id,
      payout: "4.00",
    });
    const report = csv([
      ["transaction_id", "status", "amount", "currency", "payout"],
      [mine, "approved", "5.00", "USD", "9.99"],
      [notMine, "approved", "5.00", "USD", "1.00"],
    ]);
    const created = await expectStatus<Reconciliation>(
      await upload({ network_id: network.id, partner_id: partner.id, ...PERIOD() }, report),
      202,
    );
    const done = await finished(created.id);
    expect(done.differences).toMatchObject({ payout: 1, credit: 1, missing_in_report: 0, status: 0, amount: 0 });
    expect(done.totals.report.payout).toEqual([{ currency: "USD", amount: "10.99" }]);
    const answer = await correct(created.id, [`payout:${mine}`, `credit:${notMine}`], false);
    expect(answer.results.map((r) => [r.class, r.outcome])).toEqual([
      ["payout", "refused"],
      ["credit", "refused"],
    ]);
    expect(answer.results[0]?.reason).toMatch(/offer's payout/);

    const unknown = await admin(`/v1/reconciliations/${created.id}/corrections`, {
      method: "POST",
      body: JSON.stringify({ difference_ids: [`payout:${mine}`, "status:nope"] }),
    });
    const problem = await expectStatus<{ errors: { location: string }[] }>(unknown, 422);
    expect(problem.errors).toEqual([expect.objectContaining({ location: "body.difference_ids[1]" })]);
  });
});

describe("POST /v1/reconciliations: refusals leave nothing behind", () => {
  const header = ["transaction_id", "status", "amount", "currency"];

  async function refused(
    network: TestNetwork,
    body: string,
    query: Record<string, string> = {},
    contentType = "text/csv",
  ): Promise<{ status: number; errors: { location: string; message: string }[] }> {
    const response = await upload({ network_id: network.id, ...PERIOD(), ...query }, body, contentType);
    expect(response.status, await response.clone().text()).toBeGreaterThanOrEqual(400);
    expect(response.status).toBeLessThan(500);
    expect(response.headers.get("content-type")).toMatch(/application\/problem\+json/);
    const problem = (await response.json()) as { errors: { location: string; message: string }[] };
    expect(await keptOf(network.id)).toBe(0);
    return { status: response.status, errors: problem.errors };
  }

  it("names the line and column of a bad row, after staging the rows before it", async () => {
    const network = await createNetwork();
    // Enough good rows before the bad one that some were staged in D1 before it was read.
    const rows = Array.from({ length: 4500 }, (_, i) => [`tx-${i}`, "approved", "1.00", "USD"]);
    rows.push(["tx-bad", "approved", '"1,234.00"', "USD"]);
    const { status, errors } = await refused(network, csv([header, ...rows]));
    expect(status).toBe(422);
    expect(errors).toEqual([
      { location: "body.line[4502].amount", message: expect.stringMatching(/"1,234.00" must be a plain decimal/) },
    ]);
  });

  it("finds a transaction repeated thousands of lines apart, in another staged batch", async () => {
    const network = await createNetwork();
    const rows = Array.from({ length: 4600 }, (_, i) => [`tx-${i}`, "approved", "1.00", "USD"]);
    rows.push(["tx-7", "approved", "1.00", "USD"]);
    const { errors } = await refused(network, csv([header, ...rows]));
    expect(errors).toEqual([
      {
        location: "body.line[4602].transaction_id",
        message: '"tx-7" is on line 9 too: a report names each transaction once',
      },
    ]);
  });

  it("refuses a missing column, an unknown status, a repeated transaction, a bad currency", async () => {
    const network = await createNetwork();
    const missing = await refused(
      network,
      csv([
        ["id", "status", "amount", "currency"],
        ["a", "approved", "1", "USD"],
      ]),
    );
    expect(missing.errors).toEqual([
      expect.objectContaining({ location: "query.transaction_id_column", message: expect.stringContaining('"id"') }),
    ]);
    const status = await refused(network, csv([header, ["a", "Rejected", "1", "USD"]]));
    expect(status.errors[0]).toMatchObject({
      location: "body.line[2].status",
      message: expect.stringContaining("declined_values=Rejected"),
    });
    const twice = await refused(network, csv([header, ["a", "approved", "1", "USD"], ["a", "approved", "1", "USD"]]));
    expect(twice.errors[0]).toMatchObject({
      location: "body.line[3].transaction_id",
      message: expect.stringContaining("line 2"),
    });
    // Words that are Object.prototype's names are words like any other: unknown, or mapped.
    for (const word of ["constructor", "__proto__", "toString"]) {
      const inherited = await refused(network, csv([header, ["a", word, "1", "USD"]]));
      expect(inherited.errors[0]).toMatchObject({ location: "body.line[2].status" });
    }
    for (const date of ["1", "2026-02-31", "-000001-01-01T00:00:00Z", "+275760-09-13T00:00:00Z", "1969-12-31"]) {
      const dated = await refused(
        network,
        csv([
          [...header, "date"],
          ["a", "approved", "1", "USD", date],
        ]),
      );
      expect(dated.errors[0], date).toMatchObject({ location: "body.line[2].date" });
    }
    const twoIds = await refused(
      network,
      csv([
        ["transaction_id", ...header],
        ["a", "b", "approved", "1", "USD"],
      ]),
    );
    expect(twoIds.errors[0]).toMatchObject({
      location: "query.transaction_id_column",
      message: expect.stringContaining("2 times"),
    });
    const currency = await refused(network, csv([header, ["a", "approved", "1", "XXQ"]]));
    expect(currency.errors[0]?.location).toBe("body.line[2].currency");
    const ragged = await refused(network, `${header.join(",")}\r\na,approved\r\n`);
    expect(ragged.errors[0]?.location).toBe("body.line[2]");
    const quote = await refused(network, `${header.join(",")}\r\n"a,approved,1,USD\r\n`);
    expect(quote.errors[0]?.message).toMatch(/not CSV the hub can read/);
    const empty = await refused(network, "");
    expect(empty.errors[0]).toMatchObject({ location: "body" });
    const latin1 = await upload(
      { network_id: network.id, ...PERIOD() },
      new Blob([new Uint8Array([0x61, 0xe9, 0x0a])]).stream(),
    );
    expect(latin1.status).toBe(422);
    expect(await keptOf(network.id)).toBe(0);
  });

  it("refuses what is not a request for a reconciliation", async () => {
    const network = await createNetwork();
    const good = csv([header, ["a", "approved", "1", "USD"]]);
    expect((await refused(network, good, {}, "application/json")).status).toBe(415);
    const unknownNetwork = await upload({ network_id: "no-such-network", ...PERIOD() }, good);
    const problem = await expectStatus<{ errors: { location: string }[] }>(unknownNetwork, 422);
    expect(problem.errors).toEqual([expect.objectContaining({ location: "query.network_id" })]);
    for (const [since, until, location] of [
      ["1", "2", "query.since"],
      ["2026-02-31T00:00:00Z", "2026-04-01T00:00:00Z", "query.since"],
      ["2026-01-01T00:00:00Z", "+010000-01-01T00:00:00Z", "query.until"],
    ] as const) {
      const odd = await refused(network, good, { since, until });
      expect(odd.errors[0]?.location, `${since} to ${until}`).toBe(location);
    }
    const backwards = await refused(network, good, { since: "2026-06-02T00:00:00Z", until: "2026-06-01T00:00:00Z" });
    expect(backwards.errors).toEqual([expect.objectContaining({ location: "query.until" })]);
    const twiceMapped = await refused(network, good, { approved_values: "ok", declined_values: "OK" });
    expect(twiceMapped.errors[0]?.location).toBe("query.declined_values");
    expect((await refused(network, good, { delimiter: ":" })).errors[0]?.location).toBe("query.delimiter");
    expect((await admin("/v1/reconciliations/rec_nope")).status).toBe(404);
  });

  it("maps a status word that is also a name of Object.prototype", async () => {
    const network = await createNetwork();
    const tx = await posted(network, { status: "approved", amount: "1.00", currency: "USD" });
    const created = await expectStatus<Reconciliation>(
      await upload(
        { network_id: network.id, ...PERIOD(), approved_values: "constructor,__proto__" },
        csv([header, [tx, "constructor", "1", "USD"]]),
      ),
      202,
    );
    const done = await finished(created.id);
    expect(done.differences).toEqual({
      missing_in_hub: 0,
      missing_in_report: 0,
      status: 0,
      amount: 0,
      payout: 0,
      credit: 0,
    });
  });

  it("reads a semicolon report with a byte order mark", async () => {
    const network = await createNetwork();
    const tx = await posted(network, { status: "approved", amount: "7.50", currency: "EUR" });
    const body = `\ufeff${["transaction_id;status;amount;currency", `${tx};approved;7.5;EUR`].join("\n")}\n`;
    const created = await expectStatus<Reconciliation>(
      await upload({ network_id: network.id, ...PERIOD(), delimiter: "semicolon" }, body),
      202,
    );
    const done = await finished(created.id);
    expect(done.differences).toEqual({
      missing_in_hub: 0,
      missing_in_report: 0,
      status: 0,
      amount: 0,
      payout: 0,
      credit: 0,
    });
  });
});
