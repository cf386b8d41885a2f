/**
 * Fan-out through the real pipeline: ingest → ConversionObject → EVENTS → events consumer →
 * the partner's coordinator → the fake partner at https://partner.test.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import {
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  signedContentOf,
  unexpectedRequests,
  uniqueId,
} from "./support/helpers";

async function received(prefix: string, count: number) {
  return eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= count ? log : null;
  }, 20_000);
}

describe("fan-out to partners", () => {
  it("sends each accepted or updated event once to every matching partner, and nothing for the rest", async () => {
    const network = await createNetwork();
    const other = await createNetwork();
    const prefix = `/ok/${uniqueId("fanout")}`;
    const all = await createPartner({ url_template: `${PARTNER}${prefix}/all?tx={transaction_id}&s={status}` });
    const onlyPaid = await createPartner({
      url_template: `${PARTNER}${prefix}/paid?tx={transaction_id}`,
      filters: { statuses: ["paid"], networks: [network.id] },
    });
    const otherNetwork = await createPartner({
      url_template: `${PARTNER}${prefix}/other?tx={transaction_id}`,
      filters: { networks: [other.id] },
    });

    const body = makePostback({ status: "pending" });
    await expectStatus(await postback(network, body), 200);
    await expectStatus(await postback(network, body), 200); // duplicate: notifies no one
    await expectStatus(await postback(network, { transaction_id: body.transaction_id, status: "paid" }), 200);
    await expectStatus(
      await postback(network, { ...body, status: "pending", event_time: "2020-01-01T00:00:00Z" }),
      200,
    ); // stale: notifies no one
    await expectStatus(await postback(network, { ...body, status: "paid", amount: "1.00" }), 409); // conflict

    const toAll = await received(`${prefix}/all`, 2);
    const toPaid = await received(`${prefix}/paid`, 1);
    // Give any stray delivery time to show up before asserting there is none.
    await eventually(async () => ((await deliveriesOf(all.id)).every((d) => d.state === "delivered") ? true : null));
    expect(toAll.map((r) => new URL(r.url).searchParams.get("s"))).toEqual(["pending", "paid"]);
    expect(toPaid.map((r) => new URL(r.url).searchParams.get("tx"))).toEqual([String(body.transaction_id)]);
    expect(await partnerLog(`${prefix}/other`)).toEqual([]);
    expect(await deliveriesOf(otherNetwork.id)).toEqual([]);
    expect((await deliveriesOf(all.id)).map((d) => d.state)).toEqual(["delivered", "delivered"]);
    expect((await deliveriesOf(onlyPaid.id)).map((d) => d.state)).toEqual(["delivered"]);
    expect(await partnerLog(`${prefix}/all`)).toHaveLength(2);
  });

  it("signs deliveries so the standardwebhooks library verifies them, GET included", async () => {
    const network = await createNetwork();
    const prefix = `/ok/${uniqueId("signed")}`;
    const only = { networks: [network.id] };
    const getPartner = await createPartner({
      url_template: `${PARTNER}${prefix}/get?tx={transaction_id}`,
      sign: true,
      filters: only,
    });
    const postPartner = await createPartner({
      url_template: `${PARTNER}${prefix}/post`,
      method: "POST",
      sign: true,
      filters: only,
      body_template: '{"txid":"{transaction_id}","payout":{amount},"status":"{status}","sub1":"{meta.sub1}"}',
    });
    const body = makePostback({ meta: { sub1: 'a "quoted" value' } });
    await expectStatus(await postback(network, body), 200);

    const [get] = await received(`${prefix}/get`, 1);
    const [post] = await received(`${prefix}/post`, 1);
    if (!get || !post || !getPartner.signing_secret || !postPartner.signing_secret) throw new Error("missing");
    // A GET is signed over its request line as it arrived, `GET <path>?<query>`, and over nothing else:
    // not another query, not another path, not the empty payload a GET was once signed over.
    const getWebhook = new Webhook(String(getPartner.signing_secret));
    const requestLine = signedContentOf(get);
    expect(requestLine).toBe(`GET ${prefix}/get?tx=${encodeURIComponent(String(body.transaction_id))}`);
    expect(() => getWebhook.verify(requestLine, get.headers, { jsonParse: false })).not.toThrow();
    for (const forged of [requestLine.replace("?tx=", "?tx=forged-"), requestLine.replace("/get?", "/got?"), ""]) {
      expect(() => getWebhook.verify(forged, get.headers, { jsonParse: false }), forged).toThrow(
        /No matching signature/,
      );
    }
    expect(() => new Webhook(String(postPartner.signing_secret)).verify(post.body, post.headers)).not.toThrow();
    expect(() => new Webhook(String(getPartner.signing_secret)).verify(post.body, post.headers)).toThrow();
    expect(JSON.parse(post.body)).toEqual({
      txid: body.transaction_id,
      payout: 29.99,
      status: "approved",
      sub1: 'a "quoted" value',
    });
    const [delivery] = await deliveriesOf(postPartner.id);
    expect(post.headers["webhook-id"]).toBe(delivery?.id);
  });

  it("posts the conversion as JSON when a POST partner has no body template", async () => {
    const network = await createNetwork();
    const prefix = `/ok/${uniqueId("default-body")}`;
    await createPartner({ url_template: `${PARTNER}${prefix}`, method: "POST", filters: { networks: [network.id] } });
    const body = makePostback({ amount: "10.50", currency: "EUR" });
    await expectStatus(await postback(network, body), 200);
    const [request] = await received(prefix, 1);
    expect(request?.headers["content-type"]).toBe("application/json");
    expect(JSON.parse(request?.body ?? "{}")).toMatchObject({
      transaction_id: body.transaction_id,
      network_id: network.id,
      status: "approved",
      amount: "10.50",
      currency: "EUR",
      verdict: "accepted",
      attempt: 1,
    });
  });

  it("retries a failing partner on its schedule with the same webhook-id until it accepts", async () => {
    const network = await createNetwork();
    const path = `/flaky/2/${uniqueId("retry")}`;
    const partner = await createPartner({
      url_template: `${PARTNER}${path}`,
      sign: true,
      retry_schedule_seconds: [1, 1, 1],
      filters: { networks: [network.id] },
    });
    await expectStatus(await postback(network, makePostback()), 200);
    const requests = await received(path, 3);
    expect(new Set(requests.map((r) => r.headers["webhook-id"])).size).toBe(1);
    const [delivery] = await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows[0]?.state === "delivered" ? rows : null;
    }, 20_000);
    expect(delivery?.attempts).toBe(3);
  });

  it("blocks, under the hub's configuration of now, a partner saved while insecure URLs were allowed", async () => {
    // This runtime has ALLOW_INSECURE_PARTNER_URLS=false; the URL could only have been saved with it on.
    const network = await createNetwork();
    const path = `/${uniqueId("blocked")}/pb`;
    const partner = await createPartner({ url_template: `${PARTNER}/ok${path}`, filters: { networks: [network.id] } });
    await env.DB.prepare("UPDATE partners SET url_template = ? WHERE id = ?")
      .bind(`http://127.0.0.1:9${path}?tx={transaction_id}`, partner.id)
      .run();
    await expectStatus(await postback(network, makePostback()), 200);
    const [delivery] = await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows[0] && rows[0].attempts > 0 ? rows : null;
    });
    expect(delivery?.state).toBe("failed");
    const attempt = await env.DB.prepare(
      "SELECT error_class, error, outcome FROM delivery_attempts WHERE delivery_id = ?",
    )
      .bind(delivery?.id)
      .first();
    expect(attempt).toEqual({
      error_class: "blocked",
      error: expect.stringMatching(/^blocked before sending: the partner URL must use https/),
      outcome: "failed",
    });
    expect(await unexpectedRequests(path)).toEqual([]);
  });
});
