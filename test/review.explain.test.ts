/**
 * Review of explain's attribution step for an update: a network's status update usually carries
 * only the transaction id and the status, and the pipeline attributes the conversion as merged
 * with what was recorded (its click id, its first sighting). Explain must say the same.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { utf8 } from "../src/lib/bytes";
import { click, clickIdOf, seedOffer } from "./support/attribution";
import {
  ADMIN_TOKEN,
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
import { postbackUrl } from "./support/inbound";
import { signedHeaders } from "./support/problems";

interface Explained {
  decision: { verdict: string };
  attribution: { verdict: string; partner_id: string | null; payout?: { amount: string } | null } | null;
  partners: { partner_id: string; notified: boolean; reason: string }[];
}

describe("review: explain of a status update", () => {
  it("attributes the update as the conversion it updates, as the events consumer will", async () => {
    const network = await createNetwork();
    const alice = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("review-explain")}?tx={transaction_id}&payout={payout}`,
      routing: "attributed",
    });
    const offer = await seedOffer(network.id, {
      payouts: { default: [{ fixed: { amount: "4", currency: "USD" } }], partners: {} },
    });
    const clickId = clickIdOf(await click(`/c/${offer.id}?p=${alice.id}`));
    const tx = uniqueId("tx");
    await expectStatus(
      await postback(network, makePostback({ transaction_id: tx, click_id: clickId, status: "pending" })),
      200,
    );
    await eventually(async () => ((await conversionInD1(network.id, tx))?.attribution === "click" ? true : null));

    const raw = JSON.stringify({ transaction_id: tx, status: "approved" });
    const headers = await signedHeaders(network.secret, utf8(raw));
    headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    const response = await exports.default.fetch(
      new Request(postbackUrl(network.id, {}, "/explain"), { method: "POST", headers, body: raw }),
    );
    const explained = await expectStatus<Explained>(response, 200);
    expect(explained.decision.verdict).toBe("updated");
    expect(explained.attribution).toMatchObject({ verdict: "click", partner_id: alice.id, payout: { amount: "4.00" } });
    expect(explained.partners.find((p) => p.partner_id === alice.id)).toMatchObject({ notified: true });

    // And it is what happens.
    await expectStatus(await postback(network, { transaction_id: tx, status: "approved" }), 200);
    const row = await eventually(async () => {
      const r = await conversionInD1(network.id, tx);
      return r?.status === "approved" && r.attribution ? r : null;
    });
    expect(row).toMatchObject({ attribution: "click", attributed_partner_id: alice.id });
    void env;
  });
});
