/**
 * The console under attack, through the real app: a form body the parser cannot read is a clear
 * 400 page (never a 500), signed in or not.
 */
import { env, exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { createApiKey, csrfOf, page, signIn, textOf } from "./support/console";
import {
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  uniqueId,
} from "./support/helpers";

function rawPost(path: string, body: string, contentType: string, cookie?: string) {
  const headers = new Headers({ "content-type": contentType });
  if (cookie) headers.set("cookie", cookie);
  return exports.default.fetch(new Request(`${BASE}${path}`, { method: "POST", headers, body, redirect: "manual" }));
}

describe("a form body that cannot be read", () => {
  it("is a 400 page with the console's headers, at sign-in and behind a session, and nothing is done", async () => {
    const session = await signIn();
    const partner = await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("form")}` });
    const cases: [string, string, string, string | undefined][] = [
      ["/console/login", "garbage--", "multipart/form-data; boundary=zzz", undefined],
      ["/console/login", "garbage--", "multipart/form-data", undefined],
      [`/console/partners/${partner.id}/disable`, "garbage--", "multipart/form-data; boundary=zzz", session.cookie],
      ["/console/deliveries/replay", "--zzz\r\nbroken", "multipart/form-data; boundary=zzz", session.cookie],
    ];
    for (const [path, body, type, cookie] of cases) {
      const response = await rawPost(path, body, type, cookie);
      const html = await response.text();
      expect(response.status, `${path} (${type}): ${html.slice(0, 500)}`).toBe(400);
      expect(html).toContain("<code>invalid_request</code>");
      expect(response.headers.get("content-security-policy")).toContain("default-src 'none'");
      expect(response.headers.get("cache-control")).toBe("no-store");
      expect(response.headers.get("set-cookie")).toBeNull();
    }
    const row = await env.DB.prepare("SELECT status FROM partners WHERE id = ?")
      .bind(partner.id)
      .first<{ status: string }>();
    expect(row?.status).toBe("active");
    // The session still works, and a well-formed form still goes through the CSRF check.
    expect(await csrfOf(session)).toBeTruthy();
  });
});
