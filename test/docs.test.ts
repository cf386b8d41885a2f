/**
 * /docs: Scalar's API reference, its bundle served from the Worker's own static assets, under a
 * Content-Security-Policy with a fresh nonce. The static assets are served by wrangler dev, not here:
 * test/e2e/docs.browser.e2e.test.ts fetches the bundle and looks at the page in Chromium.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app";
import { SCALAR_BUNDLE_PATH, SCALAR_STYLE_HASHES } from "../src/routes/docs";

const ORIGIN = "https://hub.test";

async function getDocs(): Promise<{ response: Response; html: string }> {
  const response = await createApp().fetch(new Request(`${ORIGIN}/docs`), env);
  const html = await response.text();
  expect(response.status, `expected 200, got ${response.status}: ${html.slice(0, 500)}`).toBe(200);
  return { response, html };
}

function nonceOf(csp: string): string {
  const match = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp);
  expect(match, csp).not.toBeNull();
  return match?.[1] ?? "";
}

function tagsOf(html: string, name: "script" | "style" | "link" | "meta"): string[] {
  return [...html.matchAll(new RegExp(`<${name}\\b[^>]*>`, "g"))].map((match) => match[0]);
}

/** The configuration the page hands to Scalar.createApiReference (JSON: no function survives a nonce'd page). */
function scalarConfig(html: string): Record<string, unknown> {
  const match = /Scalar\.createApiReference\('#app', (\{[\s\S]*?\n\s*\})\)/.exec(html);
  expect(match, html).not.toBeNull();
  return JSON.parse(match?.[1] ?? "null") as Record<string, unknown>;
}

describe("GET /docs", () => {
  it("answers HTML under a strict Content-Security-Policy whose nonce every script and style carries", async () => {
    const { response, html } = await getDocs();
    expect(response.headers.get("content-type")).toBe("text/html; charset=UTF-8");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("referrer-policy")).toBe("no-referrer");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const csp = response.headers.get("content-security-policy") ?? "";
    const nonce = nonceOf(csp);
    expect(csp.split("; ")).toEqual([
      "default-src 'none'",
      `script-src 'nonce-${nonce}'`,
      `style-src-elem 'nonce-${nonce}' ${SCALAR_STYLE_HASHES.map((hash) => `'${hash}'`).join(" ")}`,
      "style-src-attr 'unsafe-inline'",
      "connect-src 'self'",
      "img-src 'self' data:",
      "font-src 'self' data:",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ]);
    // Two stylesheets the bundle inserts without the nonce, by hash only (e2e checks they are these).
    expect(SCALAR_STYLE_HASHES).toHaveLength(2);
    for (const hash of SCALAR_STYLE_HASHES) expect(hash).toMatch(/^sha256-[A-Za-z0-9+/]{43}=$/);
    const tags = [...tagsOf(html, "script"), ...tagsOf(html, "style")];
    // The bundle, the call that starts it, and the theme.
    expect(tags.length).toBe(3);
    for (const tag of tags) expect(tag).toContain(`nonce="${nonce}"`);
    // The bundle gives its run-time stylesheet the nonce it reads here.
    expect(tagsOf(html, "meta")).toContain(`<meta property="csp-nonce" content="${nonce}" />`);
    // Inline handlers and style attributes in the markup would be blocked or weaken the policy.
    expect(html).not.toMatch(/\son[a-z]+=/);
    expect(html).not.toMatch(/\sstyle=/);
  });

  it("uses a fresh nonce for every response", async () => {
    const first = nonceOf((await getDocs()).response.headers.get("content-security-policy") ?? "");
    const second = nonceOf((await getDocs()).response.headers.get("content-security-policy") ?? "");
    expect(first).not.toBe(second);
  });

  it("loads Scalar from this Worker and nothing from another host", async () => {
    const { html } = await getDocs();
    const sources = tagsOf(html, "script").flatMap((tag) => /\ssrc="([^"]*)"/.exec(tag)?.[1] ?? []);
    expect(sources).toEqual([SCALAR_BUNDLE_PATH]);
    expect(tagsOf(html, "link")).toEqual([]);
    // The only absolute URL is this hub's own, as the server "Test request" sends to.
    expect(html.match(/https?:\/\/[^\s"'<>)]*/g) ?? []).toEqual([ORIGIN]);
  });

  it("renders /openapi.json, keeps credentials in memory, and calls no Scalar service", async () => {
    const config = scalarConfig((await getDocs()).html);
    expect(config).toMatchObject({
      url: "/openapi.json",
      servers: [{ url: ORIGIN, description: "This hub" }],
      persistAuth: false,
      telemetry: false,
      withDefaultFonts: false,
      agent: { disabled: true },
      mcp: { disabled: true },
      showDeveloperTools: "never",
    });
    expect(config).not.toHaveProperty("proxyUrl");
  });

  it("is not an operation of the OpenAPI document", async () => {
    const response = await createApp().fetch(new Request(`${ORIGIN}/openapi.json`), env);
    const doc = (await response.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).not.toContain("/docs");
    expect(Object.keys(doc.paths)).toContain("/v1/postbacks/{network_id}");
  });
});
