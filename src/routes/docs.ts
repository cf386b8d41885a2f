/**
 * `GET /docs`: the interactive API reference, Scalar's, rendered in the browser from `/openapi.json`.
 * Its bundle is served by this Worker from its static assets (scripts/docs-assets.mjs puts it in
 * public/assets/), so the page works offline and loads nothing from another host. The page's
 * scripts and styles carry a fresh nonce, so the Content-Security-Policy can forbid everything else.
 * Not part of the OpenAPI document: it describes the API rather than being one of its operations.
 */
import { Scalar } from "@scalar/hono-api-reference";
import { randomBytes, toBase64 } from "../lib/bytes";
import type { App, AppEnv } from "./common";

const NONCE_BYTES = 16;

/** Where Workers Static Assets serve Scalar's single-file (UMD) browser bundle. */
export const SCALAR_BUNDLE_PATH = "/assets/scalar/standalone.js";

/**
 * The two stylesheets Scalar's bundle inserts without a nonce, allowed by their SHA-256 and nothing
 * else: the theme (a `<style>` its Vue app renders, the same text for this configuration) and the
 * toasts' (vue-sonner's, injected as the bundle loads). They change only with the bundle: after an
 * upgrade of @scalar/api-reference, test/e2e/docs.browser.e2e.test.ts fails and names the new hashes.
 */
export const SCALAR_STYLE_HASHES = [
  "sha256-T13Uev3xCax2N28XaoAE8DOzQZKvPp7ZQVAi1iRREjo=",
  "sha256-l/2OpPg0d+2VLTLgwjf5mQo2CYwHDEqdj5TjbfEyVJI=",
];

/**
 * As strict as Scalar allows. Scripts: the one bundle file and the inline call that starts it carry
 * the nonce, and nothing else runs (the bundle's one `Function("")`, a probe for eval support inside
 * a try, is refused and it carries on without). Style elements: the bundle's main stylesheet takes
 * the nonce from `<meta property="csp-nonce">`, the two it inserts without one are allowed by hash.
 * Style attributes: Vue, the editor and the popovers size and place elements through `style`
 * attributes, hence `style-src-attr 'unsafe-inline'` (attributes only, which load nothing and run
 * no script). Requests go to this origin only: the document, and "Test request".
 */
export function contentSecurityPolicy(nonce: string): string {
  return [
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
  ].join("; ");
}

export function registerDocsRoutes(app: App): void {
  app.get("/docs", async (c, next) => {
    const nonce = toBase64(randomBytes(NONCE_BYTES));
    c.header("content-security-policy", contentSecurityPolicy(nonce));
    c.header("x-content-type-options", "nosniff");
    c.header("referrer-policy", "no-referrer");
    // A nonce is only worth something if every response has its own.
    c.header("cache-control", "no-store");
    const reference = Scalar<AppEnv>({
      url: "/openapi.json",
      cdn: SCALAR_BUNDLE_PATH,
      nonce,
      pageTitle: "Postback Hub API reference",
      // No request for /favicon.ico (a 404 problem).
      favicon: "data:,",
      // "Test request" goes to the hub that served this page, wherever it runs: the document's own
      // servers (127.0.0.1:8787, a workers.dev placeholder) are for generated clients.
      servers: [{ url: new URL(c.req.url).origin, description: "This hub" }],
      // The admin token stays in the tab's memory: never localStorage (Scalar's default, said again).
      persistAuth: false,
      authentication: { preferredSecurityScheme: "apiKey" },
      // Nothing leaves for Scalar's services: no telemetry, no hosted fonts, no AI agent, no MCP.
      telemetry: false,
      withDefaultFonts: false,
      agent: { disabled: true },
      mcp: { disabled: true },
      showDeveloperTools: "never",
      hideClientButton: false,
      documentDownloadType: "json",
      // 34 operations: all open, so the browser's find and a reader scrolling see everything (the old page did).
      defaultOpenAllTags: true,
      orderRequiredPropertiesFirst: true,
    });
    return reference(c, next);
  });
}
