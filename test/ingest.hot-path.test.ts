/**
 * The hot-path budget (docs/architecture.md): in steady state, one ingest request for a known
 * network makes exactly one Durable Object call and no D1 query, queue send or outbound fetch
 * before answering; its inbound log record is sent after the answer.
 * The Worker runs here with an env whose bindings count every use.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { isolateAnswers } from "../src/ingest/answer-cache";
import {
  admin,
  createNetwork,
  expectStatus,
  makePostback,
  signedRequest,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";

interface Counts {
  d1: number;
  queue: number;
  /** Sends of the inbound log, which must all happen after the answer. */
  requestLog: number;
  objectStubs: number;
  objectCalls: number;
  fetch: number;
}

const zero = (): Counts => ({ d1: 0, queue: 0, requestLog: 0, objectStubs: 0, objectCalls: 0, fetch: 0 });

function countingEnv(counts: Counts): Env {
  const countCalls = <T extends object>(target: T, key: keyof Counts): T =>
    new Proxy(target, {
      get(object, property) {
        const value = Reflect.get(object, property);
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          counts[key]++;
          return value.apply(object, args);
        };
      },
    });
  const conversions = {
    getByName(name: string) {
      counts.objectStubs++;
      const stub = env.CONVERSIONS.getByName(name);
      return {
        record: (input: Parameters<typeof stub.record>[0]) => {
          counts.objectCalls++;
          return stub.record(input);
        },
      };
    },
  };
  return {
    ...env,
    DB: countCalls(env.DB, "d1"),
    EVENTS: countCalls(env.EVENTS, "queue"),
    REQUEST_LOG: countCalls(env.REQUEST_LOG, "requestLog"),
    CONVERSIONS: conversions as unknown as Env["CONVERSIONS"],
  };
}

/** Ingests one postback; `beforeAnswer` gets a copy of the counts as they were when the answer came. */
async function ingestWith(
  testEnv: Env,
  counts: Counts,
  network: TestNetwork,
  body: Record<string, unknown>,
  beforeAnswer: Counts[] = [],
) {
  const ctx = createExecutionContext();
  const response = await worker.fetch(await signedRequest(network.id, body, network.secret), testEnv, ctx);
  beforeAnswer.push({ ...counts });
  const answer = await expectStatus<{ status: string }>(response, 200);
  await waitOnExecutionContext(ctx);
  return answer;
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("ingest hot path", () => {
  it("costs one Durable Object call and nothing else for a known network", async () => {
    const network = await createNetwork();
    const counts = zero();
    const testEnv = countingEnv(counts);
    const fetchSpy = vi.spyOn(globalThis, "fetch");

    // The first request for the network loads its configuration and keys from D1 once.
    await ingestWith(testEnv, counts, network, makePostback());
    expect(counts.d1).toBeGreaterThan(0);

    Object.assign(counts, zero());
    const body = makePostback();
    const atAnswer: Counts[] = [];
    expect((await ingestWith(testEnv, counts, network, body, atAnswer)).status).toBe("accepted");
    expect(atAnswer[0]).toEqual({ ...zero(), objectStubs: 1, objectCalls: 1 });
    // A repeat of the recorded event is answered by the isolate (docs/architecture.md, duplicates
    // at the edge): the object's own answer, with no object call, not even a stub.
    const repeat = await ingestWith(testEnv, counts, network, body, atAnswer);
    expect(repeat.status).toBe("duplicate");
    expect(atAnswer[1]).toEqual({ ...zero(), requestLog: 1, objectStubs: 1, objectCalls: 1 });
    // After the answers, and only then, each request's inbound log record was sent.
    expect(counts).toEqual({ ...zero(), requestLog: 2, objectStubs: 1, objectCalls: 1 });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("answers a cached repeat with the object's own answer, and a repeat on a cold isolate from the object", async () => {
    const network = await createNetwork();
    const counts = zero();
    const testEnv = countingEnv(counts);
    const body = makePostback();
    const first = await ingestWith(testEnv, counts, network, body);
    expect(first.status).toBe("accepted");
    isolateAnswers.clear();
    Object.assign(counts, zero());
    // The cache is empty (another isolate, or after a restart): the object answers, and says the
    // answer is final, so the next repeat is the isolate's.
    const fromObject = await ingestWith(testEnv, counts, network, body);
    expect(counts.objectCalls).toBe(1);
    const fromCache = await ingestWith(testEnv, counts, network, body);
    expect(counts.objectCalls).toBe(1);
    expect(fromObject).toEqual({ ...first, status: "duplicate" });
    expect(fromCache).toEqual(fromObject);
  });

  it("costs the same for a network that hashes identifiers: hashing is CPU only", async () => {
    const network = await createNetwork();
    await expectStatus(
      await admin(`/v1/networks/${network.id}`, {
        method: "PATCH",
        body: JSON.stringify({ hash_identifiers: ["user_id", "device_id"] }),
      }),
      200,
    );
    const counts = zero();
    const testEnv = countingEnv(counts);
    const fetchSpy = vi.spyOn(globalThis, "fetch");
    const identified = () => makePostback({ user_id: uniqueId("person"), device_id: uniqueId("device") });
    await ingestWith(testEnv, counts, network, identified());

    Object.assign(counts, zero());
    const atAnswer: Counts[] = [];
    expect((await ingestWith(testEnv, counts, network, identified(), atAnswer)).status).toBe("accepted");
    expect(atAnswer[0]).toEqual({ ...zero(), objectStubs: 1, objectCalls: 1 });
    expect(counts).toEqual({ ...zero(), requestLog: 1, objectStubs: 1, objectCalls: 1 });
    expect(fetchSpy).not.toHaveBeenCalled();
  });

  it("rejects an unknown network without touching D1 twice", async () => {
    const counts = zero();
    const testEnv = countingEnv(counts);
    const request = () =>
      new Request("https://hub.test/v1/postbacks/no-such-network-x", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
    expect((await worker.fetch(request(), testEnv, createExecutionContext())).status).toBe(404);
    const afterFirst = counts.d1;
    expect((await worker.fetch(request(), testEnv, createExecutionContext())).status).toBe(404);
    expect(counts.d1).toBe(afterFirst);
    expect(counts.objectCalls).toBe(0);
  });
});
