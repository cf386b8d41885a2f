/**
 * Reconciliation in the console: upload a report as the operator's browser would (a multipart form
 * with its CSRF token), read the diff, tick differences, dry-run, apply; a read-only key reads but
 * cannot upload or apply, and a form without its token changes nothing.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { type ConsoleSession, consoleFetch, createApiKey, csrfOf, page, post, signIn, textOf } from "./support/console";
import {
  BASE,
  conversionInD1,
  createNetwork,
  eventually,
  expectStatus,
  makePostback,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { finished } from "./support/reconciliation";

async function posted(network: TestNetwork, fields: Record<string, unknown>): Promise<string> {
  const body = makePostback(fields);
  await expectStatus(await postback(network, body), 200);
  const transactionId = String(body.transaction_id);
  await eventually(() => conversionInD1(network.id, transactionId, false));
  return transactionId;
}

/** The upload form as a browser sends it: multipart, the file as a file. */
async function upload(session: ConsoleSession, fields: Record<string, string>, csv: string, csrf?: string) {
  const form = new FormData();
  form.set("csrf", csrf ?? (await csrfOf(session)));
  for (const [name, value] of Object.entries(fields)) form.set(name, value);
  form.set("report", new File([csv], "november.csv", { type: "text/csv" }));
  return exports.default.fetch(
    new Request(`${BASE}/console/reports/reconciliations`, {
      method: "POST",
      headers: { cookie: session.cookie },
      body: form,
      redirect: "manual",
    }),
  );
}

const today = () => new Date().toISOString().slice(0, 10);
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);

describe("console reconciliation", () => {
  it("uploads a report, shows the diff, and applies the ticked corrections after a dry run", async () => {
    const network = await createNetwork();
    const amountTx = await posted(network, { status: "approved", amount: "30.00", currency: "USD" });
    const statusTx = await posted(network, { status: "approved", amount: "20.00", currency: "USD" });
    const session = await signIn();

    const reports = await page(session, "/console/reports");
    expect(reports).toContain('href="/console/reports/reconciliations"');
    const csv = `Order,State,Revenue,Cur\n${amountTx},ok,31.00,USD\n${statusTx},no,20.00,USD\n`;
    const answer = await upload(
      session,
      {
        network_id: network.id,
        since: today(),
        until: tomorrow(),
        transaction_id_column: "Order",
        status_column: "State",
        amount_column: "Revenue",
        currency_column: "Cur",
        approved_values: "ok",
        declined_values: "no",
        delimiter: "comma",
      },
      csv,
    );
    const uploaded = await answer.text();
    expect(answer.status, uploaded.slice(0, 2000)).toBe(200);
    expect(uploaded).toContain("2 rows read and checked");
    const id = /\/console\/reports\/reconciliations\/(rec_[a-z0-9]+)/.exec(uploaded)?.[1] ?? "";
    expect(id).toMatch(/^rec_/);
    await finished(id);

    const detail = await page(session, `/console/reports/reconciliations/${id}`);
    expect(textOf(detail, "totals")).toContain("51 USD");
    const table = textOf(detail, "differences");
    expect(table).toContain(amountTx);
    expect(table).toContain(statusTx);
    expect(detail).toContain(`value="amount:${amountTx}"`);
    expect(detail).toContain(`value="status:${statusTx}"`);

    const dry = await post(session, `/console/reports/reconciliations/${id}/corrections`, {
      difference_ids: [`amount:${amountTx}`, `status:${statusTx}`],
      confirm: "no",
    });
    const dryHtml = await dry.text();
    expect(dry.status, dryHtml.slice(0, 2000)).toBe(200);
    expect(dryHtml).toContain("Nothing was recorded");
    expect(textOf(dryHtml, "outcomes")).toContain("applied");
    expect(await conversionInD1(network.id, amountTx, false)).toMatchObject({ amount: "30.00" });

    const applied = await post(session, `/console/reports/reconciliations/${id}/corrections`, {
      difference_ids: [`amount:${amountTx}`, `status:${statusTx}`],
      confirm: "yes",
    });
    expect(applied.status).toBe(200);
    expect(await applied.text()).toContain("Corrections applied");
    await eventually(async () => {
      const row = await conversionInD1(network.id, statusTx, false);
      return row?.status === "declined" ? row : null;
    });
    // Applied ones are no longer offered for ticking.
    const after = await page(session, `/console/reports/reconciliations/${id}`);
    expect(after).not.toContain(`value="amount:${amountTx}"`);
    expect(textOf(after, "differences")).toContain("applied");
  });

  it("refuses a form without its CSRF token and a read-only key's upload, and names a bad row", async () => {
    const network = await createNetwork();
    const session = await signIn();
    const fields = { network_id: network.id, since: today(), until: tomorrow() };
    const good = "transaction_id,status,amount,currency\na,approved,1.00,USD\n";
    const forged = await upload(session, fields, good, "not-the-token");
    expect(forged.status).toBe(403);
    const list = await page(session, "/console/reports/reconciliations");
    expect(textOf(list, "reconciliations")).not.toContain(network.id);

    const bad = await upload(session, fields, "transaction_id,status,amount,currency\na,approved,1;5,USD\n");
    expect(bad.status).toBe(422);
    expect(await bad.text()).toContain("body.line[2].amount");

    const readOnly = await signIn((await createApiKey("read-only")).key);
    expect(await page(readOnly, "/console/reports/reconciliations")).not.toContain('name="report"');
    const refused = await upload(readOnly, fields, good);
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain("createReconciliation");
    const notFound = await consoleFetch(session, `/console/reports/reconciliations/${uniqueId("rec")}`);
    expect(notFound.status).toBe(404);
  });
});
