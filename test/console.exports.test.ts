/**
 * The console's downloads (docs/console.md): Conversions and Deliveries link to a CSV and an NDJSON
 * export of exactly what the page's filters select, and that file is the API's export of the same
 * filter, byte for byte; a network key's file holds its own network without payouts, a partner key's
 * its own partner; a filter the form would never send is a 422 page.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { withKey } from "./support/access";
import { type ConsoleSession, consoleFetch, createApiKey, page, signIn } from "./support/console";
import { parseCsv, parseNdjson, seedConversions, seedDeliveries, updateConversion } from "./support/exports";
import {
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";

const FILE_NAME = (name: string, ext: string) => new RegExp(`^attachment; filename="${name}-\\d{8}T\\d{6}Z\\.${ext}"$`);

let mine: TestNetwork;
let theirs: TestNetwork;
let attributed: string;
let posted: string;
let partner: string;
let otherPartner: string;

beforeAll(async () => {
  mine = await createNetwork();
  theirs = await createNetwork();
  // More rows than the first export pages hold (250, then 500): the files are read page by page.
  const seeded = await seedConversions(mine.id, 620, Date.parse("2026-03-01T00:00:00Z"));
  await seedConversions(mine.id, 24, Date.parse("2026-03-05T08:00:00Z"));
  await seedConversions(theirs.id, 30, Date.parse("2026-03-05T08:00:00Z"));
  attributed = seeded[12]?.transaction_id ?? "";
  await updateConversion(mine.id, attributed, {
    attribution: "direct",
    attribution_detail: "the network named the partner",
    attributed_partner_id: "prt-console",
    payout: "4.10",
    payout_currency: "EUR",
    revenue: "9.90",
    revenue_currency: "EUR",
  });
  // One through the real intake too, with a cell a spreadsheet would run.
  posted = `=HYPERLINK("https://evil.test"),${uniqueId("tx")}`;
  await expectStatus(await postback(mine, makePostback({ transaction_id: posted })), 200);
  await eventually(() => conversionInD1(mine.id, posted));

  partner = (
    await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("dl")}`, filters: { networks: ["nowhere"] } })
  ).id;
  otherPartner = (
    await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("dl")}`, filters: { networks: ["nowhere"] } })
  ).id;
  await seedDeliveries(partner, 300, Date.parse("2026-03-02T00:00:00Z"));
  await seedDeliveries(otherPartner, 12, Date.parse("2026-03-02T00:00:00Z"));
});

/** The download's answer, its headers checked, and its body. */
async function download(session: ConsoleSession, path: string, name: string, ext: "csv" | "ndjson") {
  const response = await consoleFetch(session, path);
  const body = await response.text();
  expect(response.status, `GET ${path}: ${body.slice(0, 500)}`).toBe(200);
  expect(response.headers.get("content-type")).toBe(
    ext === "csv" ? "text/csv; charset=utf-8; header=present" : "application/x-ndjson",
  );
  expect(response.headers.get("content-disposition")).toMatch(FILE_NAME(name, ext));
  expect(response.headers.get("cache-control")).toBe("no-store");
  expect(response.headers.get("x-content-type-options")).toBe("nosniff");
  return body;
}

async function apiText(path: string, fetcher: (path: string) => Promise<Response> = admin): Promise<string> {
  const response = await fetcher(path);
  const body = await response.text();
  expect(response.status, `GET ${path}: ${body.slice(0, 500)}`).toBe(200);
  return body;
}

/** The href of the link with this id, as the browser reads it (entities decoded). */
function hrefOf(html: string, id: string): string {
  const tag = new RegExp(`<a[^>]*id="${id}"[^>]*>`).exec(html)?.[0] ?? "";
  const href = /href="([^"]*)"/.exec(tag)?.[1];
  expect(href, `a link #${id} in the page`).toBeDefined();
  return (href ?? "").replaceAll("&amp;", "&");
}

describe("an admin session's downloads", () => {
  let session: ConsoleSession;
  beforeAll(async () => {
    session = await signIn();
  });

  it("links Conversions to a CSV and an NDJSON of the current search, equal to the API's export", async () => {
    const search = `network_id=${mine.id}&status=approved&from=2026-03-05&to=2026-03-05`;
    const html = await page(session, `/console/conversions?${search}`);
    const csvHref = hrefOf(html, "download-csv");
    const ndjsonHref = hrefOf(html, "download-ndjson");
    const linked = new URL(csvHref, "http://x");
    expect(linked.pathname).toBe("/console/conversions/export");
    expect(Object.fromEntries(linked.searchParams)).toEqual({
      network_id: mine.id,
      status: "approved",
      from: "2026-03-05",
      to: "2026-03-05",
      format: "csv",
    });
    expect(new URL(ndjsonHref, "http://x").searchParams.get("format")).toBe("ndjson");

    const api = `/v1/conversions?network_id=${mine.id}&status=approved&since=2026-03-05T00:00:00.000Z&until=2026-03-06T00:00:00.000Z`;
    const csv = await download(session, csvHref, "conversions", "csv");
    expect(csv).toBe(await apiText(`${api}&format=csv`));
    const { rows } = parseCsv(csv);
    expect(rows).toHaveLength(6);
    expect(rows.every((row) => row.network_id === mine.id && row.status === "approved")).toBe(true);
    const ndjson = await download(session, ndjsonHref, "conversions", "ndjson");
    expect(ndjson).toBe(await apiText(`${api}&format=ndjson`));
    expect(parseNdjson(ndjson)).toHaveLength(6);
  });

  it("downloads every matching conversion, not only the page's 50, over several D1 pages, payouts included", async () => {
    const csv = await download(
      session,
      `/console/conversions/export?network_id=${mine.id}&format=csv`,
      "conversions",
      "csv",
    );
    expect(csv).toBe(await apiText(`/v1/conversions?network_id=${mine.id}&format=csv`));
    const { header, rows } = parseCsv(csv);
    expect(header).toContain("payout");
    expect(rows).toHaveLength(620 + 24 + 1);
    expect(rows.find((row) => row.transaction_id === attributed)).toMatchObject({ payout: "4.10", revenue: "9.90" });
    // The formula guard of the API's export holds in the console's file too.
    expect(csv).toContain(`'=HYPERLINK(`);
    expect(rows.find((row) => row.transaction_id === posted)).toBeDefined();
    const ndjson = await download(
      session,
      `/console/conversions/export?network_id=${mine.id}&format=ndjson`,
      "conversions",
      "ndjson",
    );
    expect(ndjson).toBe(await apiText(`/v1/conversions?network_id=${mine.id}&format=ndjson`));
  });

  it("links Deliveries to the current filter's deliveries, every one of them, equal to the API's export", async () => {
    const html = await page(session, `/console/deliveries?partner_id=${partner}&state=failed`);
    const csvHref = hrefOf(html, "download-csv");
    expect(Object.fromEntries(new URL(csvHref, "http://x").searchParams)).toEqual({
      partner_id: partner,
      state: "failed",
      format: "csv",
    });
    const csv = await download(session, csvHref, "deliveries", "csv");
    expect(csv).toBe(await apiText(`/v1/deliveries?partner_id=${partner}&state=failed&format=csv`));
    expect(parseCsv(csv).rows).toHaveLength(75);
    const ndjson = await download(session, hrefOf(html, "download-ndjson"), "deliveries", "ndjson");
    expect(ndjson).toBe(await apiText(`/v1/deliveries?partner_id=${partner}&state=failed&format=ndjson`));

    const all = await download(
      session,
      `/console/deliveries/export?partner_id=${partner}&format=csv`,
      "deliveries",
      "csv",
    );
    expect(all).toBe(await apiText(`/v1/deliveries?partner_id=${partner}&format=csv`));
    expect(parseCsv(all).rows).toHaveLength(300);
  });

  it("answers a 422 page for a filter the form would never send", async () => {
    for (const path of [
      `/console/conversions/export?status=bogus&format=csv`,
      `/console/conversions/export?from=2026-02-31&format=csv`,
      `/console/conversions/export?to=yesterday&format=ndjson`,
      `/console/conversions/export?format=xlsx`,
      `/console/conversions/export`,
      `/console/deliveries/export?state=bogus&format=csv`,
      `/console/deliveries/export?format=json`,
    ]) {
      const response = await consoleFetch(session, path);
      const html = await response.text();
      expect(response.status, path).toBe(422);
      expect(response.headers.get("content-type"), path).toContain("text/html");
      expect(response.headers.get("content-disposition"), path).toBeNull();
      expect(html, path).toContain("validation_failed");
    }
  });
});

describe("a network key's downloads", () => {
  let session: ConsoleSession;
  let key: string;
  beforeAll(async () => {
    key = (await createApiKey("network", mine.id)).key;
    session = await signIn(key);
  });

  it("hold it to its own network, whatever the URL names, and leave the payouts out, as the API does", async () => {
    const html = await page(session, "/console/conversions?status=approved");
    const linked = new URL(hrefOf(html, "download-csv"), "http://x");
    expect(Object.fromEntries(linked.searchParams)).toEqual({ status: "approved", format: "csv" });

    const csv = await download(
      session,
      `/console/conversions/export?network_id=${theirs.id}&format=csv`,
      "conversions",
      "csv",
    );
    const own = (path: string) => withKey(key, path);
    expect(csv).toBe(await apiText(`/v1/conversions?network_id=${mine.id}&format=csv`, own));
    const { rows } = parseCsv(csv);
    expect(rows).toHaveLength(620 + 24 + 1);
    expect(rows.every((row) => row.network_id === mine.id)).toBe(true);
    expect(rows.find((row) => row.transaction_id === attributed)).toMatchObject({
      attributed_partner_id: "prt-console",
      payout: "",
      payout_currency: "",
      revenue: "9.90",
    });
    expect(rows.every((row) => row.payout === "" && row.payout_currency === "")).toBe(true);

    const ndjson = await download(session, "/console/conversions/export?format=ndjson", "conversions", "ndjson");
    const items = parseNdjson(ndjson) as { network_id: string; attribution: { payout: unknown } | null }[];
    expect(items).toHaveLength(620 + 24 + 1);
    expect(items.every((item) => item.network_id === mine.id)).toBe(true);
    expect(items.filter((item) => (item.attribution?.payout ?? null) !== null)).toEqual([]);
    expect(ndjson).toBe(await apiText(`/v1/conversions?network_id=${mine.id}&format=ndjson`, own));
  });
});

describe("a partner key's downloads", () => {
  let session: ConsoleSession;
  let key: string;
  beforeAll(async () => {
    key = (await createApiKey("partner", partner)).key;
    session = await signIn(key);
  });

  it("hold it to its own partner's deliveries, and keep it from conversions as the page does", async () => {
    const html = await page(session, "/console/deliveries?state=dead");
    expect(Object.fromEntries(new URL(hrefOf(html, "download-csv"), "http://x").searchParams)).toEqual({
      state: "dead",
      format: "csv",
    });
    const csv = await download(
      session,
      `/console/deliveries/export?partner_id=${otherPartner}&format=csv`,
      "deliveries",
      "csv",
    );
    expect(csv).toBe(await apiText(`/v1/deliveries?partner_id=${partner}&format=csv`, (path) => withKey(key, path)));
    const { rows } = parseCsv(csv);
    expect(rows).toHaveLength(300);
    expect(rows.every((row) => row.partner_id === partner)).toBe(true);

    await page(session, "/console/conversions", 403);
    await page(session, "/console/conversions/export?format=csv", 403);
  });
});
