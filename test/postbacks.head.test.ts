import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { conversionInD1, eventually, expectStatus, uniqueId } from "./support/helpers";
import {
  createInboundNetwork,
  getPostback,
  postbackUrl,
  TOKEN_ONLY,
  TRACKER_MAPPING,
  tokenOf,
} from "./support/inbound";

describe("HEAD /v1/postbacks/{network_id}", () => {
  it("answers a link checker without recording anything", async () => {
    const network = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
    const checked = uniqueId("head");
    const head = await exports.default.fetch(
      new Request(postbackUrl(network.id, { txid: checked, payout: "1.00", status: "1", token: tokenOf(network) }), {
        method: "HEAD",
      }),
    );
    expect(head.status).toBe(204);
    // A real GET afterwards lands; the HEAD's transaction never does.
    const control = uniqueId("get");
    await expectStatus(
      await getPostback(network.id, { txid: control, payout: "1.00", status: "1", token: tokenOf(network) }),
      200,
    );
    await eventually(() => conversionInD1(network.id, control));
    expect(await conversionInD1(network.id, checked)).toBeNull();
  });
});
