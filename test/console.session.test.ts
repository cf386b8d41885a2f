/**
 * The console's sign-in and sessions through the real app: the cookie (signed, flags, never the
 * key), wrong keys, expiry, sessions that end when their key is disabled or rotated or the
 * ADMIN_TOKEN changes, CSRF and Origin refusals that change nothing, and the security headers.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { adminTokenPrincipal } from "../src/access/keys";
import { adminTokenFingerprint, newSession, SECURE_SESSION_COOKIE, sealSession } from "../src/console/session";
import {
  type ConsoleSession,
  consoleFetch,
  createApiKey,
  csrfOf,
  HTTP_BASE,
  page,
  post,
  signIn,
} from "./support/console";
import { deliveryRow, pendingDelivery } from "./support/deliveries";
import { ADMIN_TOKEN, admin, BASE, createPartner, expectStatus, PARTNER, uniqueId } from "./support/helpers";

async function failedDelivery(): Promise<string> {
  const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("console")}` });
  return pendingDelivery(partner.id, { state: "failed", attempts: 1 });
}

function sessionWith(overrides: Record<string, unknown>): Promise<ConsoleSession> {
  return (async () => {
    const session = { ...(await newSession(env, adminTokenPrincipal())), ...overrides };
    const cookie = `${SECURE_SESSION_COOKIE}=${await sealSession(env, session as never)}`;
    return { cookie, setCookie: cookie, base: BASE };
  })();
}

describe("sign-in", () => {
  it("shows a labelled password field and a Sign in button", async () => {
    const html = await page(null, "/console/login");
    expect(html).toContain('<label for="key">API key</label>');
    expect(html).toMatch(/<input[^>]*id="key"[^>]*type="password"[^>]*autocomplete="off"/);
    expect(html).toMatch(/<button type="submit">Sign in<\/button>/);
  });

  it("with the ADMIN_TOKEN over https: a signed HttpOnly, SameSite=Strict, Secure cookie for /console, never the key", async () => {
    const session = await signIn(ADMIN_TOKEN);
    const flags = session.setCookie.split(";").map((part) => part.trim());
    expect(flags[0]?.startsWith(`${SECURE_SESSION_COOKIE}=`)).toBe(true);
    expect(flags).toEqual(expect.arrayContaining(["HttpOnly", "SameSite=Strict", "Path=/console", "Secure"]));
    const expires = Date.parse(flags.find((f) => f.startsWith("Expires="))?.slice(8) ?? "");
    expect(Math.abs(expires - (Date.now() + 8 * 3_600_000))).toBeLessThan(60_000);
    const value = session.cookie.split("=").slice(1).join("=");
    const payload = atob((value.split(".")[0] ?? "").replaceAll("-", "+").replaceAll("_", "/"));
    expect(payload).not.toContain(ADMIN_TOKEN);
    expect(JSON.parse(payload)).toMatchObject({ key_id: "admin_token" });
    const html = await page(session, "/console");
    expect(html).toContain("<h1>Overview</h1>");
    expect(html).toContain('<nav aria-label="Console">');
  });

  it("over http the cookie is neither Secure nor prefixed", async () => {
    const session = await signIn(ADMIN_TOKEN, HTTP_BASE);
    expect(session.setCookie.startsWith("phc_session=")).toBe(true);
    expect(session.setCookie).not.toMatch(/;\s*Secure/i);
    expect(await page(session, "/console")).toContain("<h1>Overview</h1>");
  });

  it("with an API key (phk_…), as its scope", async () => {
    const key = await createApiKey("read-only");
    const session = await signIn(key.key);
    expect(session.cookie).not.toContain(key.key);
    const html = await page(session, "/console");
    expect(html).toContain("(read-only)");
  });

  it("refuses a wrong key with a 401 page and stores nothing", async () => {
    for (const key of ["not-the-token", "phk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ""]) {
      const response = await consoleFetch(null, "/console/login", { form: { key } });
      const html = await response.text();
      expect(response.status, html).toBe(401);
      expect(response.headers.get("set-cookie")).toBeNull();
      expect(html).toContain("That key is wrong, disabled or expired");
    }
  });
});

describe("sessions", () => {
  it("without a cookie, or with a forged one, every page sends the reader to sign in", async () => {
    for (const cookie of [null, `${SECURE_SESSION_COOKIE}=abc.def`, `${SECURE_SESSION_COOKIE}=${"x".repeat(40)}`]) {
      const response = await consoleFetch(cookie ? { cookie, setCookie: "", base: BASE } : null, "/console/deliveries");
      expect(response.status).toBe(303);
      expect(response.headers.get("location")).toBe("/console/login?m=signin");
    }
  });

  it("a session signed with another key's MAC is refused", async () => {
    const real = await signIn();
    const [name, value = ""] = real.cookie.split("=");
    const [body = ""] = value.split(".");
    const forged = { cookie: `${name}=${body}.${"A".repeat(43)}`, setCookie: "", base: BASE };
    const response = await consoleFetch(forged, "/console");
    expect(response.status).toBe(303);
  });

  it("an expired session ends with a message", async () => {
    const expired = await sessionWith({ expires_ms: Date.now() - 1000 });
    const response = await consoleFetch(expired, "/console");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/login?m=expired");
    expect(await page(null, "/console/login?m=expired")).toContain("Your session expired");
  });

  it("an ADMIN_TOKEN session ends when the ADMIN_TOKEN changes", async () => {
    const before = await adminTokenFingerprint({ ...env, ADMIN_TOKEN: "the-previous-admin-token-0123456789" });
    const stale = await sessionWith({ admin: before });
    const response = await consoleFetch(stale, "/console");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/login?m=ended");
    // The same session with the current token's fingerprint works.
    const current = await sessionWith({});
    expect((await consoleFetch(current, "/console")).status).toBe(200);
  });

  it("disabling the key ends its sessions at once", async () => {
    const key = await createApiKey("operator");
    const session = await signIn(key.key);
    expect((await consoleFetch(session, "/console")).status).toBe(200);
    await expectStatus(
      await admin(`/v1/keys/${key.id}`, { method: "PATCH", body: JSON.stringify({ status: "disabled" }) }),
      200,
    );
    const response = await consoleFetch(session, "/console");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/login?m=ended");
  });

  it("rotating the key ends its sessions at once", async () => {
    const key = await createApiKey("operator");
    const session = await signIn(key.key);
    expect((await consoleFetch(session, "/console")).status).toBe(200);
    // Rotation is compared in milliseconds against the sign-in: make sure it happens after it.
    await new Promise((resolve) => setTimeout(resolve, 5));
    await expectStatus(await admin(`/v1/keys/${key.id}/rotate`, { method: "POST", body: "{}" }), 200);
    const response = await consoleFetch(session, "/console");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/login?m=ended");
  });

  it("signing out is a POST with the CSRF token, and clears the cookie", async () => {
    const session = await signIn();
    const refused = await consoleFetch(session, "/console/logout", { method: "POST" });
    expect(refused.status).toBe(403);
    const response = await post(session, "/console/logout");
    expect(response.status).toBe(303);
    expect(response.headers.get("location")).toBe("/console/login?m=signed-out");
    expect(response.headers.get("set-cookie")).toMatch(new RegExp(`^${SECURE_SESSION_COOKIE}=;.*Max-Age=0`));
  });
});

describe("CSRF and Origin", () => {
  it("refuse a POST without the token, with a wrong one, or with another session's, and do nothing", async () => {
    const session = await signIn();
    const other = await signIn();
    const othersToken = await csrfOf(other);
    expect(othersToken).not.toBe(await csrfOf(session));
    const id = await failedDelivery();
    const forms: Record<string, string>[] = [{}, { csrf: "wrong" }, { csrf: othersToken }];
    for (const form of forms) {
      const response = await consoleFetch(session, `/console/deliveries/${id}/replay`, { form, method: "POST" });
      const html = await response.text();
      expect(response.status, html).toBe(403);
      expect(html).toContain("csrf_failed");
      expect((await deliveryRow(id))?.state).toBe("failed");
    }
    const audit = await env.DB.prepare("SELECT count(*) AS n FROM audit_log WHERE target LIKE ?")
      .bind(`%${id}%`)
      .first<{ n: number }>();
    expect(audit?.n).toBe(0);
    // With the right token the same POST works.
    const response = await post(session, `/console/deliveries/${id}/replay`);
    expect(response.status, await response.text()).toBe(200);
    expect((await deliveryRow(id))?.state).not.toBe("failed");
  });

  it("refuse a POST from another origin, even with the right token, and do nothing", async () => {
    const session = await signIn();
    const csrf = await csrfOf(session);
    const id = await failedDelivery();
    for (const origin of ["https://evil.test", "null", "https://hub.test.evil.test"]) {
      const response = await consoleFetch(session, `/console/deliveries/${id}/replay`, {
        form: { csrf },
        headers: { origin },
      });
      const html = await response.text();
      expect(response.status, html).toBe(403);
      expect(html).toContain("forbidden_origin");
      expect((await deliveryRow(id))?.state).toBe("failed");
    }
    const login = await consoleFetch(null, "/console/login", {
      form: { key: ADMIN_TOKEN },
      headers: { origin: "https://evil.test" },
    });
    expect(login.status).toBe(403);
    expect(login.headers.get("set-cookie")).toBeNull();
    const same = await consoleFetch(session, `/console/deliveries/${id}/replay`, {
      form: { csrf },
      headers: { origin: BASE },
    });
    expect(same.status).toBe(200);
  });
});

describe("headers", () => {
  it("every response: a strict CSP whose nonce is the script's and new each time, no-store, nosniff, no referrer elsewhere", async () => {
    const session = await signIn();
    const nonces: string[] = [];
    for (const path of ["/console/login", "/console", "/console", "/console/deliveries"]) {
      const response = await consoleFetch(path === "/console/login" ? null : session, path);
      const html = await response.text();
      const csp = response.headers.get("content-security-policy") ?? "";
      const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1] ?? "";
      expect(nonce.length).toBeGreaterThanOrEqual(22);
      expect(html).toContain(`<script nonce="${nonce}" src="/assets/console/console.js" defer=""></script>`);
      for (const directive of [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
      ]) {
        expect(csp).toContain(directive);
      }
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.get("x-content-type-options")).toBe("nosniff");
      expect(response.headers.get("referrer-policy")).toBe("same-origin");
      // No inline handlers, no style attributes: the CSP would refuse them anyway.
      expect(html).not.toMatch(/\son[a-z]+=/);
      expect(html).not.toMatch(/\sstyle=/);
      nonces.push(nonce);
    }
    expect(new Set(nonces).size).toBe(nonces.length);
    // A redirect and a refusal carry them too.
    const redirect = await consoleFetch(null, "/console");
    expect(redirect.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(redirect.headers.get("cache-control")).toBe("no-store");
  });

  it("the console is not in the OpenAPI document", async () => {
    const doc = await (await exports.default.fetch(`${BASE}/openapi.json`)).json<{ paths: Record<string, unknown> }>();
    expect(Object.keys(doc.paths).filter((path) => path.startsWith("/console"))).toEqual([]);
  });
});
