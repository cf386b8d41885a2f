/**
 * Trust in every verdict, against the real `wrangler dev` with independent clients (Node's fetch, a
 * signed-query sender written from docs/signed-query.md):
 * - a captured signed GET URL cannot carry a JSON body it does not cover (a forged reversal is
 *   refused, the conversion stays approved), while a body signed through pb_body_sha256 is taken;
 * - every request of a known network lands in the inbound log with its verdict, credentials
 *   redacted, readable by the operator and by the network itself with its own token; requests to
 *   unknown networks and those over the per-isolate cap are counted, not stored.
 */
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bodyDigest, signUrl } from "./signed-query-sender";
import { adminRequest, expectStatus, pollUntil } from "./support";
import { startWranglerDev, type WranglerDev } from "./wrangler-dev";

/** Small enough to exceed in a test: records of unauthenticated requests per network, minute and isolate. */
const LOG_CAP = 6;
const WAIT_MS = 30_000;

interface Network {
  id: string;
  secret: string;
  token: string;
}

interface LoggedRequest {
  request_id: string;
  route: string;
  status: number;
  verdict: string;
  auth_method: string | null;
  transaction_id: string | null;
  errors: { location: string; message: string }[];
  excerpt: { query: string | null; headers: Record<string, string>; body: string | null };
}

interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

let hub: WranglerDev;

beforeAll(async () => {
  hub = await startWranglerDev({
    vars: { INBOUND_LOG_UNAUTHENTICATED_PER_MINUTE: String(LOG_CAP) },
    label: "e2e-inbound",
  });
});

afterAll(async () => {
  await hub?.stop();
});

function admin(route: string, init: RequestInit = {}): Promise<Response> {
  return adminRequest(hub, route, init);
}

async function createNetwork(): Promise<Network> {
  const id = `e2e-in-${randomUUID().slice(0, 8)}`;
  const created = await expectStatus<{ secret: string; token: string }>(
    await admin("/v1/networks", {
      method: "POST",
      body: JSON.stringify({
        id,
        name: "E2E Inbound",
        auth: { methods: ["signed_query", "token"], ip_allowlist: [] },
        mapping: { preset: "generic", status_values: { "1": "approved" }, default_currency: "USD" },
      }),
    }),
    201,
  );
  return { id, secret: created.secret, token: created.token };
}

function postbackUrl(networkId: string, query: string, suffix = ""): string {
  return `${hub.baseUrl}/v1/postbacks/${networkId}${suffix}?${query}`;
}

async function conversionStatus(networkId: string, transactionId: string): Promise<string | null> {
  const response = await admin(`/v1/conversions/${networkId}/${encodeURIComponent(transactionId)}`);
  if (response.status === 404) return null;
  return (await expectStatus<{ status: string }>(response, 200)).status;
}

async function settled<T>(what: string, probe: () => Promise<T>, ready: (value: T) => boolean): Promise<T> {
  const result = await pollUntil(probe, ready, WAIT_MS);
  expect(result.ready, `${what}: last value ${JSON.stringify(result.value)}\n${hub.log().slice(-4000)}`).toBe(true);
  return result.value;
}

async function logOf(networkId: string): Promise<LoggedRequest[]> {
  return (await expectStatus<Page<LoggedRequest>>(await admin(`/v1/networks/${networkId}/requests?limit=200`), 200))
    .data;
}

describe("a signed query authenticates only what it signs (real wrangler dev)", () => {
  it("refuses a forged reversal riding on a captured signed URL, and takes a body signed by its digest", async () => {
    const network = await createNetwork();
    const txid = `ord-${randomUUID()}`;
    const captured = signUrl(
      postbackUrl(network.id, `transaction_id=${txid}&amount=40.00&status=1`),
      network.secret,
      randomUUID(),
    );
    const fired = await expectStatus<{ status: string }>(await fetch(captured), 200);
    expect(fired.status).toBe("accepted");
    await settled(
      "the conversion",
      () => conversionStatus(network.id, txid),
      (status) => status === "approved",
    );

    // An attacker who saw the URL replays it as a POST with a body of their own.
    const forged = await fetch(captured, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ transaction_id: txid, status: "reversed" }),
    });
    const problem = await expectStatus<{ code: string; errors: { location: string }[] }>(forged, 401);
    expect(problem).toMatchObject({ code: "unauthorized", errors: [{ location: "query.pb_body_sha256" }] });
    const batch = await fetch(captured.replace(`/v1/postbacks/${network.id}?`, `/v1/postbacks/${network.id}/batch?`), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ events: [{ transaction_id: txid, status: "reversed" }] }),
    });
    expect(batch.status).toBe(401);

    // The network's own reversal, its JSON body covered by a signed pb_body_sha256.
    const reversal = JSON.stringify({ transaction_id: txid, status: "reversed" });
    const signed = signUrl(
      postbackUrl(network.id, `pb_body_sha256=${bodyDigest(reversal)}`),
      network.secret,
      randomUUID(),
    );
    const accepted = await fetch(signed, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: reversal,
    });
    expect((await expectStatus<{ status: string }>(accepted, 200)).status).toBe("updated");
    await settled(
      "the reversal",
      () => conversionStatus(network.id, txid),
      (status) => status === "reversed",
    );
    // The signed URL replayed with another body: its digest no longer matches.
    const swapped = await fetch(signed, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ transaction_id: `ord-${randomUUID()}`, status: "approved" }),
    });
    const mismatch = await expectStatus<{ errors: { location: string; message: string }[] }>(swapped, 401);
    expect(mismatch.errors).toEqual([
      { location: "query.pb_body_sha256", message: expect.stringContaining("is not the SHA-256 of the body") },
    ]);
  });
});

describe("the inbound request log (real wrangler dev)", () => {
  it("records accepted and rejected requests with their verdicts, redacted, for the operator and the network", async () => {
    const network = await createNetwork();
    const txid = `ord-${randomUUID()}`;
    const accepted = await fetch(postbackUrl(network.id, `transaction_id=${txid}&amount=5.00&token=${network.token}`));
    await expectStatus(accepted, 200);
    const wrongToken = await fetch(postbackUrl(network.id, `transaction_id=${txid}&token=pbt_not-the-token`));
    const rejection = await expectStatus<{ request_id: string }>(wrongToken, 401);
    const invalid = await fetch(postbackUrl(network.id, `transaction_id=&token=${network.token}`));
    await expectStatus(invalid, 422);

    const entries = await settled(
      "three log entries",
      () => logOf(network.id),
      (log) => log.length >= 3,
    );
    expect(entries.map((entry) => [entry.status, entry.verdict])).toEqual([
      [422, "validation_failed"],
      [401, "unauthorized"],
      [200, "accepted"],
    ]);
    expect(entries[1]).toMatchObject({
      request_id: rejection.request_id,
      errors: [{ location: "query.token" }],
      auth_method: null,
    });
    expect(entries[2]).toMatchObject({ auth_method: "token", transaction_id: txid });
    expect(JSON.stringify(entries)).not.toContain(network.token);
    expect(entries[2]?.excerpt.query).toContain("token=%28redacted%29");

    // The network asks "why was my postback rejected?" with its own token.
    const own = await expectStatus<Page<LoggedRequest>>(
      await fetch(postbackUrl(network.id, `status=401&token=${network.token}`, "/requests")),
      200,
    );
    expect(own.data.map((entry) => entry.request_id)).toEqual([rejection.request_id]);
    // Another network's token reads nothing of it.
    const other = await createNetwork();
    expect((await fetch(postbackUrl(network.id, `token=${other.token}`, "/requests"))).status).toBe(401);

    // With a signed query the read is signed for the log alone: it cannot post, and a signed postback cannot read.
    const read = signUrl(
      postbackUrl(network.id, `transaction_id=${txid}&pb_scope=requests`, "/requests"),
      network.secret,
      randomUUID(),
    );
    const signedRead = await expectStatus<Page<LoggedRequest>>(await fetch(read), 200);
    expect(signedRead.data.every((entry) => entry.transaction_id === txid)).toBe(true);
    const posted = await fetch(read.replace(`/v1/postbacks/${network.id}/requests?`, `/v1/postbacks/${network.id}?`));
    expect(await expectStatus<{ errors: { location: string }[] }>(posted, 401)).toMatchObject({
      errors: [{ location: "query.pb_scope" }],
    });
    const postbackUrlSigned = signUrl(
      postbackUrl(network.id, `transaction_id=${txid}&amount=5.00`),
      network.secret,
      randomUUID(),
    );
    const readWithPostback = await fetch(
      postbackUrlSigned.replace(`/v1/postbacks/${network.id}?`, `/v1/postbacks/${network.id}/requests?`),
    );
    expect(readWithPostback.status).toBe(401);
  });

  it("counts requests to unknown networks and those over the per-isolate cap, and stores neither", async () => {
    const unknown = `nobody-${randomUUID().slice(0, 8)}`;
    for (let i = 0; i < 3; i++) expect((await fetch(postbackUrl(unknown, "transaction_id=t"))).status).toBe(404);
    const minute = new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString();
    const network = await createNetwork();
    const flood = LOG_CAP + 4;
    for (let i = 0; i < flood; i++) {
      expect((await fetch(postbackUrl(network.id, `transaction_id=t${i}&token=wrong`))).status).toBe(401);
    }
    if (new Date(Math.floor(Date.now() / 60_000) * 60_000).toISOString() !== minute) return; // the cap restarted

    const counts = await settled(
      "the unlogged counts",
      async () =>
        (
          await expectStatus<Page<{ network_id: string | null; minute: string; requests: number }>>(
            await admin(`/v1/requests/unlogged?since=${encodeURIComponent(minute)}`),
            200,
          )
        ).data,
      (rows) =>
        rows.some((row) => row.network_id === network.id && row.requests === flood - LOG_CAP) &&
        rows.some((row) => row.network_id === null && row.requests >= 3),
    );
    expect(counts.find((row) => row.network_id === network.id)?.minute).toBe(minute);
    expect(await logOf(network.id)).toHaveLength(LOG_CAP);
    expect((await admin(`/v1/networks/${unknown}/requests`)).status).toBe(200);
    expect(await logOf(unknown)).toEqual([]);
  });
});
