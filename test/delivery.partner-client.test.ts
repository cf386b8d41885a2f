/**
 * The partner client against fake `fetch` functions (no request leaves the test), and its
 * signatures against the official Standard Webhooks library.
 */
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import verifyingDoc from "../docs/verifying-deliveries.md?raw";
import {
  type PartnerRequest,
  type SendOptions,
  sendPartnerRequest,
  signatureHeaders,
  signedContent,
} from "../src/delivery/partner-client";
import { classify } from "../src/delivery/retry-policy";
import { randomBytes, toBase64, utf8 } from "../src/lib/bytes";
import { importSigningKey } from "../src/lib/standard-webhooks";

interface FetchCall {
  url: string;
  init: RequestInit;
}

/** A fake `fetch` that records what it was asked and answers with `respond`. */
function fakeFetch(respond: (call: FetchCall) => Response | Promise<Response>): {
  fetch: typeof fetch;
  calls: FetchCall[];
} {
  const calls: FetchCall[] = [];
  const fake: typeof fetch = async (input, init = {}) => {
    const call = { url: String(input), init };
    calls.push(call);
    return respond(call);
  };
  return { fetch: fake, calls };
}

/** Never answers; rejects like the real fetch once the caller aborts. */
const hangingFetch: typeof fetch = (_input, init) =>
  new Promise((_, reject) => {
    init?.signal?.addEventListener("abort", () => reject(new DOMException("The operation was aborted", "AbortError")));
  });

function makeRequest(overrides: Partial<PartnerRequest> = {}): PartnerRequest {
  return {
    method: "POST",
    url: "https://partner.example/postback?tid=abc",
    headers: { "x-partner-key": "k-123" },
    body: JSON.stringify({ transaction_id: "abc", status: "approved" }),
    ...overrides,
  };
}

function send(request: PartnerRequest, options: Partial<SendOptions> & Pick<SendOptions, "fetch">) {
  return sendPartnerRequest(request, { timeoutMs: 2_000, ...options });
}

/** A body served in `chunkBytes` pieces for as long as it is read, counting what was pulled. */
function endlessBody(chunkBytes: number): {
  stream: ReadableStream<Uint8Array>;
  pulls: () => number;
  cancelled: () => boolean;
} {
  let pulls = 0;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls += 1;
      controller.enqueue(utf8("x".repeat(chunkBytes)));
    },
    cancel() {
      cancelled = true;
    },
  });
  return { stream, pulls: () => pulls, cancelled: () => cancelled };
}

/** Sends `first`, then never another byte. */
function stallingBody(first: string): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) return new Promise<void>(() => {});
      sent = true;
      controller.enqueue(utf8(first));
    },
  });
}

function newSecret(): string {
  return `whsec_${toBase64(randomBytes(32))}`;
}

describe("sendPartnerRequest: the request", () => {
  it("passes method, url, headers and body through, with redirect manual and a signal", async () => {
    const { fetch, calls } = fakeFetch(() => new Response("ok"));
    const request = makeRequest();
    await send(request, { fetch });

    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call?.url).toBe(request.url);
    expect(call?.init.method).toBe("POST");
    expect(call?.init.body).toBe(request.body);
    expect(call?.init.redirect).toBe("manual");
    expect(call?.init.signal).toBeInstanceOf(AbortSignal);
    const headers = new Headers(call?.init.headers);
    expect(headers.get("x-partner-key")).toBe("k-123");
    expect(headers.get("user-agent")).toBe("postback-hub/1.0");
    expect(headers.get("content-type")).toBe("application/json");
  });

  it("keeps a partner's own user-agent and content-type", async () => {
    const { fetch, calls } = fakeFetch(() => new Response("ok"));
    await send(makeRequest({ headers: { "User-Agent": "custom/2", "Content-Type": "application/vnd.partner+json" } }), {
      fetch,
    });
    const headers = new Headers(calls[0]?.init.headers);
    expect(headers.get("user-agent")).toBe("custom/2");
    expect(headers.get("content-type")).toBe("application/vnd.partner+json");
  });

  it("sends a GET without a body or a content-type", async () => {
    const { fetch, calls } = fakeFetch(() => new Response("ok"));
    await send(makeRequest({ method: "GET", body: null }), { fetch });
    expect(calls[0]?.init.method).toBe("GET");
    expect(calls[0]?.init.body).toBeNull();
    const headers = new Headers(calls[0]?.init.headers);
    expect(headers.has("content-type")).toBe(false);
    expect(headers.get("user-agent")).toBe("postback-hub/1.0");
  });
});

describe("sendPartnerRequest: the response", () => {
  it("reports status, Retry-After, excerpt and latency", async () => {
    let clock = 1_000;
    const { fetch } = fakeFetch(() => {
      clock += 42;
      return new Response("slow down", { status: 429, headers: { "retry-after": "120" } });
    });
    const result = await send(makeRequest(), { fetch, now: () => clock });
    expect(result).toEqual({
      outcome: { kind: "response", status: 429, retryAfter: "120" },
      latencyMs: 42,
      excerpt: "slow down",
    });
  });

  it("reports a redirect as it is, without following it", async () => {
    const { fetch, calls } = fakeFetch(
      () => new Response(null, { status: 302, headers: { location: "https://elsewhere.example/" } }),
    );
    const result = await send(makeRequest(), { fetch });
    expect(result.outcome).toEqual({ kind: "response", status: 302, retryAfter: null });
    expect(classify(result.outcome)).toBe("failed");
    expect(calls).toHaveLength(1);
  });

  it("answers a null excerpt for a response without a body, and an empty one for an empty body", async () => {
    const noBody = await send(makeRequest(), { fetch: fakeFetch(() => new Response(null, { status: 204 })).fetch });
    expect(noBody.excerpt).toBeNull();
    const empty = await send(makeRequest(), { fetch: fakeFetch(() => new Response("")).fetch });
    expect(empty.excerpt).toBe("");
  });

  it("caps the excerpt of a large body at excerptBytes", async () => {
    const { fetch } = fakeFetch(() => new Response("a".repeat(100_000), { status: 500 }));
    const byDefault = await send(makeRequest(), { fetch });
    expect(byDefault.excerpt).toBe("a".repeat(1024));
    const small = await send(makeRequest(), { fetch, excerptBytes: 10 });
    expect(small.excerpt).toBe("a".repeat(10));
  });

  it("stops reading a body streamed in many chunks once the excerpt is full, and cancels the rest", async () => {
    const body = endlessBody(7);
    const { fetch } = fakeFetch(() => new Response(body.stream));
    const result = await send(makeRequest(), { fetch, excerptBytes: 100 });
    expect(result.excerpt).toBe("x".repeat(100));
    expect(body.pulls()).toBeLessThan(40);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(body.cancelled()).toBe(true);
  });

  it("drops a character cut in half by the byte cap", async () => {
    const { fetch } = fakeFetch(() => new Response("ab€"));
    const result = await send(makeRequest(), { fetch, excerptBytes: 4 });
    expect(result.excerpt).toBe("ab");
  });

  it("keeps the status and what arrived when the body errors", async () => {
    let pulled = false;
    const broken = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled) throw new Error("connection reset mid-body");
        pulled = true;
        controller.enqueue(utf8("partial"));
      },
    });
    const result = await send(makeRequest(), { fetch: fakeFetch(() => new Response(broken, { status: 503 })).fetch });
    expect(result.outcome).toEqual({ kind: "response", status: 503, retryAfter: null });
    expect(result.excerpt).toBe("partial");
  });
});

describe("sendPartnerRequest: timeouts and network errors", () => {
  const TIMEOUT_MS = 100;

  it("reports a timeout when the partner never answers", async () => {
    const started = Date.now();
    const result = await send(makeRequest(), { fetch: hangingFetch, timeoutMs: TIMEOUT_MS });
    expect(result.outcome).toEqual({ kind: "timeout" });
    expect(result.excerpt).toBeNull();
    expect(Date.now() - started).toBeLessThan(10 * TIMEOUT_MS);
  });

  it("reports a timeout even from a fetch that ignores the abort signal", async () => {
    const deaf: typeof fetch = () => new Promise(() => {});
    const result = await send(makeRequest(), { fetch: deaf, timeoutMs: TIMEOUT_MS });
    expect(result.outcome).toEqual({ kind: "timeout" });
  });

  it("bounds the excerpt read by the timeout when the body stalls after the headers", async () => {
    const { fetch } = fakeFetch(() => new Response(stallingBody("first bytes"), { status: 200 }));
    const started = Date.now();
    const result = await send(makeRequest(), { fetch, timeoutMs: TIMEOUT_MS });
    // The status arrived, so the partner has the postback: a stalled body must not turn it into a retry.
    expect(result.outcome).toEqual({ kind: "response", status: 200, retryAfter: null });
    expect(result.excerpt).toBe("first bytes");
    expect(Date.now() - started).toBeLessThan(10 * TIMEOUT_MS);
  });

  it("bounds the excerpt read by the timeout when the body trickles forever", async () => {
    const trickle = new ReadableStream<Uint8Array>({
      async pull(controller) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        controller.enqueue(utf8("."));
      },
    });
    const { fetch } = fakeFetch(() => new Response(trickle));
    const started = Date.now();
    const result = await send(makeRequest(), { fetch, timeoutMs: TIMEOUT_MS });
    expect(result.outcome).toMatchObject({ kind: "response", status: 200 });
    expect(result.excerpt?.length).toBeLessThan(1024);
    expect(Date.now() - started).toBeLessThan(10 * TIMEOUT_MS);
  });

  it("reports a thrown TypeError as a network error with its message and no stack", async () => {
    const failing: typeof fetch = async () => {
      throw new TypeError("Network connection lost.");
    };
    const result = await send(makeRequest(), { fetch: failing });
    expect(result).toMatchObject({ outcome: { kind: "network", error: "Network connection lost." }, excerpt: null });
  });

  it("keeps a network error message to one short line", async () => {
    const failing: typeof fetch = async () => {
      throw new Error(`${"x".repeat(500)}\n    at somewhere (file.js:1:1)`);
    };
    const result = await send(makeRequest(), { fetch: failing });
    expect(result.outcome).toEqual({ kind: "network", error: "x".repeat(200) });
  });

  it("reports something thrown that is not an Error", async () => {
    const failing: typeof fetch = () => Promise.reject("refused");
    const result = await send(makeRequest(), { fetch: failing });
    expect(result.outcome).toEqual({ kind: "network", error: "refused" });
  });
});

describe("signatureHeaders", () => {
  const DELIVERY_ID = "dlv_0123456789abcdefghjkmnpq";
  const nowSeconds = () => Math.floor(Date.now() / 1000);

  it("signs a POST body so that the official library verifies it", async () => {
    const secret = newSecret();
    const body = JSON.stringify({ transaction_id: "abc", amount: "12.50" });
    const headers = await signatureHeaders([await importSigningKey(secret)], DELIVERY_ID, nowSeconds(), body);

    expect(headers["webhook-id"]).toBe(DELIVERY_ID);
    expect(headers["webhook-timestamp"]).toMatch(/^\d+$/);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, headers)).toEqual({ transaction_id: "abc", amount: "12.50" });
  });

  it("signs with every key during a rotation, so either secret verifies", async () => {
    const [oldSecret, newSecret_] = [newSecret(), newSecret()];
    const keys = await Promise.all([importSigningKey(oldSecret), importSigningKey(newSecret_)]);
    const body = '{"status":"approved"}';
    const headers = await signatureHeaders(keys, DELIVERY_ID, nowSeconds(), body);

    expect(headers["webhook-signature"]?.split(" ")).toHaveLength(2);
    expect(headers["webhook-signature"]).toMatch(/^v1,\S+ v1,\S+$/);
    expect(new Webhook(oldSecret).verify(body, headers)).toEqual({ status: "approved" });
    expect(new Webhook(newSecret_).verify(body, headers)).toEqual({ status: "approved" });
    expect(() => new Webhook(newSecret()).verify(body, headers)).toThrow(/No matching signature/);
  });

  it("signs a GET over its request line: the method, then path and query as sent", async () => {
    const secret = newSecret();
    const content = signedContent("GET", new URL("https://partner.example/pb?tx=1&status=approved#top"), null);
    expect(content).toBe("GET /pb?tx=1&status=approved");
    const headers = await signatureHeaders([await importSigningKey(secret)], DELIVERY_ID, nowSeconds(), content);
    expect(new Webhook(secret).verify("GET /pb?tx=1&status=approved", headers, { jsonParse: false })).toBeUndefined();
    // A signature seen once vouches for that request only: not another query, path or method.
    for (const forged of [
      "GET /pb?tx=1&status=declined",
      "GET /pb?tx=2&status=approved",
      "GET /pb?tx=1&status=approved&amount=900",
      "GET /pb?status=approved&tx=1",
      "GET /other?tx=1&status=approved",
      "POST /pb?tx=1&status=approved",
      "",
    ]) {
      expect(() => new Webhook(secret).verify(forged, headers, { jsonParse: false }), forged).toThrow(
        /No matching signature/,
      );
    }
  });

  it("matches the test vector of docs/verifying-deliveries.md, as the official library signs it", async () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const content = signedContent("GET", new URL("https://partner.example/pb?tx=ord_1&status=approved"), null);
    const headers = await signatureHeaders([await importSigningKey(secret)], DELIVERY_ID, 1767225600, content);
    const signature = "v1,H3SkA2Z+ctTyY5F0ZLcqwJzHBpdXXvtrzdIgCYVDUn0=";
    expect(headers["webhook-signature"]).toBe(signature);
    expect(new Webhook(secret).sign(DELIVERY_ID, new Date(1767225600_000), content)).toBe(signature);
    expect(verifyingDoc).toContain(`webhook-signature: ${signature}`);
    expect(verifyingDoc).toContain(`\`webhook-id: ${DELIVERY_ID}\``);
  });

  it("signs a POST over its raw body, whatever its URL", () => {
    const body = '{"tx":"1"}';
    expect(signedContent("POST", new URL("https://partner.example/pb?tx=1"), body)).toBe(body);
    expect(signedContent("POST", new URL("https://partner.example/pb"), null)).toBe("");
  });

  it("does not verify a tampered body or another delivery id", async () => {
    const secret = newSecret();
    const headers = await signatureHeaders([await importSigningKey(secret)], DELIVERY_ID, nowSeconds(), '{"a":1}');
    expect(() => new Webhook(secret).verify('{"a":2}', headers)).toThrow(/No matching signature/);
    expect(() => new Webhook(secret).verify('{"a":1}', { ...headers, "webhook-id": "dlv_other" })).toThrow(
      /No matching signature/,
    );
  });

  it("refuses to sign without a key", async () => {
    await expect(signatureHeaders([], DELIVERY_ID, nowSeconds(), "")).rejects.toThrow(/at least one key/);
  });

  it("travels with the request: a partner verifies what it received", async () => {
    const secret = newSecret();
    const request = makeRequest({ method: "GET", body: null });
    const content = signedContent("GET", new URL(request.url), null);
    const signature = await signatureHeaders([await importSigningKey(secret)], DELIVERY_ID, nowSeconds(), content);
    const { fetch } = fakeFetch(async ({ url, init }) => {
      const received = Object.fromEntries(new Headers(init.headers));
      // What a partner's server sees on the request line: the method, and the URL without its origin.
      const requestLine = `${init.method} ${url.slice(new URL(url).origin.length)}`;
      try {
        new Webhook(secret).verify(requestLine, received, { jsonParse: false });
        return new Response("verified");
      } catch (error) {
        return new Response(String(error), { status: 401 });
      }
    });
    const result = await send({ ...request, headers: { ...request.headers, ...signature } }, { fetch });
    expect(result.excerpt).toBe("verified");
    expect(classify(result.outcome)).toBe("delivered");
  });
});
