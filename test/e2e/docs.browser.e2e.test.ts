/// <reference lib="dom" />
// The functions passed to page.evaluate run in the page, with its DOM.
/**
 * /docs in a real browser: Debian's Chromium (installed by scripts/ensure-chromium.mjs when missing),
 * driven by playwright-core, against the real `wrangler dev`, whose static assets serve Scalar's
 * bundle. The operations render, the page asks nothing of another host and breaks no rule of its
 * Content-Security-Policy, the admin token stays in memory, and nothing overflows at 420 px.
 * Screenshots go to reports/ (git-ignored): look at them after a change to the page.
 */
import { createHash } from "node:crypto";
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
import { type SharedHub, sharedHub } from "./shared-hub";

interface OpenApiDocument {
  tags: { name: string }[];
  paths: Record<string, Record<string, { summary?: string }>>;
}

let hub: SharedHub;
let browser: Browser;
let doc: OpenApiDocument;

beforeAll(async () => {
  browser = await launchBrowser();
  hub = sharedHub();
  doc = (await (await fetch(`${hub.baseUrl}/openapi.json`)).json()) as OpenApiDocument;
});

afterAll(async () => {
  await browser?.close();
});

/** Opens /docs, recording requests, page errors and CSP violations (as the page reports them). */
async function openDocs(viewport: { width: number; height: number }, hash = ""): Promise<{ page: Page } & PageWatch> {
  const page = await browser.context.newPage();
  await page.setViewportSize(viewport);
  // The bundle probes for eval with Function("") inside a try; refusing it is the point of the policy.
  const watch = await watchPage(page, (directive, blocked) => directive === "script-src" && blocked === "eval");
  await page.goto(`${hub.baseUrl}/docs${hash}`);
  await page.getByRole("heading", { name: "Postback Hub", level: 1 }).waitFor();
  return { page, ...watch };
}

function summaries(): string[] {
  return Object.values(doc.paths).flatMap((item) => Object.values(item).flatMap((op) => op.summary ?? []));
}

/**
 * Scalar renders sections as they come into view (the page's height shrinks again further on, as if
 * it dropped the ones behind): scrolls to the
 * end of the page a viewport at a time, so that every part of it is in view once, checking at each
 * step that nothing overflows, until every operation's summary is in the page. Answers the
 * summaries still missing, and the widest overflow seen. One round trip to the page per step: the
 * page is 80,000 to 185,000 px tall and the steps are most of the test's time.
 */
async function scrollThrough(page: Page, onStep?: (step: number) => Promise<void>) {
  let missing = summaries();
  let overflow = await horizontalOverflow(page);
  let culprit = "";
  let atEnd = false;
  for (let step = 0; step < 400 && (missing.length > 0 || !atEnd); step += 1) {
    const seen = await page.evaluate(async (wanted) => {
      window.scrollBy(0, window.innerHeight);
      // Time for the sections that came into view to render.
      await new Promise((resolve) => setTimeout(resolve, 150));
      const text = wanted.length > 0 ? (document.body.textContent ?? "") : "";
      return {
        atEnd: window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1,
        // As horizontalOverflow measures it.
        overflow: Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth,
        missing: wanted.filter((summary) => !text.includes(summary)),
      };
    }, missing);
    atEnd = seen.atEnd;
    missing = seen.missing;
    if (seen.overflow > overflow && seen.overflow > 0) culprit = await widestElement(page);
    overflow = Math.max(overflow, seen.overflow);
    await onStep?.(step);
  }
  return { missing, overflow, culprit };
}

describe("/docs in Chromium", () => {
  it("gets Scalar's bundle from the Worker's static assets", async () => {
    const response = await fetch(`${hub.baseUrl}/assets/scalar/standalone.js`);
    const text = await response.text();
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toMatch(/^(text|application)\/javascript/);
    // public/_headers.
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("cross-origin-resource-policy")).toBe("same-origin");
    expect(text).toContain("createApiReference");
  });

  it("renders every tag and operation, asking nothing of another host and breaking no CSP rule", async () => {
    const { page, requests, errors } = await openDocs(DESKTOP);
    await page.screenshot({ path: path.join(REPORTS, "docs-desktop.png") });
    const intro = await page.evaluate(() => document.body.textContent ?? "");
    // The sidebar names every tag, and the introduction holds the error codes of src/errors.ts.
    for (const { name } of doc.tags) expect(intro).toContain(name);
    await page.getByText("conversion_conflict", { exact: true }).first().scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(REPORTS, "docs-desktop-errors.png") });
    const { missing } = await scrollThrough(page, async (step) => {
      if (step === 12) await page.screenshot({ path: path.join(REPORTS, "docs-desktop-operation.png") });
    });
    expect(missing, "operations that never rendered").toEqual([]);

    const origin = new URL(hub.baseUrl).origin;
    expect(requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith("data:"))).toEqual([]);
    expect(requests).toEqual(
      expect.arrayContaining([`${origin}/assets/scalar/standalone.js`, `${origin}/openapi.json`]),
    );
    expect(errors).toEqual([]);
    await page.close();
  });

  it("allows by hash exactly the stylesheets Scalar inserts without the nonce", async () => {
    const response = await fetch(`${hub.baseUrl}/docs`);
    const csp = response.headers.get("content-security-policy") ?? "";
    const allowed = [...csp.matchAll(/'(sha256-[A-Za-z0-9+/=]+)'/g)].map((match) => match[1]);
    const { page } = await openDocs(DESKTOP);
    await page.getByText("Register a network").first().waitFor();
    const unnonced = await page.evaluate(() =>
      [...document.querySelectorAll("style")].filter((style) => !style.nonce).map((style) => style.textContent ?? ""),
    );
    const hashes = unnonced.map((css) => `sha256-${createHash("sha256").update(css).digest("base64")}`);
    // After an upgrade of @scalar/api-reference: these are SCALAR_STYLE_HASHES of src/routes/docs.ts.
    expect(hashes.sort(), "SCALAR_STYLE_HASHES in src/routes/docs.ts").toEqual(allowed.sort());
    await page.close();
  });

  it("keeps the admin token in the tab's memory only", async () => {
    const token = `docs-token-${Date.now()}`;
    const { page, errors } = await openDocs(DESKTOP, "#tag/networks/POST/v1/networks");
    const field = page.getByPlaceholder("Token").first();
    await field.fill(token);
    await expect.poll(() => field.inputValue()).toBe(token);
    await page.waitForTimeout(500);
    const stored = await page.evaluate(async () => {
      const values = [JSON.stringify({ ...localStorage }), JSON.stringify({ ...sessionStorage }), document.cookie];
      for (const { name } of await indexedDB.databases()) {
        if (!name) continue;
        const db = await new Promise<IDBDatabase>((resolve, reject) => {
          const open = indexedDB.open(name);
          open.onsuccess = () => resolve(open.result);
          open.onerror = () => reject(open.error);
        });
        for (const store of db.objectStoreNames) {
          const all = db.transaction(store).objectStore(store).getAll();
          values.push(
            await new Promise<string>((resolve) => (all.onsuccess = () => resolve(JSON.stringify(all.result)))),
          );
        }
        db.close();
      }
      return values.join("\n");
    });
    expect(stored).not.toContain(token);
    await page.reload();
    await page.getByRole("heading", { name: "Postback Hub", level: 1 }).waitFor();
    await expect.poll(() => page.getByPlaceholder("Token").first().inputValue()).toBe("");
    expect(errors).toEqual([]);
    await page.close();
  });

  it("fits a 420 px phone: nothing overflows, from the introduction to the last operation", async () => {
    const { page, errors } = await openDocs(PHONE);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(REPORTS, "docs-420-top.png") });
    const shots = new Map([
      [3, "errors"],
      [12, "postbacks"],
      [40, "networks"],
      [80, "late"],
    ]);
    const { missing, overflow, culprit } = await scrollThrough(page, async (step) => {
      const name = shots.get(step);
      if (name) await page.screenshot({ path: path.join(REPORTS, `docs-420-${name}.png`) });
    });
    expect(missing, "operations that never rendered").toEqual([]);
    expect(overflow, `the widest sideways overflow while scrolling (${culprit})`).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(REPORTS, "docs-420-end.png") });
    // The menu that stands in for the sidebar.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.getByRole("button", { name: "Open Menu" }).click();
    await page.waitForTimeout(300);
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await page.screenshot({ path: path.join(REPORTS, "docs-420-menu.png") });
    expect(errors).toEqual([]);
    await page.close();
  });
});
