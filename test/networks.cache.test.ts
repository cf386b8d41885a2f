/**
 * The isolate cache of network keys, as another isolate sees a rotation: the admin write lands in
 * D1 without invalidating this isolate's copy.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { RecordInput } from "../src/domain/conversion";
import { PostbackSchema } from "../src/domain/postback";
import { ingestPostback } from "../src/ingest/ingest";
import { newId } from "../src/lib/bytes";
import { encryptSecret, generateSecret } from "../src/lib/credentials";
import { hmacKey } from "../src/lib/keys";
import { loadNetworkAuth, refreshNetworkAuth } from "../src/networks/network-cache";
import { rotateSecret } from "../src/storage/networks";
import { createNetwork, makePostback, signedRequest } from "./support/helpers";

function source(nowMs: number) {
  return { db: env.DB, encryptionKey: env.ENCRYPTION_KEY, ttlSeconds: 30, nowMs };
}

async function rotateBehindTheCache(networkId: string): Promise<string> {
  const secret = generateSecret();
  const id = newId("sec");
  const ciphertext = await encryptSecret(env.ENCRYPTION_KEY, id, secret);
  const now = new Date().toISOString();
  await rotateSecret(
    env.DB,
    { id, network_id: networkId, kind: "signing", ciphertext, created_at: now },
    new Date(Date.now() + 3_600_000).toISOString(),
  );
  return secret;
}

describe("network key cache", () => {
  it("serves cached keys within the TTL and re-reads after a signature failure at most every 5 s", async () => {
    const network = await createNetwork();
    const t0 = Date.now();
    expect((await loadNetworkAuth(network.id, source(t0)))?.keys).toHaveLength(1);
    await rotateBehindTheCache(network.id);

    expect((await loadNetworkAuth(network.id, source(t0 + 10_000)))?.keys).toHaveLength(1);
    expect(await refreshNetworkAuth(network.id, source(t0 + 1_000))).toBeNull();
    expect((await refreshNetworkAuth(network.id, source(t0 + 6_000)))?.keys).toHaveLength(2);
    expect((await loadNetworkAuth(network.id, source(t0 + 7_000)))?.keys).toHaveLength(2);
  });

  it("reloads after the TTL", async () => {
    const network = await createNetwork();
    const t0 = Date.now();
    await loadNetworkAuth(network.id, source(t0));
    await rotateBehindTheCache(network.id);
    expect((await loadNetworkAuth(network.id, source(t0 + 31_000)))?.keys).toHaveLength(2);
  });
});

describe("ingest after a rotation elsewhere", () => {
  it("accepts the new secret at once by refreshing the keys, and only when the signature failed", async () => {
    const network = await createNetwork();
    const t0 = Date.now();
    const stale = await loadNetworkAuth(network.id, source(t0));
    const newSecret = await rotateBehindTheCache(network.id);
    const fresh = await refreshNetworkAuth(network.id, source(t0 + 6_000));
    let refreshes = 0;
    const recorded: RecordInput[] = [];
    const deps = {
      nowMs: Date.now(),
      maxBodyBytes: 65_536,
      toleranceSeconds: 300,
      withinRateLimit: async () => true,
      noteCredentialUse: () => {},
      identifierKey: () => hmacKey(env.ENCRYPTION_KEY, "identifier-hash v1"),
      loadNetwork: async () => stale,
      refreshNetwork: async () => {
        refreshes++;
        return fresh;
      },
      conversion: () => ({
        record: async (input: RecordInput) => {
          recorded.push(input);
          return {
            ok: true as const,
            answer: {
              status: "accepted" as const,
              event_id: "evt_x",
              network_id: input.network_id,
              transaction_id: input.transaction_id,
              conversion_status: input.postback.status,
            },
          };
        },
      }),
    };
    const body = makePostback();
    const answer = await ingestPostback(network.id, await signedRequest(network.id, body, newSecret), deps);
    expect(answer.answer.status).toBe("accepted");
    expect(refreshes).toBe(1);
    expect(recorded[0]?.postback).toEqual(PostbackSchema.parse(body));

    await ingestPostback(network.id, await signedRequest(network.id, makePostback(), network.secret), deps);
    expect(refreshes).toBe(1);
  });
});
