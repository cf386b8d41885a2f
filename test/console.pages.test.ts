/**
 * The console's pages and actions through the real app, for each kind of key: what a partner key
 * and a network key may see, a read-only key's pages without buttons and its POSTs refused, the
 * admin-only rotations, the conversion page (history, chain, deliveries with Replay), the
 * deliveries pages and bulk replay, and an audit row for every action, with the API's name.
 */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it } from "vitest";
import { type ConsoleSession, consoleFetch, createApiKey, page, post, signIn, textOf } from "./support/console";
import { deliveryRow, pendingDelivery } from "./support/deliveries";
import {
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";

/** Partners that no postback of this file reaches: their deliveries are the ones the tests insert. */
const NOWHERE = { networks: ["nowhere"] };

let acme: TestNetwork;
let other: TestNetwork;
let acmeTx: string;
let otherTx: string;
let partnerA: string;
let partnerB: string;
let failedA: string;
let deadB: string;
let deliveredA: string;

async function auditRows(action: string, targetId: string) {
  const { results } = await env.DB.prepare(
    "SELECT action, via, key_id, scope, status, method, path FROM audit_log WHERE action = ? AND target LIKE ?",
  )
    .bind(action, `%${targetId}%`)
    .all<{
      action: string;
      via: string;
      key_id: string;
      scope: string;
      status: number;
      method: string;
      path: string;
    }>();
  return results;
}

beforeAll(async () => {
  // pendingDelivery's rows are of network "acme": the conversion they deliver is acme's.
  acme = await createNetwork("acme");
  other = await createNetwork(uniqueId("net"));
  acmeTx = uniqueId("tx");
  otherTx = uniqueId("tx");
  await expectStatus(await postback(acme, makePostback({ transaction_id: acmeTx, click_id: "clk-console-1" })), 200);
  await expectStatus(await postback(other, makePostback({ transaction_id: otherTx })), 200);
  await eventually(() => conversionInD1(acme.id, acmeTx));
  await eventually(() => conversionInD1(other.id, otherTx));
  partnerA = (await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("a")}`, filters: NOWHERE })).id;
  partnerB = (await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("b")}`, filters: NOWHERE })).id;
  failedA = await pendingDelivery(partnerA, { state: "failed", attempts: 1, transaction_id: acmeTx });
  deliveredA = await pendingDelivery(partnerA, { state: "delivered", attempts: 1, transaction_id: acmeTx });
  deadB = await pendingDelivery(partnerB, { state: "dead", attempts: 3 });
  await env.DB.prepare(
    `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, response_excerpt, outcome)
     VALUES (?, 1, ?, ?, 500, 321, 'upstream exploded', 'failed')`,
  )
    .bind(failedA, partnerA, new Date().toISOString())
    .run();
});

describe("an admin session", () => {
  let session: ConsoleSession;
  beforeAll(async () => {
    session = await signIn();
  });

  it("searches conversions by transaction id over the API's query", async () => {
    const html = await page(session, `/console/conversions?transaction_id=${acmeTx}`);
    const table = textOf(html, "conversions");
    expect(table).toContain(acmeTx);
    expect(table).not.toContain(otherTx);
    expect(html).toContain('name="transaction_id"');
    // The same filter on the API.
    const api = await expectStatus<{ data: { transaction_id: string }[] }>(
      await admin(`/v1/conversions?transaction_id=${acmeTx}`),
      200,
    );
    expect(api.data.map((c) => c.transaction_id)).toEqual([acmeTx]);
    const byClick = await page(session, "/console/conversions?click_id=clk-console-1");
    expect(textOf(byClick, "conversions")).toContain(acmeTx);
    const byNetwork = await page(session, `/console/conversions?network_id=${other.id}`);
    expect(textOf(byNetwork, "conversions")).toContain(otherTx);
    expect(textOf(byNetwork, "conversions")).not.toContain(acmeTx);
  });

  it("shows a conversion with its history, a verified chain, and its deliveries with their attempts and Replay", async () => {
    const html = await page(session, `/console/conversions/acme/${acmeTx}`);
    expect(html).toMatch(new RegExp(`<h1>Conversion <code>${acmeTx}</code>`));
    expect(textOf(html, "events")).toContain("accepted");
    expect(textOf(html, "chain")).toContain("verified");
    const deliveries = textOf(html, "deliveries");
    expect(deliveries).toContain(failedA);
    expect(deliveries).toContain(deliveredA);
    expect(deliveries).toContain("upstream exploded");
    expect(html).toContain('class="attempts"');
    // Replay for the failed one only.
    expect(html).toContain(`action="/console/deliveries/${failedA}/replay"`);
    expect(html).not.toContain(`action="/console/deliveries/${deliveredA}/replay"`);
  });

  it("lists deliveries failing and dead first, filters by partner, and shows a delivery's attempts", async () => {
    const html = await page(session, "/console/deliveries");
    const table = textOf(html, "deliveries");
    expect(table.indexOf(deadB)).toBeGreaterThanOrEqual(0);
    expect(table.indexOf(deadB)).toBeLessThan(table.indexOf(failedA));
    expect(table.indexOf(failedA)).toBeLessThan(table.indexOf(deliveredA));
    const filtered = textOf(await page(session, `/console/deliveries?partner_id=${partnerB}`), "deliveries");
    expect(filtered).toContain(deadB);
    expect(filtered).not.toContain(failedA);
    const detail = await page(session, `/console/deliveries/${failedA}`);
    expect(textOf(detail, "attempts")).toContain("500");
    expect(textOf(detail, "attempts")).toContain("321 ms");
    expect(detail).toMatch(/<button[^>]*>Replay<\/button>/);
  });

  it("replays a set: the dry run counts first, the confirmation replays, each with an audit row", async () => {
    const partner = (await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("bulk")}`, filters: NOWHERE })).id;
    const ids = [
      await pendingDelivery(partner, { state: "failed", attempts: 1 }),
      await pendingDelivery(partner, { state: "dead", attempts: 1 }),
    ];
    const dry = await post(session, "/console/deliveries/replay", { partner_id: partner, states: ["failed", "dead"] });
    const dryHtml = await dry.text();
    expect(dry.status, dryHtml).toBe(200);
    expect(dryHtml).toContain('data-matched="2"');
    expect((await deliveryRow(ids[0] ?? ""))?.state).toBe("failed");
    const done = await post(session, "/console/deliveries/replay", {
      partner_id: partner,
      states: ["failed", "dead"],
      confirm: "yes",
    });
    const doneHtml = await done.text();
    expect(done.status, doneHtml).toBe(200);
    expect(doneHtml).toContain('data-replayed="2"');
    for (const id of ids) expect((await deliveryRow(id))?.state).not.toMatch(/^(failed|dead)$/);
    const audit = await auditRows("replayPartnerDeliveries", partner);
    expect(audit.map((row) => row.via)).toEqual(["console", "console"]);
  });

  it("rotates a network's secret, showing it once, and its credentials' last use", async () => {
    const network = await createNetwork(uniqueId("rot"));
    const detail = await page(session, `/console/networks/${network.id}`);
    expect(textOf(detail, "credentials")).toContain("signing");
    const response = await post(session, `/console/networks/${network.id}/rotate-secret`);
    const html = await response.text();
    expect(response.status, html).toBe(200);
    const secret = /id="new-credential"[^>]*value="([^"]+)"/.exec(html)?.[1] ?? "";
    expect(secret).toMatch(/^whsec_/);
    // Shown once: the network's page never shows it again.
    expect(await page(session, `/console/networks/${network.id}`)).not.toContain(secret);
    const audit = await auditRows("rotateNetworkSecret", network.id);
    expect(audit).toEqual([
      expect.objectContaining({ via: "console", key_id: "admin_token", scope: "admin", status: 200, method: "POST" }),
    ]);
  });

  it("disables and enables a network and a partner, as the API does, each with an audit row", async () => {
    const network = await createNetwork(uniqueId("dis"));
    expect((await post(session, `/console/networks/${network.id}/disable`)).status).toBe(200);
    expect((await env.DB.prepare("SELECT status FROM networks WHERE id = ?").bind(network.id).first())?.status).toBe(
      "disabled",
    );
    expect((await post(session, `/console/networks/${network.id}/enable`)).status).toBe(200);
    expect((await auditRows("disableNetwork", network.id)).map((r) => r.via)).toEqual(["console"]);
    expect((await auditRows("enableNetwork", network.id)).map((r) => r.via)).toEqual(["console"]);

    const partner = (await createPartner({ url_template: `${PARTNER}/ok/${uniqueId("dis")}`, filters: NOWHERE })).id;
    const page1 = await page(session, `/console/partners/${partner}`);
    expect(textOf(page1, "pace")).toContain("Breaker");
    expect((await post(session, `/console/partners/${partner}/disable`)).status).toBe(200);
    expect((await env.DB.prepare("SELECT status FROM partners WHERE id = ?").bind(partner).first())?.status).toBe(
      "disabled",
    );
    expect((await post(session, `/console/partners/${partner}/enable`)).status).toBe(200);
    expect((await auditRows("disablePartner", partner)).length).toBe(1);
    expect((await auditRows("enablePartner", partner)).length).toBe(1);
    const preview = await post(session, `/console/partners/${partner}/preview`);
    const previewHtml = await preview.text();
    expect(preview.status, previewHtml).toBe(200);
    expect(textOf(previewHtml, "preview")).toContain(`${PARTNER}/ok/`);
  });

  it("shows a network's rejected requests and why", async () => {
    const bad = await postback(acme, makePostback({ amount: "not-money" }));
    expect(bad.status).toBe(422);
    const row = await eventually(() =>
      env.DB.prepare("SELECT request_id FROM inbound_requests WHERE network_id = 'acme' AND status = 422").first<{
        request_id: string;
      }>(),
    );
    const html = await page(session, "/console/inbound?network_id=acme");
    const table = textOf(html, "inbound");
    expect(table).toContain(row.request_id);
    expect(table).toContain("validation_failed");
    expect(table).toContain("body.amount");
    // Only the rejected ones unless asked for all.
    expect(table).not.toContain("accepted");
    expect(textOf(await page(session, "/console/inbound?network_id=acme&all=1"), "inbound")).toContain("accepted");
  });
});

describe("a partner key", () => {
  let session: ConsoleSession;
  beforeAll(async () => {
    session = await signIn((await createApiKey("partner", partnerA)).key);
  });

  it("sees its own deliveries only, and no page of everything", async () => {
    const overview = await consoleFetch(session, "/console");
    expect(overview.status).toBe(303);
    expect(overview.headers.get("location")).toBe("/console/deliveries");
    const html = await page(session, `/console/deliveries?partner_id=${partnerB}`);
    const table = textOf(html, "deliveries");
    expect(table).toContain(failedA);
    expect(table).not.toContain(deadB);
    const nav = textOf(html.replace('<nav aria-label="Console">', '<nav id="console-nav">'), "console-nav");
    expect(nav).toContain("Deliveries");
    expect(nav).toContain("My partner");
    expect(nav).not.toContain("Conversions");
    expect(nav).not.toContain("Networks");
  });

  it("gets 403 on another partner's delivery, on the conversions and on another partner's page", async () => {
    for (const path of [
      `/console/deliveries/${deadB}`,
      "/console/conversions",
      `/console/conversions/acme/${acmeTx}`,
      `/console/partners/${partnerB}`,
      "/console/networks",
    ]) {
      const html = await page(session, path, 403);
      expect(html).toContain("<h1>Not allowed</h1>");
      expect(html).toMatch(/needs a key with one of these scopes: <strong>admin/);
    }
    expect(await page(session, `/console/partners/${partnerA}`)).toContain("Pace and breaker");
  });

  it("replays its own failed delivery, but not another partner's", async () => {
    const own = await pendingDelivery(partnerA, { state: "failed", attempts: 1 });
    const response = await post(session, `/console/deliveries/${own}/replay`);
    expect(response.status, await response.text()).toBe(200);
    expect((await deliveryRow(own))?.state).not.toBe("failed");
    expect(await auditRows("replayDelivery", own)).toEqual([
      expect.objectContaining({ via: "console", scope: "partner" }),
    ]);
    const refused = await post(session, `/console/deliveries/${deadB}/replay`);
    expect(refused.status).toBe(403);
    expect((await deliveryRow(deadB))?.state).toBe("dead");
  });
});

describe("a network key", () => {
  let session: ConsoleSession;
  beforeAll(async () => {
    session = await signIn((await createApiKey("network", other.id)).key);
  });

  it("sees its own conversions only, whatever it asks for", async () => {
    const html = await page(session, "/console/conversions?network_id=acme");
    const table = textOf(html, "conversions");
    expect(table).toContain(otherTx);
    expect(table).not.toContain(acmeTx);
    expect(await page(session, `/console/conversions/${other.id}/${otherTx}`)).toContain(otherTx);
    expect(await page(session, `/console/conversions/acme/${acmeTx}`, 403)).toContain("Not allowed");
  });

  it("sees its own inbound log, and no deliveries", async () => {
    expect(await page(session, `/console/inbound?network_id=${other.id}`)).toContain('id="inbound"');
    expect(await page(session, "/console/inbound?network_id=acme")).not.toContain("acme");
    expect(await page(session, "/console/deliveries", 403)).toContain("listDeliveries");
  });
});

describe("a read-only key", () => {
  let session: ConsoleSession;
  beforeAll(async () => {
    session = await signIn((await createApiKey("read-only")).key);
  });

  it("sees the pages without action buttons", async () => {
    const delivery = await page(session, `/console/deliveries/${failedA}`);
    expect(delivery).toContain('id="attempts"');
    expect(delivery).not.toMatch(/>Replay</);
    const conversion = await page(session, `/console/conversions/acme/${acmeTx}`);
    expect(conversion).not.toContain("/replay");
    const network = await page(session, `/console/networks/${other.id}`);
    expect(network).not.toMatch(/Disable network|Rotate/);
    const partner = await page(session, `/console/partners/${partnerA}`);
    expect(partner).not.toMatch(/Disable partner|Rotate|Preview/);
    // The only form it may post is signing out.
    for (const html of [delivery, conversion, network, partner]) {
      const actions = [...html.matchAll(/<form method="post" action="([^"]+)"/g)].map((m) => m[1]);
      expect(actions).toEqual(["/console/logout"]);
    }
  });

  it("has its POSTs refused with 403, and nothing done", async () => {
    const id = await pendingDelivery(partnerA, { state: "failed", attempts: 1 });
    for (const path of [
      `/console/deliveries/${id}/replay`,
      `/console/networks/${other.id}/disable`,
      `/console/networks/${other.id}/rotate-secret`,
      `/console/partners/${partnerA}/disable`,
    ]) {
      const response = await post(session, path);
      const html = await response.text();
      expect(response.status, html).toBe(403);
      expect(html).toContain("<h1>Not allowed</h1>");
    }
    expect((await deliveryRow(id))?.state).toBe("failed");
    expect((await env.DB.prepare("SELECT status FROM networks WHERE id = ?").bind(other.id).first())?.status).toBe(
      "active",
    );
    expect(await auditRows("replayDelivery", id)).toEqual([]);
  });
});

describe("an operator key", () => {
  it("may disable, but sees no rotation and may not rotate (admin only)", async () => {
    const session = await signIn((await createApiKey("operator")).key);
    const network = await createNetwork(uniqueId("op"));
    const html = await page(session, `/console/networks/${network.id}`);
    expect(html).toContain("Disable network");
    expect(html).not.toContain("Rotate");
    const refused = await post(session, `/console/networks/${network.id}/rotate-secret`);
    const body = await refused.text();
    expect(refused.status).toBe(403);
    expect(body).toContain("rotateNetworkSecret");
    expect(await auditRows("rotateNetworkSecret", network.id)).toEqual([]);
  });
});
