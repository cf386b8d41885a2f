/// <reference lib="dom" />
// The functions passed to page.evaluate run in the page, with its DOM.
/**
 * What the browser tests share, written once: Debian's Chromium (installed by
 * scripts/ensure-chromium.mjs when missing, so a fresh machine has it too) driven by playwright-core,
 * which downloads no browser of its own; a watch on a page's requests, errors and CSP violations;
 * and the checks that nothing overflows a phone's width. Screenshots go to reports/ (git-ignored).
 */
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";

const ROOT = path.resolve(import.meta.dirname, "../..");
export const REPORTS = path.join(ROOT, "reports");
const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
export const PHONE = { width: 420, height: 900 };
export const DESKTOP = { width: 1280, height: 900 };

export interface Browser {
  context: BrowserContext;
  close(): Promise<void>;
}

/** Chromium with a fresh profile (nothing kept between runs); installs it first when missing. */
export async function launchBrowser(): Promise<Browser> {
  execFileSync(process.execPath, [path.join(ROOT, "scripts", "ensure-chromium.mjs")], { stdio: "inherit" });
  await mkdir(REPORTS, { recursive: true });
  const profile = await mkdtemp(path.join(tmpdir(), "postback-hub-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: DESKTOP,
  });
  return {
    context,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
}

export interface PageWatch {
  /** Every URL the page requested. */
  requests: string[];
  /** Page errors and CSP violations, as the page reports them. */
  errors: string[];
}

/**
 * Records what `page` requests, its errors and its CSP violations. `ignoreViolation` passes over the
 * ones a page provokes on purpose (Scalar's eval probe).
 */
export async function watchPage(
  page: Page,
  ignoreViolation: (directive: string, blocked: string) => boolean = () => false,
): Promise<PageWatch> {
  const watch: PageWatch = { requests: [], errors: [] };
  page.on("request", (request) => watch.requests.push(request.url()));
  page.on("pageerror", (error) => watch.errors.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    const text = message.text();
    if (!text.startsWith("csp-violation ")) return;
    const [, directive = "", blocked = ""] = text.split(" ");
    if (!ignoreViolation(directive, blocked)) watch.errors.push(text);
  });
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (event) => {
      console.log(
        `csp-violation ${event.effectiveDirective} ${event.blockedURI} at ${event.sourceFile}:${event.lineNumber}`,
      );
    });
  });
  return watch;
}

/** The page is no wider than its viewport: nothing makes the phone scroll sideways. */
export async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(
    () => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth,
  );
}

/** The element that sticks out furthest past the viewport's right edge, to name it in a failure. */
export async function widestElement(page: Page): Promise<string> {
  return page.evaluate(() => {
    let worst = { by: 0, what: "" };
    for (const element of document.querySelectorAll("body *")) {
      // Inside a scroll container, sticking out is scrolling, not overflow: judge the container.
      let inside = false;
      for (let up = element.parentElement; up && up !== document.body; up = up.parentElement) {
        if (["auto", "scroll", "hidden"].includes(getComputedStyle(up).overflowX)) inside = true;
      }
      if (inside) continue;
      const by = element.getBoundingClientRect().right - window.innerWidth;
      if (by > worst.by) {
        const text = (element.parentElement?.parentElement?.textContent ?? "").trim().slice(0, 120);
        const section = element.closest("[id]")?.id ?? "";
        worst = { by, what: `<${element.tagName.toLowerCase()} class="${element.className}"> in #${section}: ${text}` };
      }
    }
    return worst.by > 0 ? `${Math.round(worst.by)} px: ${worst.what}` : "";
  });
}
