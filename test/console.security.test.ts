/**
 * The console under attack, through the real app: a form body the parser cannot read is a clear
 * 400 page (never a 500), signed in or not; every response over https carries HSTS; and a network key, on its own conversion's page, sees
 * what the network pays (revenue) but never what the hub pays the credited partner (payout: with
 * revenue, the operator's margin).
 */
import { env, exports } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { consoleFetch, createApiKey, csrfOf, HTTP_BASE, page, signIn, textOf } from "./support/console";
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

describe("over https", () => {
  it("every console response, sign-in, redirects and refusals included, tells the browser to stay on https", async () => {
    const session = await signIn();
    const responses = [
      await consoleFetch(null, "/console/login"),
      await consoleFetch(null, "/console"),
      await consoleFetch(session, "/console"),
      await consoleFetch(session, "/console/nope"),
      await consoleFetch(session, "/console/logout", { form: { csrf: "wrong" } }),
    ];
    for (const response of responses) {
      expect(response.headers.get("strict-transport-security"), response.url).toBe("max-age=31536000");
    }
    // Not over http (wrangler dev on a laptop), where the header means nothing and would only confuse.
    const http = await consoleFetch(await signIn(undefined, HTTP_BASE), "/console");
    expect(http.status).toBe(200);
    expect(http.headers.get("strict-transport-security")).toBeNull();
  });
});

describe("a network key on its own conversion", () => {
  let path: string;
  let networkKey: string;
  beforeAll(async () => {
    const network = await createNetwork(uniqueId("margin"));
    const partner = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("margin")}`,
      filters: { networks: ["nowhere"] },
    });
    const tx = uniqueId("tx");
    await expectStatus(await postback(network, makePostback({ transaction_id: tx, amount: "40.00" })), 200);
    await eventually(() => conversionInD1(network.id, tx));
    await env.DB.prepare(
      `UPDATE conversions SET attribution = 'attributed', attribution_detail = 'click', attributed_partner_id = ?,
         payout = '2.50', payout_currency = 'USD', revenue = '4.80', revenue_currency = 'USD'
       WHERE network_id = ? AND transaction_id = ?`,
    )
      .bind(partner.id, network.id, tx)
      .run();
    path = `/console/conversions/${encodeURIComponent(network.id)}/${encodeURIComponent(tx)}`;
    networkKey = (await createApiKey("network", network.id)).key;
  });

  it("shows the revenue but not the partner's payout", async () => {
    const html = await page(await signIn(networkKey), path);
    const attribution = textOf(html, "attribution");
    expect(attribution).toContain("Revenue 4.80 USD");
    expect(attribution).not.toContain("Payout");
    expect(html).not.toContain("2.50");
  });

  it("while an operator's view of the same page shows both", async () => {
    const attribution = textOf(await page(await signIn(), path), "attribution");
    expect(attribution).toContain("Payout 2.50 USD");
    expect(attribution).toContain("Revenue 4.80 USD");
  });
});

describe("a filter from an edited URL", () => {
  // Silently unfiltered results would let an operator read every row as the ones they asked for.
  it("is a 422 page naming the parameter, not a page of unfiltered rows", async () => {
    const session = await signIn();
    for (const [path, location] of [
      ["/console/conversions?status=bogus", "query.status"],
      ["/console/conversions?from=garbage", "query.from"],
      ["/console/conversions?to=2026-02-30", "query.to"],
      ["/console/deliveries?state=lost", "query.state"],
    ] as const) {
      const html = await page(session, path, 422);
      expect(html, path).toContain(location);
      expect(html, path).not.toContain('id="conversions"');
      expect(html, path).not.toContain('id="deliveries"');
    }
    // The values the forms offer still filter.
    await page(session, "/console/conversions?status=approved&from=2026-01-01&to=2026-12-31", 200);
    await page(session, "/console/deliveries?state=failed", 200);
  });
});
