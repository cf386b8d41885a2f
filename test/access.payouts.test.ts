/**
 * A network's own key (its portal) reads its conversions without what the hub pays the credited
 * partner: beside the revenue, that is the operator's margin. The operator's keys see it.
 */
import { describe, expect, it } from "vitest";
import { createApiKey, withKey } from "./support/access";
import { click, clickIdOf, seedOffer } from "./support/attribution";
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
  uniqueId,
} from "./support/helpers";

interface Money {
  amount: string;
  currency: string;
}

interface ConversionView {
  transaction_id: string;
  attribution: { partner_id: string | null; payout: Money | null; revenue: Money | null } | null;
  events?: { payout: Money | null }[];
}

describe("a network key and the partners' payouts", () => {
  it("reads its attributed conversion, in detail and in the list, with the payout hidden; the operator sees it", async () => {
    const network = await createNetwork();
    const partner = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("pay")}?tx={transaction_id}`,
      routing: "attributed",
    });
    const offer = await seedOffer(network.id, {
      payouts: { default: [{ fixed: { amount: "4", currency: "USD" } }], partners: {} },
    });
    const clickId = clickIdOf(await click(`/c/${offer.id}?p=${partner.id}`));
    const tx = uniqueId("tx");
    await expectStatus(await postback(network, makePostback({ transaction_id: tx, click_id: clickId })), 200);
    await eventually(async () => ((await conversionInD1(network.id, tx))?.attribution ? true : null));
    const key = await createApiKey({ scope: "network", subject_id: network.id });

    const operator = await expectStatus<ConversionView>(await admin(`/v1/conversions/${network.id}/${tx}`), 200);
    expect(operator.attribution).toMatchObject({ partner_id: partner.id, payout: { amount: "4.00", currency: "USD" } });
    expect(operator.events?.[0]?.payout).toMatchObject({ amount: "4.00" });

    const own = await expectStatus<ConversionView>(await withKey(key.key, `/v1/conversions/${network.id}/${tx}`), 200);
    expect(own.attribution).toMatchObject({ partner_id: partner.id, payout: null });
    expect(own.events?.map((event) => event.payout)).toEqual([null]);

    const list = await expectStatus<{ data: ConversionView[] }>(
      await withKey(key.key, `/v1/conversions?network_id=${network.id}&transaction_id=${tx}`),
      200,
    );
    expect(list.data.map((row) => row.attribution?.payout)).toEqual([null]);
    const operatorList = await expectStatus<{ data: ConversionView[] }>(
      await admin(`/v1/conversions?network_id=${network.id}&transaction_id=${tx}`),
      200,
    );
    expect(operatorList.data[0]?.attribution?.payout).toMatchObject({ amount: "4.00" });
  });
});
