/** The console through the real app: sign in, browse with the session cookie, post forms with their CSRF token. */
import { exports } from "cloudflare:workers";
import { expect } from "vitest";
import { ADMIN_TOKEN, admin, BASE, expectStatus } from "./helpers";

/** The hub over plain http (wrangler dev on a laptop): the cookie has no Secure flag and no prefix. */
export const HTTP_BASE = "http://hub.test";

export interface ConsoleSession {
  /** The Cookie header to send. */
  cookie: string;
  /** The Set-Cookie header the sign-in answered with. */
  setCookie: string;
  base: string;
}

export async function signIn(key: string = ADMIN_TOKEN, base = BASE): Promise<ConsoleSession> {
  const response = await exports.default.fetch(
    new Request(`${base}/console/login`, {
      method: "POST",
      body: new URLSearchParams({ key }),
      redirect: "manual",
    }),
  );
  const body = await response.text();
  expect(response.status, `sign-in answered ${response.status}: ${body}`).toBe(303);
  expect(response.headers.get("location")).toBe("/console");
  const setCookie = response.headers.get("set-cookie") ?? "";
  return { cookie: setCookie.split(";")[0] ?? "", setCookie, base };
}

export interface ConsoleRequest {
  method?: string;
  form?: Record<string, string | string[]>;
  headers?: Record<string, string>;
}

export function consoleFetch(session: ConsoleSession | null, path: string, init: ConsoleRequest = {}) {
  const base = session?.base ?? BASE;
  const headers = new Headers(init.headers);
  if (session) headers.set("cookie", session.cookie);
  let body: URLSearchParams | undefined;
  if (init.form) {
    body = new URLSearchParams();
    for (const [name, value] of Object.entries(init.form)) {
      for (const one of Array.isArray(value) ? value : [value]) body.append(name, one);
    }
  }
  return exports.default.fetch(
    new Request(`${base}${path}`, {
      method: init.method ?? (body ? "POST" : "GET"),
      headers,
      body,
      redirect: "manual",
    }),
  );
}

/** The page's HTML, asserting its status (the body shows when it is not the expected one). */
export async function page(session: ConsoleSession | null, path: string, status = 200): Promise<string> {
  const response = await consoleFetch(session, path);
  const html = await response.text();
  expect(response.status, `GET ${path}: expected ${status}, got ${response.status}: ${html.slice(0, 2000)}`).toBe(
    status,
  );
  return html;
}

/** The CSRF token the session's pages carry in their forms. */
export async function csrfOf(session: ConsoleSession): Promise<string> {
  const html = await page(session, "/console/deliveries");
  const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
  expect(token, "a page's forms carry the CSRF token").toBeTruthy();
  return token ?? "";
}

/** Posts a console form with the session's CSRF token (unless the form names its own). */
export async function post(session: ConsoleSession, path: string, form: Record<string, string | string[]> = {}) {
  const csrf = form.csrf ?? (await csrfOf(session));
  return consoleFetch(session, path, { form: { ...form, csrf } });
}

export interface TestApiKey {
  id: string;
  key: string;
}

export async function createApiKey(scope: string, subjectId?: string): Promise<TestApiKey> {
  return expectStatus<TestApiKey>(
    await admin("/v1/keys", {
      method: "POST",
      body: JSON.stringify({ name: `console ${scope}`, scope, ...(subjectId ? { subject_id: subjectId } : {}) }),
    }),
    201,
  );
}

/** The text of an element with this id (tags stripped), for assertions about what a page shows. */
export function textOf(html: string, id: string): string {
  const start = html.indexOf(`id="${id}"`);
  if (start < 0) return "";
  const tag = html.lastIndexOf("<", start);
  const name = /^<([a-z0-9]+)/.exec(html.slice(tag))?.[1] ?? "div";
  // The element's end: the matching close tag, counting nested ones of the same name.
  let depth = 0;
  const pattern = new RegExp(`<(/?)${name}\\b[^>]*>`, "g");
  pattern.lastIndex = tag;
  for (let match = pattern.exec(html); match; match = pattern.exec(html)) {
    depth += match[1] === "/" ? -1 : 1;
    if (depth === 0) {
      return html
        .slice(tag, match.index)
        .replace(/<[^>]+>/g, " ")
        .replace(/\s+/g, " ")
        .trim();
    }
  }
  return "";
}
