/**
 * `GET /docs`: the interactive API reference, rendered in the browser from `/openapi.json`. The page
 * is self-contained (users and CI run offline), and its one inline script and style carry a fresh
 * nonce so that the Content-Security-Policy can forbid everything else. Not part of the OpenAPI
 * document: it describes the API rather than being one of its operations.
 */
import { PROBLEM_CODES, problemBody, validationFailed } from "../errors";
import { randomBytes, toBase64 } from "../lib/bytes";
import type { App } from "./common";
import { type DocsPageData, renderDocsPage } from "./docs-page";

const NONCE_BYTES = 16;

/** A real 422 from the hub's own problem writer, so the page's example never drifts from it. */
function problemExample() {
  const error = validationFailed([
    { location: "body.amount", message: "must be a plain decimal with at most 15 integer and 8 fraction digits" },
  ]);
  return problemBody(error.code, error.message, "8e5f2c3b9d1a4e7f-AMS", error.errors);
}

export function contentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    "connect-src 'self'",
    "img-src 'self' data:",
    `style-src 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export function registerDocsRoutes(app: App): void {
  const data: DocsPageData = {
    openapiUrl: "/openapi.json",
    problemCodes: PROBLEM_CODES,
    problemExample: problemExample(),
  };
  app.get("/docs", (c) => {
    const nonce = toBase64(randomBytes(NONCE_BYTES));
    return c.body(renderDocsPage(nonce, data), 200, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": contentSecurityPolicy(nonce),
      "x-content-type-options": "nosniff",
      "referrer-policy": "no-referrer",
      // A nonce is only worth something if every response has its own.
      "cache-control": "no-store",
    });
  });
}
