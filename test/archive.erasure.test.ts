/**
 * Erasure reaches the archive: a person's archived events and deliveries are rewritten in their
 * objects (the other conversions' members copied as they were), the old objects deleted, and the
 * conversion's chain still verifies, as it does for an erasure in D1 (docs/privacy.md).
 */
import { env } from "cloudflare:workers";
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { runArchive } from "../src/operations/archive";
import {
  admin,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  uniqueId,
} from "./support/helpers";

const DAY_MS = 86_400_000;

/** Every object's whole text, as zcat reads it. */
async function bucketText(): Promise<{ keys: string[]; text: string }> {
  const listed = await env.ARCHIVE.list();
  let text = "";
  for (const object of listed.objects) {
    const body = await env.ARCHIVE.get(object.key);
    text += gunzipSync(new Uint8Array(await (body as R2ObjectBody).arrayBuffer())).toString("utf8");
  }
  return { keys: listed.objects.map((o) => o.key).sort(), text };
}

async function history(networkId: string, transactionId: string) {
  const base = `/v1/conversions/${networkId}/${transactionId}`;
  return {
    detail: await expectStatus<{ user_id: string | null; events: { event: Record<string, unknown> }[] }>(
      await admin(base),
      200,
    ),
    deliveries: await expectStatus<{ deliveries: { id: string; attempts_log: unknown[] }[] }>(
      await admin(`${base}/deliveries`),
      200,
    ),
    proof: await expectStatus<{ verified: boolean }>(await admin(`${base}/proof`), 200),
  };
}

describe("erasure in the archive", () => {
  it("rewrites the person's archived members, keeps the others' as they were, and the chain verifies", async () => {
    const network = await createNetwork();
    const partner = await createPartner({
      url_template: `${PARTNER}/ok/${uniqueId("erase-archive")}?tx={transaction_id}&u={user_id}`,
      filters: { networks: [network.id] },
    });
    const person = uniqueId("person");
    const mine = makePostback({ user_id: person, status: "pending" });
    const theirs = makePostback({ user_id: uniqueId("other") });
    await expectStatus(await postback(network, mine), 200);
    await expectStatus(await postback(network, { transaction_id: mine.transaction_id, status: "approved" }), 200);
    await expectStatus(await postback(network, theirs), 200);
    await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 3 && rows.every((d) => d.state === "delivered") ? rows : null;
    }, 20_000);
    await runArchive({
      db: env.DB,
      bucket: env.ARCHIVE,
      nowMs: Date.now() + 40 * DAY_MS,
      archiveAfterDays: 30,
      historyRetentionDays: 400,
      // The default: the inbound log is deleted before it would be archived (archived inbound log
      // records and clicks are not erased yet: docs/archive.md).
      inboundLogRetentionDays: 30,
    });
    expect((await bucketText()).text).toContain(person);
    const theirsBefore = await history(network.id, String(theirs.transaction_id));

    const answer = await expectStatus<{ id: string; status: string }>(
      await admin("/v1/erasure", { method: "POST", body: JSON.stringify({ user_id: person }) }),
      201,
    );
    expect(answer.status).toBe("complete");
    const marker = `erased:${answer.id}`;

    const { keys, text } = await bucketText();
    expect(text).not.toContain(person);
    expect(text).toContain(marker);
    // Only the manifest's objects are left: the replaced ones are deleted.
    const manifest = await env.DB.prepare("SELECT key FROM archive_objects ORDER BY key").all<{ key: string }>();
    expect(keys).toEqual(manifest.results.map((row) => row.key).sort());
    expect(await env.DB.prepare("SELECT count(*) AS n FROM archive_garbage").first()).toEqual({ n: 0 });

    const after = await history(network.id, String(mine.transaction_id));
    expect(after.detail.user_id).toBe(marker);
    // The first event carried the user id; the update named only the transaction.
    expect(after.detail.events.map((e) => e.event.user_id)).toEqual([marker, undefined]);
    expect(after.deliveries.deliveries).toHaveLength(2);
    expect(after.proof.verified).toBe(true);
    // The other conversion in the same objects reads exactly as before.
    expect(await history(network.id, String(theirs.transaction_id))).toEqual(theirsBefore);
  });
});
