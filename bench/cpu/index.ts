/**
 * Scenario (6) of `npm run bench`: the CPU that one JSON postback costs in verify-and-validate,
 * and what its conversion object adds to hash the event into the chain, timed inside workerd over
 * a loop of the hub's own functions (imported from src/, never copied),
 * called as `ingestPostback` calls them, on a key imported and held as the network cache holds it.
 *
 * `GET /cpu?case=<case>&n=<iterations>` runs one case n times and answers the elapsed time;
 * `GET /cpu?case=<case>&ms=<target>` first grows n until a run lasts about `ms`, then does the same.
 *
 * The clock: deployed workerd freezes Date.now() and performance.now() while JavaScript runs (a
 * Spectre mitigation) and moves them only when an I/O event is delivered; local workerd lets them
 * advance, at 1 ms resolution. So each run is bracketed by `await scheduler.wait(0)` (a timer, an
 * I/O event), and its end is read both before and after the closing timer: the reading that moved
 * is used. A clock that does not move even across a timer is an error, never a figure.
 */
import { type ChainContent, canonicalContent, chainHash } from "../../src/conversions/chain";
import { materialFields } from "../../src/conversions/lifecycle";
import { DEFAULT_AUTH, type Network } from "../../src/domain/network";
import {
  authenticateRequest,
  candidateOf,
  type IngestDeps,
  type Payload,
  validatePostback,
} from "../../src/ingest/ingest";
import { utf8 } from "../../src/lib/bytes";
import { generateSecret } from "../../src/lib/credentials";
import { importSigningKey, sign } from "../../src/lib/standard-webhooks";
import type { NetworkAuth } from "../../src/networks/network-cache";

const NETWORK_ID = "bench-cpu";
const MAX_ITERATIONS = 100_000_000;
const MAX_TARGET_MS = 5_000;
/** The hub's defaults (wrangler.toml): the loop never comes near either limit. */
const MAX_BODY_BYTES = 65_536;
const TOLERANCE_SECONDS = 300;

/**
 * A realistic postback: every common field, a numeric amount (so the exact-money reviver swaps in
 * its source text), an event time (so the calendar and clock refinements run) and two meta keys.
 */
const BODY =
  '{"transaction_id":"ord_20261127_88123","status":"approved","amount":29.90,"currency":"USD",' +
  '"event_type":"purchase","event_time":"2026-11-27T09:41:07Z","campaign_id":"camp-987",' +
  '"click_id":"clk_1f3a9c0e7b2d4a6f","user_id":"u_5521","platform":"android",' +
  '"meta":{"sub1":"spring","sub2":"banner-a"}}';

interface Fixture {
  auth: NetworkAuth;
  request: Request;
  payload: Payload;
  deps: IngestDeps;
  /** BODY's event as the conversion object chains it: an update after two earlier events. */
  chain: ChainContent;
}

/** One network with one signing key, and a request signed with it, as the hub sees them. */
async function fixture(nowMs: number): Promise<Fixture> {
  const at = new Date(nowMs).toISOString();
  const network: Network = {
    id: NETWORK_ID,
    name: "Bench CPU",
    status: "active",
    auth: { ...DEFAULT_AUTH },
    mapping: null,
    answer: null,
    test_mode: false,
    hash_identifiers: [],
    apple: null,
    created_at: at,
    updated_at: at,
  };
  const key = await importSigningKey(generateSecret());
  const auth: NetworkAuth = { network, keys: [{ id: "sec_bench", key, expiresAtMs: null }], tokens: [] };
  const body = utf8(BODY);
  const id = "msg_2f1c9a7be04d3c5a8e6b1f90";
  const timestamp = String(Math.floor(nowMs / 1000));
  // authenticate reads only the headers; the body bytes come in the payload, as readPayload makes it.
  const request = new Request(`https://hub.example/v1/postbacks/${NETWORK_ID}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": timestamp,
      "webhook-signature": await sign(key, id, timestamp, body),
    },
  });
  const deps: IngestDeps = {
    nowMs,
    maxBodyBytes: MAX_BODY_BYTES,
    toleranceSeconds: TOLERANCE_SECONDS,
    loadNetwork: async () => auth,
    refreshNetwork: async () => {
      throw new Error("the bench's own signature did not verify");
    },
    withinRateLimit: async () => true,
    noteCredentialUse: () => undefined,
    identifierKey: () => {
      throw new Error("the bench's network hashes no identifiers");
    },
    conversion: () => {
      throw new Error("the CPU bench records nothing");
    },
  };
  const payload: Payload = { kind: "json", body, params: [], fields: [] };
  const postback = validatePostback(candidateOf(auth, payload, "standard_webhooks").value);
  const chain: ChainContent = {
    network_id: NETWORK_ID,
    transaction_id: postback.transaction_id,
    test: false,
    seq: 3,
    event_id: "evt_01jd5x4m2k8c7r1q0s9t6v3w2y",
    verdict: "updated",
    received_at: at,
    event: { ...materialFields(postback), ...(postback.event_time ? { event_time: postback.event_time } : {}) },
    prev_hash: "f7c2f4bbabee2f90f654cba82448ee896050831cffaa1bc6c5a0e38d6a151772",
  };
  return { auth, request, payload, deps, chain };
}

async function verified(f: Fixture) {
  const verdict = await authenticateRequest(NETWORK_ID, f.auth, f.request, f.payload, f.deps);
  if (!verdict.result.ok) throw new Error(`the bench postback did not verify: ${verdict.result.message}`);
  return { auth: verdict.auth, method: verdict.result.method };
}

const TEXT_DECODER = new TextDecoder();

/** Every case is awaited once per iteration, so `empty` is the loop's own cost for all of them. */
const CASES = {
  empty: async () => true,
  /** A plain TextDecoder and JSON.parse of the same bytes: the least any JSON reading costs. */
  json_parse: (f: Fixture) => JSON.parse(TEXT_DECODER.decode(f.payload.body)),
  /** The hub's parseJson through candidateOf: strict UTF-8 decode, JSON with the exact-money reviver. */
  parse: (f: Fixture) => candidateOf(f.auth, f.payload, "standard_webhooks").value,
  /** parse, then the zod PostbackSchema (validatePostback). */
  validate: (f: Fixture) => validatePostback(candidateOf(f.auth, f.payload, "standard_webhooks").value),
  /** authenticateRequest: Standard Webhooks HMAC-SHA256 over the raw bytes with the cached CryptoKey. */
  verify: verified,
  /** Both, in ingestPostback's order: everything before the rate limit and the Durable Object call. */
  verify_validate: async (f: Fixture) => {
    const { auth, method } = await verified(f);
    return validatePostback(candidateOf(auth, f.payload, method).value);
  },
  /** The RFC 8785 text of one event's chain content, alone. */
  chain_canonical: (f: Fixture) => canonicalContent(f.chain),
  /** chainHash, as the conversion object computes it inside record's transaction: RFC 8785 + SHA-256 (@noble/hashes). */
  chain_hash: (f: Fixture) => chainHash(f.chain),
  /** The same digest through WebCrypto (async, so record cannot use it inside its transaction): for comparison. */
  chain_hash_webcrypto: (f: Fixture) =>
    crypto.subtle.digest("SHA-256", new TextEncoder().encode(canonicalContent(f.chain))),
} satisfies Record<string, (f: Fixture) => unknown>;
type CaseName = keyof typeof CASES;
const isCase = (name: string): name is CaseName => Object.hasOwn(CASES, name);

interface Run {
  n: number;
  elapsedMs: number;
  clock: "advances while JavaScript runs" | "advances only across I/O" | "did not advance";
  sink: unknown;
}

async function timedRun(step: (f: Fixture) => unknown, f: Fixture, n: number): Promise<Run> {
  let sink: unknown;
  await scheduler.wait(0);
  const start = performance.now();
  for (let i = 0; i < n; i++) sink = await step(f);
  const endBeforeIo = performance.now();
  await scheduler.wait(0);
  const endAfterIo = performance.now();
  if (endBeforeIo > start) return { n, elapsedMs: endBeforeIo - start, clock: "advances while JavaScript runs", sink };
  if (endAfterIo > start) return { n, elapsedMs: endAfterIo - start, clock: "advances only across I/O", sink };
  return { n, elapsedMs: 0, clock: "did not advance", sink };
}

function scaled(iterations: number, targetMs: number, elapsedMs: number): number {
  if (elapsedMs <= 0) return Math.min(MAX_ITERATIONS, iterations * 4);
  return Math.min(MAX_ITERATIONS, Math.max(1, Math.ceil((iterations * targetMs) / elapsedMs)));
}

/**
 * The step of the clock while JavaScript runs: the smallest of a few consecutive steps (one of them
 * can be stretched by a pause); null when the clock does not move at all.
 */
function clockStepMs(): number | null {
  let smallest: number | null = null;
  let last = performance.now();
  for (let steps = 0, reads = 0; steps < 5 && reads < 1_000_000; reads++) {
    const now = performance.now();
    if (now !== last) {
      smallest = smallest === null ? now - last : Math.min(smallest, now - last);
      last = now;
      steps++;
    }
  }
  return smallest;
}

async function measure(name: CaseName, n: number | null, targetMs: number): Promise<Response> {
  // The clock must at least move across a 5 ms timer, or nothing below can be timed.
  const before = performance.now();
  await scheduler.wait(5);
  if (performance.now() <= before) {
    return problem(500, "the clock did not advance across a 5 ms timer: CPU cannot be timed in this runtime");
  }
  const f = await fixture(Date.now());
  const step: (f: Fixture) => unknown = CASES[name];
  // Once untimed: a bad signature or a 422 would be a faster path than the one being measured.
  await step(f);
  let iterations = n ?? 1;
  let calibrated = false;
  if (n === null) {
    // Grow n until a run lasts an eighth of the target, then scale it to the target; the early
    // probes also warm the JIT up. A run that comes out outside half to twice the target (the JIT
    // still settling, or a noisy neighbour during a probe) is scaled again, a few times at most.
    for (;;) {
      const probe = await timedRun(step, f, iterations);
      if (probe.elapsedMs >= targetMs / 8) {
        iterations = scaled(iterations, targetMs, probe.elapsedMs);
        break;
      }
      if (iterations * 4 > MAX_ITERATIONS) break;
      iterations *= 4;
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      const check = await timedRun(step, f, iterations);
      if (check.elapsedMs >= targetMs / 2 && check.elapsedMs <= targetMs * 2) break;
      iterations = scaled(iterations, targetMs, check.elapsedMs);
    }
    calibrated = true;
  }
  const run = await timedRun(step, f, iterations);
  if (run.elapsedMs <= 0) {
    return problem(500, `the clock did not advance over ${iterations} iterations of ${name}, even across a timer`);
  }
  return Response.json({
    case: name,
    n: run.n,
    calibrated,
    elapsed_ms: run.elapsedMs,
    us_per_op: (run.elapsedMs * 1000) / run.n,
    clock: run.clock,
    clock_step_ms: clockStepMs(),
    body_bytes: f.payload.body.byteLength,
    result: typeof run.sink,
  });
}

function problem(status: number, detail: string): Response {
  return Response.json({ error: detail }, { status });
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    if (url.pathname !== "/cpu") return problem(404, "try GET /cpu?case=verify_validate&ms=200");
    const name = url.searchParams.get("case") ?? "";
    if (!isCase(name)) return problem(400, `case must be one of ${Object.keys(CASES).join(", ")}`);
    const nParam = url.searchParams.get("n");
    const n = nParam === null ? null : Number(nParam);
    if (n !== null && !(Number.isInteger(n) && n >= 1 && n <= MAX_ITERATIONS)) {
      return problem(400, `n must be an integer from 1 to ${MAX_ITERATIONS}`);
    }
    const targetMs = Number(url.searchParams.get("ms") ?? "200");
    if (!(targetMs > 0 && targetMs <= MAX_TARGET_MS)) return problem(400, `ms must be from 1 to ${MAX_TARGET_MS}`);
    try {
      return await measure(name, n, targetMs);
    } catch (error) {
      return problem(500, error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error));
    }
  },
} satisfies ExportedHandler;
