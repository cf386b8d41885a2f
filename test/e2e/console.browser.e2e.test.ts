/**
 * The operator console in a real browser (Debian's Chromium through playwright-core) against the
 * real `wrangler dev`: an operator signs in with an API key, sees a conversion posted a moment
 * earlier appear on the overview by itself and in search, opens its detail (history, hash chain,
 * deliveries), replays the delivery its partner refused and sees the new attempt; then a partner
 * signs in with its own key and sees only its own deliveries, and is refused the pages outside its
 * scope. No request leaves the hub's origin and no CSP rule is broken. Screenshots go to reports/:
 * look at them after a change to a page.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type Browser,
  DESKTOP,
  horizontalOverflow,
  launchBrowser,
  type PageWatch,
  PHONE,
  REPORTS,
  watchPage,
  widestElement,
} from "./browser";
import { type PartnerServer, startPartnerServer } from "./partner-server";
import { type SharedHub, sharedHub } from "./shared-hub";
import { adminRequest, eventually, expectStatus, makePostback, signedPostback } from "./support";

interface Delivery {
  id: string;
  partner_id: string;
  transaction_id: string;
  state: string;
  attempts: number;
}

let hub: SharedHub;
let browser: Browser;
/** Refuses every request (a 400: not retried, so its delivery fails at once) until `accepting`. */
let refusing: PartnerServer;
let accepting = false;
let healthy: PartnerServer;
let networkId: string;
let networkSecret: string;
let refusingId: string;
let healthyId: string;
let operatorKey: string;
let partnerKey: string;
const watches: { name: string; watch: PageWatch }[] = [];

beforeAll(async () => {
  browser = await launchBrowser();
  refusing = await startPartnerServer(() =>
    accepting ? { status: 200, body: "ok" } : { status: 400, body: "unknown offer" },
  );
  healthy = await startPartnerServer(() => ({ status: 200, body: "ok" }));
  hub = sharedHub();
  networkId = `e2e-console-${randomUUID().slice(0, 8)}`;
  networkSecret = (
    await expectStatus<{ secret: string }>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: networkId, name: "E2E console" }) }),
      201,
    )
  ).secret;
  refusingId = await createPartner("E2E refusing partner", refusing);
  healthyId = await createPartner("E2E healthy partner", healthy);
  operatorKey = await createKey({ name: "E2E operator", scope: "operator" });
  partnerKey = await createKey({ name: "E2E refusing partner's key", scope: "partner", subject_id: refusingId });
});

afterAll(async () => {
  await browser?.close();
  await refusing?.close();
  await healthy?.close();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function createPartner(name: string, server: PartnerServer): Promise<string> {
  const created = await expectStatus<{ id: string }>(
    await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({
        name,
        url_template: `${server.origin}/pb?tx={transaction_id}&status={status}`,
        filters: { networks: [networkId] },
        retry_schedule_seconds: [1],
      }),
    }),
    201,
  );
  return created.id;
}

async function createKey(body: Record<string, unknown>): Promise<string> {
  return (
    await expectStatus<{ key: string }>(await admin("/v1/keys", { method: "POST", body: JSON.stringify(body) }), 201)
  ).key;
}

async function post(transactionId: string): Promise<void> {
  await expectStatus(
    await signedPostback(hub, networkId, networkSecret, makePostback({ transaction_id: transactionId })),
    200,
  );
}

async function deliveriesOf(partnerId: string): Promise<Delivery[]> {
  return (
    await expectStatus<{ data: Delivery[] }>(await admin(`/v1/deliveries?partner_id=${partnerId}&limit=200`), 200)
  ).data;
}

async function openPage(name: string, viewport = DESKTOP): Promise<Page> {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  watches.push({ name, watch: await watchPage(page) });
  return page;
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(REPORTS, `console-${name}.png`), fullPage: true });
}

async function signIn(page: Page, key: string): Promise<void> {
  // One browser profile for every test: start each without the session of the one before.
  await browser.context.clearCookies();
  await page.goto(`${hub.baseUrl}/console`);
  // Without a session, the console asks for a key.
  await page.locator("#key").waitFor();
  expect(new URL(page.url()).pathname).toBe("/console/login");
  await page.locator("#key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  // Where the key's scope starts: the overview, or a partner's own deliveries.
  await page.waitForURL((url) => url.pathname.startsWith("/console") && url.pathname !== "/console/login");
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

async function signOut(page: Page): Promise<void> {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.locator("#key").waitFor();
}

async function expectNoOverflow(page: Page, what: string): Promise<void> {
  const overflow = await horizontalOverflow(page);
  expect(
    overflow,
    `${what} overflows the phone's width by ${overflow} px: ${await widestElement(page)}`,
  ).toBeLessThanOrEqual(0);
}

describe("the console in Chromium", () => {
  const tx = `ord-console-${randomUUID().slice(0, 8)}`;

  it("shows an operator a conversion posted a moment ago: on the overview by itself, in search, in detail", async () => {
    const page = await openPage("operator");
    // The overview's script refreshes it on a timer of the page's clock; the test moves that clock on
    // (page.clock), one refresh period at a time, rather than wait out each period.
    await page.clock.install();
    await signIn(page, operatorKey);
    await page.getByRole("heading", { name: "Overview", level: 1 }).waitFor();
    const refreshSeconds = Number(await page.locator("[data-refresh]").first().getAttribute("data-refresh-seconds"));
    expect(refreshSeconds, "the overview's refresh period").toBeGreaterThan(0);
    // Posted after the page loaded: the overview refreshes by itself, with no reload from the test.
    await post(tx);
    const recent = page.locator("#recent-conversions", { hasText: tx });
    const deadline = Date.now() + 90_000;
    while (!(await recent.isVisible())) {
      if (Date.now() > deadline) throw new Error(`${tx} never showed on the overview within 90 s`);
      await page.clock.runFor(refreshSeconds * 1_000);
      await recent.waitFor({ timeout: 1_000 }).catch(() => undefined);
    }
    expect(await page.locator('svg[role="img"]').count()).toBeGreaterThan(0);
    await screenshot(page, "overview");

    await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Conversions" }).click();
    await page.locator('input[name="transaction_id"]').fill(tx);
    await page.locator('input[name="transaction_id"]').press("Enter");
    const row = page.locator("#conversions tr", { hasText: tx });
    await row.waitFor();
    await screenshot(page, "conversions");
    await row.getByRole("link").first().click();
    await page.getByRole("heading", { level: 1, name: new RegExp(tx) }).waitFor();
    await expect.poll(() => page.locator("#chain").textContent()).toMatch(/verified/i);
    await screenshot(page, "conversion-detail");
  });

  it("replays the delivery a partner refused, and shows the new attempt", async () => {
    const failed = await eventually(
      async () => (await deliveriesOf(refusingId)).find((d) => d.transaction_id === tx && d.state === "failed"),
      "the refusing partner's delivery, failed",
    );
    expect(failed.attempts).toBe(1);
    accepting = true;
    const page = await openPage("replay");
    await signIn(page, operatorKey);
    await page.goto(`${hub.baseUrl}/console/deliveries/${failed.id}`);
    expect(await page.locator("#attempts tbody tr").count()).toBe(1);
    await page.getByRole("button", { name: "Replay" }).click();
    // The new attempt arrives through the queue and the partner's coordinator: reload until it shows.
    await expect
      .poll(
        async () => {
          await page.goto(`${hub.baseUrl}/console/deliveries/${failed.id}`);
          return page.locator("#attempts tbody tr").count();
        },
        { timeout: 60_000, interval: 1_000 },
      )
      .toBe(2);
    await expect.poll(() => page.locator("#attempts").textContent()).toContain("200");
    await screenshot(page, "delivery-replayed");
    const replayed = (await deliveriesOf(refusingId)).find((d) => d.id === failed.id);
    expect(replayed).toMatchObject({ state: "delivered", attempts: 2 });
    // The console's replay is in the audit log, with the key that made it.
    const audit = await expectStatus<{ data: { action: string; key_name: string; via: string; target: object }[] }>(
      await admin("/v1/audit?action=replayDelivery"),
      200,
    );
    expect(audit.data).toContainEqual(
      expect.objectContaining({ action: "replayDelivery", key_name: "E2E operator", via: "console" }),
    );
    await signOut(page);
  });

  it("shows a partner only its own deliveries, and refuses it the pages outside its scope", async () => {
    const ownDeliveries = await deliveriesOf(refusingId);
    const othersDelivery = await eventually(
      async () => (await deliveriesOf(healthyId)).find((d) => d.transaction_id === tx),
      "the healthy partner's delivery",
    );
    const page = await openPage("partner");
    await signIn(page, partnerKey);
    await page.goto(`${hub.baseUrl}/console/deliveries`);
    const table = page.locator("#deliveries");
    await table.waitFor();
    const text = (await table.textContent()) ?? "";
    for (const delivery of ownDeliveries) expect(text).toContain(delivery.id);
    expect(text).not.toContain(othersDelivery.id);
    expect(text).not.toContain(healthyId);
    await screenshot(page, "partner-deliveries");

    for (const route of [`/console/deliveries/${othersDelivery.id}`, "/console/conversions", "/console/networks"]) {
      const response = await page.goto(`${hub.baseUrl}${route}`);
      expect(response?.status(), route).toBe(403);
      await page.getByRole("heading", { name: "Not allowed", level: 1 }).waitFor();
    }
    await screenshot(page, "partner-refused");
    await signOut(page);
  });

  let reconciliationId = "";

  it("reconciles an advertiser's report: upload, read the diff, tick, dry run, apply", async () => {
    const page = await openPage("reconciliation");
    await signIn(page, operatorKey);
    // The conversion of the first test, which the advertiser reports at another amount.
    await page.goto(`${hub.baseUrl}/console/reports`);
    await page.getByRole("link", { name: "Reconcile their report" }).click();
    await page.locator('select[name="network_id"]').selectOption(networkId);
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    await page.locator('input[name="since"]').fill(day(Date.now() - 86_400_000));
    await page.locator('input[name="until"]').fill(day(Date.now() + 86_400_000));
    await page.locator('input[name="report"]').setInputFiles({
      name: "november.csv",
      mimeType: "text/csv",
      buffer: Buffer.from(`transaction_id,status,amount,currency\n${tx},approved,31.99,USD\n`),
    });
    await screenshot(page, "reconciliation-upload");
    await page.getByRole("button", { name: "Upload and reconcile" }).click();
    await page.getByText("rows read and checked").waitFor();
    await page.getByRole("link", { name: "See the diff" }).click();
    reconciliationId = new URL(page.url()).pathname.split("/").pop() ?? "";
    // The diff runs in the background: the page says so until it is done.
    await eventually(
      async () => {
        await page.reload();
        return (await page.locator("#differences").count()) > 0 ? true : null;
      },
      "the diff shown",
      { timeoutMs: 30_000, context: () => hub.log() },
    );
    await page.getByRole("checkbox", { name: `Settle amount of ${tx}` }).check();
    await screenshot(page, "reconciliation-diff");
    await page.getByRole("button", { name: "Dry run the ticked" }).click();
    await page.getByText("Nothing was recorded").waitFor();
    await page.getByRole("button", { name: "Apply these" }).click();
    await page.getByRole("heading", { name: "Corrections applied" }).waitFor();
    await screenshot(page, "reconciliation-applied");
    const conversion = await eventually(
      async () => {
        const body = await expectStatus<{ amount: string }>(await admin(`/v1/conversions/${networkId}/${tx}`), 200);
        return body.amount === "31.99" ? body : null;
      },
      "the corrected amount in D1",
      { context: () => hub.log() },
    );
    expect(conversion.amount).toBe("31.99");
    await signOut(page);
  });

  it("fits a phone's width on every page an operator opens", async () => {
    const page = await openPage("phone", PHONE);
    await signIn(page, operatorKey);
    const delivery = (await deliveriesOf(refusingId))[0];
    for (const route of [
      "/console",
      "/console/conversions",
      `/console/conversions/${networkId}/${tx}`,
      "/console/deliveries",
      ...(delivery ? [`/console/deliveries/${delivery.id}`] : []),
      "/console/networks",
      `/console/networks/${networkId}`,
      "/console/partners",
      `/console/partners/${refusingId}`,
      `/console/inbound?network_id=${networkId}`,
      `/console/reports?network_id=${networkId}&group_by=partner`,
      "/console/reports/reconciliations",
      ...(reconciliationId ? [`/console/reports/reconciliations/${reconciliationId}`] : []),
    ]) {
      const response = await page.goto(`${hub.baseUrl}${route}`);
      expect(response?.status(), route).toBe(200);
      await expectNoOverflow(page, route);
    }
    await screenshot(page, "reports-phone");
    await page.goto(`${hub.baseUrl}/console`);
    await screenshot(page, "overview-phone");
  });

  it("asked nothing of another host and broke no CSP rule on any page", () => {
    const origin = new URL(hub.baseUrl).origin;
    for (const { name, watch } of watches) {
      expect(
        watch.requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith("data:")),
        name,
      ).toEqual([]);
      expect(watch.errors, name).toEqual([]);
    }
    expect(watches.length).toBeGreaterThan(0);
  });
});
