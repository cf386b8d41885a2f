/**
 * Fuzzing with fast-check against the real server: malformed JSON, wrong types, huge strings,
 * deeply nested JSON, random headers and signatures, random query strings on GET postbacks. Only
 * 4xx, never a 5xx, nothing stored (the network's conversion count is exactly the control's 1 once
 * the control lands), and /health keeps answering.
 */
import { randomUUID } from "node:crypto";
import fc from "fast-check";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  conversions,
  createNetwork,
  type Hub,
  makePostback,
  type Network,
  pollUntil,
  postSigned,
  report,
  scaled,
  startHub,
} from "./harness";

const RUNS = scaled(200, 50);
const STATUSES = ["pending", "approved", "paid", "declined", "reversed"];

let hub: Hub;
let signed: Network;
let tokened: Network;

beforeAll(async () => {
  hub = await startHub();
  signed = await createNetwork(hub, "fuzz");
  tokened = await createNetwork(hub, "fuzzget", { auth: { methods: ["token"] }, mapping: { preset: "keitaro" } });
  if (tokened.token === undefined) throw new Error("a token network came back without a token");
});

afterAll(async () => {
  await hub?.stop();
});

interface FuzzRequest {
  kind: string;
  network: Network;
  method: "GET" | "POST";
  query: string;
  headers: Record<string, string>;
  body?: string;
}

const printable = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) });

function sign(secret: string, payload: string): Record<string, string> {
  const msgId = `msg_${randomUUID()}`;
  const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
  return {
    "webhook-id": msgId,
    "webhook-timestamp": String(timestamp.getTime() / 1000),
    "webhook-signature": new Webhook(secret).sign(msgId, timestamp, payload),
  };
}

/** A JSON body, validly signed, that can never be a valid postback. */
const signedBody = (kind: string, body: fc.Arbitrary<string>): fc.Arbitrary<FuzzRequest> =>
  body.map((payload) => ({
    kind,
    network: signed,
    method: "POST" as const,
    query: "",
    headers: { "content-type": "application/json", ...sign(signed.secret, payload) },
    body: payload,
  }));

const badStatus = fc.anything().filter((v) => !(typeof v === "string" && STATUSES.includes(v.trim().toLowerCase())));

const requests: fc.Arbitrary<FuzzRequest> = fc.oneof(
  signedBody(
    "malformed json",
    printable.map((s) => `{${s}`),
  ),
  signedBody(
    "any json",
    fc.jsonValue().map((v) => JSON.stringify(v) ?? "null"),
  ),
  signedBody(
    "wrong types",
    fc
      .record({
        transaction_id: fc.anything(),
        status: badStatus,
        amount: fc.anything(),
        currency: fc.anything(),
        event_time: fc.anything(),
        meta: fc.anything(),
      })
      .map((v) => JSON.stringify(v)),
  ),
  signedBody(
    "huge string",
    fc
      .integer({ min: 10_000, max: 2_000_000 })
      .map((n) => JSON.stringify(makePostback("x".repeat(n), { status: "nope" }))),
  ),
  signedBody(
    "huge valid-looking",
    fc.integer({ min: 1_000, max: 200_000 }).map((n) => JSON.stringify(makePostback(`tx-${"y".repeat(n)}`))),
  ),
  signedBody(
    "deep nesting",
    fc
      .integer({ min: 100, max: 50_000 })
      .map((n) => `{"transaction_id":"deep","status":"approved","meta":${"[".repeat(n)}${"]".repeat(n)}}`),
  ),
  fc
    .record({ id: printable, ts: printable, sig: printable, ct: fc.constantFrom("application/json", "text/plain", "") })
    .map(({ id, ts, sig, ct }) => ({
      kind: "random signature headers",
      network: signed,
      method: "POST" as const,
      query: "",
      headers: { "content-type": ct, "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig },
      body: JSON.stringify(makePostback(`tx-${randomUUID()}`)),
    })),
  fc.record({ key: printable, value: printable, withToken: fc.boolean() }).map(({ key, value, withToken }) => {
    // Never a tid (so never a postback), or a tid with a status no mapping knows.
    const params = new URLSearchParams({ [`x_${key}`]: value });
    if (withToken) params.set("tid", `tx-${randomUUID()}`);
    if (withToken) params.set("status", `bogus-${value}`);
    if (withToken) params.set("token", tokened.token ?? "");
    else params.set("token", `pbt_${value}`);
    return { kind: "random query", network: tokened, method: "GET" as const, query: `?${params}`, headers: {} };
  }),
  fc.array(fc.tuple(printable, printable), { maxLength: 8 }).map((pairs) => ({
    kind: "random query with token, no tid",
    network: tokened,
    method: "GET" as const,
    query: `?${new URLSearchParams([...pairs.map(([k, v]) => [`q_${k}`, v] as [string, string]), ["token", tokened.token ?? ""]])}`,
    headers: {},
  })),
);

it("answers every malformed request with a 4xx, stores none of them, and keeps serving", async () => {
  const started = Date.now();
  const byStatus: Record<string, number> = {};
  const failures: string[] = [];
  let sent = 0;
  let healthChecks = 0;
  await fc.assert(
    fc.asyncProperty(requests, async (request) => {
      sent++;
      let status = 0;
      let text = "";
      try {
        const response = await fetch(`${hub.baseUrl}/v1/postbacks/${request.network.id}${request.query}`, {
          method: request.method,
          headers: request.headers,
          body: request.body,
          signal: AbortSignal.timeout(30_000),
        });
        status = response.status;
        text = await response.text();
      } catch (error) {
        text = String(error);
      }
      byStatus[`${request.kind} ${status}`] = (byStatus[`${request.kind} ${status}`] ?? 0) + 1;
      if (status < 400 || status >= 500) failures.push(`${request.kind}: ${status} ${text.slice(0, 200)}`);
      if (sent % 25 === 0) {
        healthChecks++;
        const health = await fetch(`${hub.baseUrl}/health`, { signal: AbortSignal.timeout(10_000) });
        await health.text();
        if (health.status !== 200) failures.push(`health: ${health.status}`);
      }
      return status >= 400 && status < 500;
    }),
    { numRuns: RUNS, endOnFailure: true },
  );

  // Nothing stored: a control postback lands, then the network holds exactly that one conversion.
  const control = await postSigned(hub, signed, makePostback(`control-${randomUUID()}`));
  const stored = await pollUntil(
    async () => [...(await conversions(hub, signed.id)), ...(await conversions(hub, tokened.id))],
    (rows) => rows.some((r) => r.transaction_id === control.answer?.transaction_id),
    60_000,
  );
  const health = await fetch(`${hub.baseUrl}/health`);
  await health.text();
  const counts = {
    sent,
    acknowledged: control.status === 200 ? 1 : 0,
    stored: stored.value.length,
    delivered: 0,
    lost: stored.ready ? 0 : 1,
    fuzz_stored: stored.value.filter((r) => r.transaction_id !== control.answer?.transaction_id).length,
    non_4xx: failures.length,
    health_checks: healthChecks + 1,
  };
  report("fuzzing", counts, Date.now() - started);
  console.log("answers by kind:", byStatus);

  expect(failures).toEqual([]);
  expect(control.status).toBe(200);
  expect(stored.ready).toBe(true);
  expect(counts.fuzz_stored).toBe(0);
  expect(health.status).toBe(200);
});
