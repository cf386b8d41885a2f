import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app";
import { PROBLEM_CODES, type ProblemCode, problemBody } from "../src/errors";
import { registerDocsRoutes } from "../src/routes/docs";

// Until src/app.ts wires the route in, the tests build the app the way it will: createApp() plus
// registerDocsRoutes(app).
function docsApp() {
  const app = createApp();
  registerDocsRoutes(app);
  return app;
}

async function getDocs(): Promise<{ response: Response; html: string }> {
  const response = await docsApp().fetch(new Request("https://hub.test/docs"), env);
  const html = await response.text();
  expect(response.status, `expected 200, got ${response.status}: ${html.slice(0, 500)}`).toBe(200);
  return { response, html };
}

function nonceOf(csp: string): string {
  const match = /script-src 'nonce-([A-Za-z0-9+/=]+)'/.exec(csp);
  expect(match, csp).not.toBeNull();
  return match?.[1] ?? "";
}

function tagsOf(html: string, name: "script" | "style"): string[] {
  return [...html.matchAll(new RegExp(`<${name}\\b[^>]*>`, "g"))].map((match) => match[0]);
}

describe("GET /docs", () => {
  it("answers HTML under a strict Content-Security-Policy whose nonce every inline script and style carries", async () => {
    const { response, html } = await getDocs();
    expect(response.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    const csp = response.headers.get("content-security-policy") ?? "";
    const nonce = nonceOf(csp);
    expect(csp.split("; ")).toEqual([
      "default-src 'none'",
      "connect-src 'self'",
      "img-src 'self' data:",
      `style-src 'nonce-${nonce}'`,
      `script-src 'nonce-${nonce}'`,
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ]);
    const tags = [...tagsOf(html, "script"), ...tagsOf(html, "style")];
    expect(tags.length).toBeGreaterThanOrEqual(2);
    for (const tag of tags) expect(tag).toContain(`nonce="${nonce}"`);
    // Inline handlers and style attributes would be blocked by this CSP; the page has none.
    expect(html).not.toMatch(/\son[a-z]+="/);
    expect(html).not.toMatch(/\sstyle="/);
  });

  it("uses a fresh nonce for every response", async () => {
    const first = nonceOf((await getDocs()).response.headers.get("content-security-policy") ?? "");
    const second = nonceOf((await getDocs()).response.headers.get("content-security-policy") ?? "");
    expect(first).not.toBe(second);
  });

  it("renders /openapi.json in the browser and loads nothing from another host", async () => {
    const { html } = await getDocs();
    expect(html).toContain('"openapiUrl":"/openapi.json"');
    expect(html).not.toMatch(/\s(src|href)="(https?:)?\/\//);
    // The only absolute URLs are the problem `type` identifiers in the example problem, which the
    // page shows as text and never loads.
    const problemTypes = (Object.keys(PROBLEM_CODES) as ProblemCode[]).map((code) => problemBody(code, "", "").type);
    let rest = html;
    for (const type of problemTypes) rest = rest.replaceAll(type, "");
    expect(rest.match(/https?:\/\/[^\s"'<>)]*/g) ?? []).toEqual([]);
  });

  it("embeds every error code with its HTTP status, safely inside its script element", async () => {
    const { html } = await getDocs();
    const match = /<script type="application\/json" id="hub-data"[^>]*>([^<]*)<\/script>/.exec(html);
    expect(match).not.toBeNull();
    const data = JSON.parse(match?.[1] ?? "null") as { problemCodes: typeof PROBLEM_CODES };
    expect(data.problemCodes).toEqual(PROBLEM_CODES);
  });

  it("is not an operation of the OpenAPI document", async () => {
    const response = await docsApp().fetch(new Request("https://hub.test/openapi.json"), env);
    const doc = (await response.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).not.toContain("/docs");
    expect(Object.keys(doc.paths)).toContain("/v1/postbacks/{network_id}");
  });
});
