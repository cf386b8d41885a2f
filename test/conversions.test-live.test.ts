/**
 * Test and live traffic never share state: a test postback has its own Durable Object, D1 row and
 * deliveries, so nothing it does can block, change or hide the live conversion with the same
 * transaction id (docs/architecture.md, "Test and live never share state").
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { conversionObjectName, TEST_OBJECT_PREFIX } from "../src/domain/conversion";
import { NETWORK_ID_PATTERN } from "../src/domain/network";
import {
  ADMIN_TOKEN,
  admin,
  conversionInD1,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  signedRequest,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";

interface Answer {
  status: string;
  event_id: string;
  conversion_status: string;
}

interface Conversion {
  transaction_id: string;
  status: string;
  amount: string | null;
  test: boolean;
  events: { event_id: string; status: string; test: boolean }[];
}

/** A signed postback marks itself as a test inside its signed body. */
async function send(network: TestNetwork, body: Record<string, unknown>, test = false, expected = 200) {
  return expectStatus<Answer>(await postback(network, test ? { ...body, test: true } : body), expected);
}

/** Waits until D1 holds the transaction's conversion of that world with `status`. */
function storedWith(network: TestNetwork, transactionId: string, test: boolean, status: string) {
  return eventually(async () => {
    const row = await conversionInD1(network.id, transactionId, test);
    return row?.status === status ? row : null;
  });
}

async function listed(network: TestNetwork, test: boolean): Promise<{ transaction_id: string; status: string }[]> {
  const page = await expectStatus<{ data: { transaction_id: string; status: string; test: boolean }[] }>(
    await admin(`/v1/conversions?network_id=${network.id}&test=${test}&limit=200`),
    200,
  );
  expect(page.data.every((c) => c.test === test)).toBe(true);
  return page.data.map(({ transaction_id, status }) => ({ transaction_id, status }));
}

describe("object names", () => {
  it("gives a test postback its own object, whose name no live name can take", () => {
    expect(conversionObjectName("acme", "tx-1", false)).toBe("acme:tx-1");
    expect(conversionObjectName("acme", "tx-1", true)).toBe(`${TEST_OBJECT_PREFIX}acme:tx-1`);
    // Transaction ids may hold ':', but a live name starts with a network id, which never has '~'.
    expect(NETWORK_ID_PATTERN.test(TEST_OBJECT_PREFIX.slice(0, 2))).toBe(false);
    expect(conversionObjectName("acme", "~test:acme:tx-1", false)).not.toBe(conversionObjectName("acme", "tx-1", true));
    for (const id of ["~test", "~test:acme", "~a"]) expect(NETWORK_ID_PATTERN.test(id)).toBe(false);
  });
});

describe("a test postback for a live transaction", () => {
  it("reverses only the test conversion: the live one stays approved and listed with ?test=false", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    const transactionId = String(body.transaction_id);
    const live = await send(network, body);
    await storedWith(network, transactionId, false, "approved");

    const reversal = await send(network, { transaction_id: transactionId, status: "reversed" }, true);
    // The test world has never heard of the transaction: a new (test) conversion.
    expect(reversal).toMatchObject({ status: "accepted", conversion_status: "reversed" });
    await storedWith(network, transactionId, true, "reversed");

    expect(await conversionInD1(network.id, transactionId, false)).toMatchObject({ status: "approved", test: 0 });
    expect(await listed(network, false)).toEqual([{ transaction_id: transactionId, status: "approved" }]);
    expect(await listed(network, true)).toEqual([{ transaction_id: transactionId, status: "reversed" }]);

    const liveDetail = await expectStatus<Conversion>(
      await admin(`/v1/conversions/${network.id}/${transactionId}`),
      200,
    );
    expect(liveDetail).toMatchObject({ status: "approved", test: false });
    expect(liveDetail.events.map((e) => [e.event_id, e.status, e.test])).toEqual([[live.event_id, "approved", false]]);
    const testDetail = await expectStatus<Conversion>(
      await admin(`/v1/conversions/${network.id}/${transactionId}?test=true`),
      200,
    );
    expect(testDetail).toMatchObject({ status: "reversed", test: true });
    expect(testDetail.events.map((e) => [e.event_id, e.status, e.test])).toEqual([
      [reversal.event_id, "reversed", true],
    ]);
  });

  it("cannot make a live postback a conflict: a test one with another amount does not block it", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved", amount: "10.00" });
    await send(network, body, true);
    const live = await send(network, { ...body, amount: "20.00" });
    expect(live).toMatchObject({ status: "accepted", conversion_status: "approved" });
    expect((await storedWith(network, String(body.transaction_id), false, "approved")).amount).toBe("20.00");
    expect((await conversionInD1(network.id, String(body.transaction_id), true))?.amount).toBe("10.00");
  });

  it("does not make an identical live postback a duplicate: it is accepted and reaches the live partner", async () => {
    const network = await createNetwork();
    const prefix = `/ok/${uniqueId("test-live")}`;
    const only = { networks: [network.id] };
    const liveOnly = await createPartner({
      url_template: `${PARTNER}${prefix}/live?tx={transaction_id}&test={test}`,
      filters: only,
    });
    const takesTests = await createPartner({
      url_template: `${PARTNER}${prefix}/tests?tx={transaction_id}&test={test}`,
      filters: only,
      receives_test_traffic: true,
    });
    const body = makePostback();

    const trial = await send(network, body, true);
    expect(trial.status).toBe("accepted");
    await eventually(async () => ((await partnerLog(`${prefix}/tests`)).length >= 1 ? true : null), 20_000);

    const real = await send(network, body);
    expect(real.status).toBe("accepted");
    expect(real.event_id).not.toBe(trial.event_id);
    const toLive = await eventually(async () => {
      const log = await partnerLog(`${prefix}/live`);
      return log.length >= 1 ? log : null;
    }, 20_000);
    await eventually(async () => ((await partnerLog(`${prefix}/tests`)).length >= 2 ? true : null), 20_000);
    expect(toLive.map((r) => Object.fromEntries(new URL(r.url).searchParams))).toEqual([
      { tx: body.transaction_id, test: "false" },
    ]);
    expect((await partnerLog(`${prefix}/tests`)).map((r) => new URL(r.url).searchParams.get("test"))).toEqual([
      "true",
      "false",
    ]);
    expect((await deliveriesOf(liveOnly.id)).map((d) => d.event_id)).toEqual([real.event_id]);
    expect((await deliveriesOf(takesTests.id)).map((d) => d.event_id).sort()).toEqual(
      [trial.event_id, real.event_id].sort(),
    );
  });

  it("is decided by explain against the test conversion, not the live one", async () => {
    const network = await createNetwork();
    const body = makePostback({ status: "approved" });
    await send(network, body);
    const raw = JSON.stringify({ transaction_id: body.transaction_id, status: "pending", test: true });
    const request = await signedRequest(network.id, raw, network.secret);
    const explain = new Request(`${request.url}/explain`, { method: "POST", headers: request.headers, body: raw });
    explain.headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    const explanation = await expectStatus<{ test: boolean; decision: unknown }>(
      await exports.default.fetch(explain),
      200,
    );
    expect(explanation.test).toBe(true);
    expect(explanation.decision).toEqual({
      verdict: "accepted",
      current_status: null,
      conversion_status: "pending",
      errors: [],
    });
  });

  it("empties the test object's outbox: D1's receipt goes to the object that recorded the event", async () => {
    const network = await createNetwork();
    const body = makePostback();
    await send(network, body, true);
    const transactionId = String(body.transaction_id);
    await storedWith(network, transactionId, true, "approved");
    const testObject = env.CONVERSIONS.getByName(conversionObjectName(network.id, transactionId, true));
    await eventually(async () => ((await testObject.inspect()).outbox === 0 ? true : null));
    const liveObject = env.CONVERSIONS.getByName(conversionObjectName(network.id, transactionId, false));
    expect(await liveObject.inspect()).toMatchObject({ state: null, events: 0, outbox: 0 });
  });
});

describe("GET /v1/conversions/{network_id}/{transaction_id}", () => {
  it("serves the live conversion by default and hints at ?test=true when only a test one exists", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    await send(network, body, true);
    await storedWith(network, transactionId, true, "approved");

    const problem = await expectStatus<{
      code: string;
      detail: string;
      errors: { location: string; message: string }[];
    }>(await admin(`/v1/conversions/${network.id}/${transactionId}`), 404);
    expect(problem.code).toBe("not_found");
    expect(problem.detail).toContain("?test=true");
    expect(problem.errors).toEqual([
      { location: "path.transaction_id", message: "not found among live conversions; a test one exists" },
    ]);
    const found = await expectStatus<Conversion>(
      await admin(`/v1/conversions/${network.id}/${transactionId}?test=true`),
      200,
    );
    expect(found).toMatchObject({ transaction_id: transactionId, test: true });
    const neither = await expectStatus<{ detail: string }>(
      await admin(`/v1/conversions/${network.id}/${uniqueId("tx")}?test=true`),
      404,
    );
    expect(neither.detail).not.toContain("?test");
  });

  it("rejects a test flag that is neither true nor false", async () => {
    const problem = await expectStatus<{ errors: { location: string; message: string }[] }>(
      await admin("/v1/conversions/acme/tx?test=1"),
      422,
    );
    expect(problem.errors).toEqual([{ location: "query.test", message: "must be true or false" }]);
  });
});

describe("GET /v1/conversions", () => {
  it("pages through a test and a live conversion of one transaction, each once", async () => {
    const network = await createNetwork();
    const body = makePostback();
    const transactionId = String(body.transaction_id);
    await send(network, body);
    await send(network, body, true);
    await storedWith(network, transactionId, false, "approved");
    await storedWith(network, transactionId, true, "approved");
    const seen: boolean[] = [];
    let cursor: string | null = null;
    do {
      const suffix: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : "";
      const page: { data: { test: boolean }[]; next_cursor: string | null } = await expectStatus(
        await admin(`/v1/conversions?network_id=${network.id}&limit=1${suffix}`),
        200,
      );
      seen.push(...page.data.map((c) => c.test));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen.sort()).toEqual([false, true]);
  });
});
