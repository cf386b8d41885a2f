/**
 * Duplicates absorbed at the edge (src/ingest/answer-cache.ts): the isolate answers a repeat of a
 * recorded event with the object's own answer, and everything else still goes to the object. The
 * Worker runs with an env whose conversion objects count their calls.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { beforeEach, describe, expect, it } from "vitest";
import type { RecordInput, RecordResult } from "../src/domain/conversion";
import worker from "../src/index";
import { AnswerCache, cachingRecorder, isolateAnswers } from "../src/ingest/answer-cache";
import { answerFor, inputFor } from "./support/answer-cache";
import { createNetwork, makePostback, signedRequest, type TestNetwork } from "./support/helpers";

interface Calls {
  objects: number;
  limiter: number;
}

function countingEnv(calls: Calls, overrides: Partial<Record<string, string>> = {}, limit = Infinity): Env {
  return {
    ...env,
    ...overrides,
    CONVERSIONS: {
      getByName(name: string) {
        const stub = env.CONVERSIONS.getByName(name);
        return {
          record: (input: RecordInput) => {
            calls.objects++;
            return stub.record(input);
          },
        };
      },
    } as unknown as Env["CONVERSIONS"],
    INGEST_RATE_LIMITER: {
      limit: async () => ({ success: ++calls.limiter <= limit }),
    } as unknown as Env["INGEST_RATE_LIMITER"],
  };
}

async function send(
  testEnv: Env,
  network: TestNetwork,
  body: Record<string, unknown>,
  secret = network.secret,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(await signedRequest(network.id, body, secret), testEnv, ctx);
  await waitOnExecutionContext(ctx);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

beforeEach(() => isolateAnswers.clear());

describe("duplicates at the edge", () => {
  it("never answers for the object when the object matched a repeat against the current state", async () => {
    const network = await createNetwork();
    const calls: Calls = { objects: 0, limiter: 0 };
    const testEnv = countingEnv(calls);
    const pending = makePostback({ status: "pending" });
    const transaction = pending.transaction_id;
    expect((await send(testEnv, network, pending)).body.status).toBe("accepted");
    // Only the transaction and its current status: nothing new, so a duplicate of the current
    // state; but no event of this content is recorded, so the answer is not final.
    const partial = { transaction_id: transaction, status: "pending" };
    expect((await send(testEnv, network, partial)).body.status).toBe("duplicate");
    expect((await send(testEnv, network, { ...pending, status: "approved" })).body.status).toBe("updated");
    calls.objects = 0;
    // The state has moved on: the same partial postback is now stale, and the object says so.
    const again = await send(testEnv, network, partial);
    expect(calls.objects).toBe(1);
    expect(again.body.status).toBe("stale");
  });

  it("answers a recorded event's repeat itself, but not a changed one, a conflict, or the same content in live mode", async () => {
    const network = await createNetwork();
    const calls: Calls = { objects: 0, limiter: 0 };
    const testEnv = countingEnv(calls);
    const body = makePostback({ status: "approved" });
    const accepted = await send(testEnv, network, body);
    expect(accepted.body.status).toBe("accepted");
    calls.objects = 0;
    expect((await send(testEnv, network, body)).body).toEqual({ ...accepted.body, status: "duplicate" });
    expect(calls.objects).toBe(0);

    // Another amount: not the same content, so the object decides (a conflict), every time.
    const changed = { ...body, amount: "30.00" };
    expect((await send(testEnv, network, changed)).status).toBe(409);
    expect((await send(testEnv, network, changed)).status).toBe(409);
    expect(calls.objects).toBe(2);

    // The same content as a test postback is another object's: accepted there, not a duplicate.
    const asTest = await send(testEnv, network, { ...body, test: true });
    expect(asTest.body.status).toBe("accepted");
    expect(calls.objects).toBe(3);
  });

  it("still authenticates and spends the rate limit for a cached repeat", async () => {
    const network = await createNetwork();
    const calls: Calls = { objects: 0, limiter: 0 };
    const body = makePostback();
    expect((await send(countingEnv(calls), network, body)).body.status).toBe("accepted");
    expect((await send(countingEnv(calls), network, body)).body.status).toBe("duplicate");
    expect(calls).toEqual({ objects: 1, limiter: 2 });

    const forged = await send(countingEnv(calls), network, body, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    expect(forged.status).toBe(401);
    const overLimit = await send(countingEnv(calls, {}, 2), network, body);
    expect(overLimit.status).toBe(429);
    expect(calls.objects).toBe(1);
  });

  it("goes to the object for every repeat when DUPLICATE_CACHE_SECONDS is 0", async () => {
    const network = await createNetwork();
    const calls: Calls = { objects: 0, limiter: 0 };
    const testEnv = countingEnv(calls, { DUPLICATE_CACHE_SECONDS: "0" });
    const body = makePostback();
    await send(testEnv, network, body);
    expect((await send(testEnv, network, body)).body.status).toBe("duplicate");
    expect((await send(testEnv, network, body)).body.status).toBe("duplicate");
    expect(calls.objects).toBe(3);
    expect(isolateAnswers.size).toBe(0);
  });
});

describe("AnswerCache", () => {
  const answer = answerFor;
  const input = inputFor;

  function recorderAnswering(result: (input: RecordInput) => RecordResult) {
    const seen: RecordInput[] = [];
    const record = async (i: RecordInput) => {
      seen.push(i);
      return result(i);
    };
    return { seen, object: () => ({ record }) };
  }

  it("keeps an answer until its ttl or the object's window, whichever ends first", async () => {
    const cache = new AnswerCache();
    const { seen, object } = recorderAnswering((i) => ({
      ok: true,
      answer: answer(i.transaction_id),
      final_until_ms: 1_000 + 5_000,
    }));
    const at = (nowMs: number) => cachingRecorder("net:a", object, { cache, ttlMs: 60_000, nowMs });
    expect((await at(1_000).record(input("a"))).ok).toBe(true);
    expect(await at(5_999).record(input("a"))).toEqual({ ok: true, answer: { ...answer("a"), status: "duplicate" } });
    expect(seen).toHaveLength(1);
    // The object's window ended at 6,000 although the ttl had 55 s left: the object answers.
    await at(6_000).record(input("a"));
    expect(seen).toHaveLength(2);
  });

  it("caches no answer the object did not call final, and forgets the oldest beyond its size", async () => {
    const cache = new AnswerCache(2);
    const notFinal = recorderAnswering((i) => ({ ok: true, answer: answer(i.transaction_id) }));
    const recorder = (name: string, object: typeof notFinal.object) =>
      cachingRecorder(name, object, { cache, ttlMs: 60_000, nowMs: 0 });
    await recorder("net:x", notFinal.object).record(input("x"));
    await recorder("net:x", notFinal.object).record(input("x"));
    expect(notFinal.seen).toHaveLength(2);
    expect(cache.size).toBe(0);

    const final = recorderAnswering((i) => ({ ok: true, answer: answer(i.transaction_id), final_until_ms: 1e15 }));
    for (const name of ["a", "b", "c"]) await recorder(`net:${name}`, final.object).record(input(name));
    expect(cache.size).toBe(2);
    await recorder("net:a", final.object).record(input("a"));
    expect(final.seen.map((i) => i.transaction_id)).toEqual(["a", "b", "c", "a"]);
  });
});
