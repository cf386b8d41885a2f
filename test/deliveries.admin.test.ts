/**
 * The deliveries admin API through the real app and the real pipeline (ingest → EVENTS → fan-out →
 * coordinator, a replay by DELIVERIES → the fake partner at https://partner.test): the filtered,
 * paginated delivery log, one delivery with every attempt, replay of one delivery, and a partner
 * that answers 410 Gone.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  admin,
  BASE,
  createNetwork,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem } from "./support/problems";

interface Delivery {
  id: string;
  event_id: string;
  partner_id: string;
  network_id: string;
  transaction_id: string;
  state: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  next_attempt_at: string | null;
  conversion_status: string;
  created_at: string;
  updated_at: string;
  delivered_at: string | null;
}

interface Attempt {
  attempt: number;
  started_at: string;
  http_status: number | null;
  error_class: string | null;
  error: string | null;
  latency_ms: number;
  response_excerpt: string | null;
  outcome: string;
}

interface DeliveryDetail extends Delivery {
  attempts_log: Attempt[];
}

interface DeliveryPage {
  data: Delivery[];
  next_cursor: string | null;
}

interface PartnerBody {
  id: string;
  status: string;
  disabled_reason: string | null;
}

function onlyFrom(network: TestNetwork) {
  return { networks: [network.id] };
}

async function list(query: Record<string, string>): Promise<DeliveryPage> {
  return expectStatus<DeliveryPage>(await admin(`/v1/deliveries?${new URLSearchParams(query)}`), 200);
}

/** Every page of a filtered list, following next_cursor. */
async function listAll(query: Record<string, string>): Promise<{ items: Delivery[]; pages: number }> {
  const items: Delivery[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page: DeliveryPage = await list(cursor === null ? query : { ...query, cursor });
    items.push(...page.data);
    cursor = page.next_cursor;
    pages += 1;
    expect(pages, "pagination does not end").toBeLessThan(100);
  } while (cursor !== null);
  return { items, pages };
}

async function detail(id: string): Promise<DeliveryDetail> {
  return expectStatus<DeliveryDetail>(await admin(`/v1/deliveries/${id}`), 200);
}

/** Polls the API until the partner has `count` deliveries, all in `state`. */
async function deliveriesIn(partnerId: string, count: number, state: string): Promise<Delivery[]> {
  return eventually(async () => {
    const { data } = await list({ partner_id: partnerId, limit: "200" });
    return data.length === count && data.every((d) => d.state === state) ? data : null;
  }, 20_000);
}

async function stateBecomes(id: string, state: string): Promise<DeliveryDetail> {
  return eventually(async () => {
    const delivery = await detail(id);
    return delivery.state === state ? delivery : null;
  }, 20_000);
}

function replay(id: string): Promise<Response> {
  return admin(`/v1/deliveries/${id}/replay`, { method: "POST" });
}

/** A partner that always answers 500, with one retry a second later: its deliveries die quickly. */
async function failingPartner(network: TestNetwork, unique: string) {
  return createPartner({
    url_template: `${PARTNER}/fail/${unique}?d={delivery_id}`,
    retry_schedule_seconds: [1],
    filters: onlyFrom(network),
  });
}

describe("GET /v1/deliveries", () => {
  it("filters by partner_id, state, event_id, since and until, pages with a cursor, and shows conversion_status", async () => {
    const network = await createNetwork();
    const unique = uniqueId("log");
    const ok = await createPartner({ url_template: `${PARTNER}/ok/${unique}`, filters: onlyFrom(network) });
    const failing = await failingPartner(network, unique);

    const statuses = ["pending", "approved", "declined"];
    for (const [index, status] of statuses.entries()) {
      await expectStatus(await postback(network, makePostback({ status })), 200);
      // One event at a time, so that each event's deliveries have their own created_at.
      await eventually(async () => ((await list({ partner_id: ok.id })).data.length === index + 1 ? true : null));
    }
    const delivered = await deliveriesIn(ok.id, 3, "delivered");
    const dead = await deliveriesIn(failing.id, 3, "dead");

    // Newest first, each notifying the status of its event.
    expect(delivered.map((d) => d.conversion_status)).toEqual([...statuses].reverse());
    expect(dead.map((d) => d.conversion_status)).toEqual([...statuses].reverse());
    for (const d of delivered) {
      expect(d).toMatchObject({ partner_id: ok.id, network_id: network.id, state: "delivered", attempts: 1 });
      expect(d.id).toMatch(/^dlv_/);
      expect(d.last_status).toBe(200);
      expect(d.delivered_at).toEqual(expect.any(String));
    }
    const createdAt = delivered.map((d) => d.created_at);
    expect([...createdAt].sort().reverse()).toEqual(createdAt);

    // partner_id + state
    expect((await list({ partner_id: failing.id, state: "dead" })).data.map((d) => d.id)).toEqual(
      dead.map((d) => d.id),
    );
    expect((await list({ partner_id: failing.id, state: "delivered" })).data).toEqual([]);
    expect((await list({ partner_id: ok.id, state: "dead" })).data).toEqual([]);
    const anyDead = await list({ state: "dead", limit: "200" });
    for (const d of anyDead.data) expect(d.state).toBe("dead");

    // event_id: one event, one delivery per matching partner
    const [newest] = delivered;
    if (!newest) throw new Error("no delivery");
    const ofEvent = await list({ event_id: newest.event_id });
    expect(ofEvent.data.map((d) => d.partner_id).sort()).toEqual([ok.id, failing.id].sort());
    for (const d of ofEvent.data) expect(d.event_id).toBe(newest.event_id);
    expect((await list({ event_id: newest.event_id, partner_id: ok.id })).data.map((d) => d.id)).toEqual([newest.id]);

    // since (inclusive) and until (exclusive), on created_at
    const [third, second, first] = delivered;
    if (!first || !second || !third) throw new Error("expected three deliveries");
    expect((await list({ partner_id: ok.id, since: second.created_at })).data.map((d) => d.id)).toEqual([
      third.id,
      second.id,
    ]);
    expect((await list({ partner_id: ok.id, until: second.created_at })).data.map((d) => d.id)).toEqual([first.id]);
    expect(
      (await list({ partner_id: ok.id, since: second.created_at, until: third.created_at })).data.map((d) => d.id),
    ).toEqual([second.id]);

    // cursor pagination: limit 2 over 3
    const firstPage = await list({ partner_id: ok.id, limit: "2" });
    expect(firstPage.data).toHaveLength(2);
    expect(firstPage.next_cursor).toEqual(expect.any(String));
    const paged = await listAll({ partner_id: ok.id, limit: "2" });
    expect(paged.pages).toBe(2);
    expect(paged.items.map((d) => d.id)).toEqual(delivered.map((d) => d.id));
    // Every delivery of the file, one per page: ties on created_at must neither repeat nor skip a row.
    const everyPage = await listAll({ limit: "1" });
    expect(new Set(everyPage.items.map((d) => d.id)).size).toBe(everyPage.items.length);
    for (const d of [...delivered, ...dead]) expect(everyPage.items.map((item) => item.id)).toContain(d.id);
  });

  it("answers 422 for a bad filter and 400 for a forged cursor", async () => {
    const badState = await expectProblem(await admin("/v1/deliveries?state=lost"), 422, "validation_failed");
    expectLocations(badState, ["query.state"]);
    const badSince = await expectProblem(await admin("/v1/deliveries?since=yesterday"), 422, "validation_failed");
    expectLocations(badSince, ["query.since"]);
    const badLimit = await expectProblem(await admin("/v1/deliveries?limit=0"), 422, "validation_failed");
    expectLocations(badLimit, ["query.limit"]);
    const forged = await expectProblem(await admin("/v1/deliveries?cursor=WyJ4Il0"), 400, "invalid_request");
    expectLocations(forged, ["query.cursor"]);
  });
});

describe("GET /v1/deliveries/{id}", () => {
  it("shows every attempt: number, HTTP status, latency, response excerpt and outcome", async () => {
    const network = await createNetwork();
    const unique = uniqueId("attempts");
    const partner = await failingPartner(network, unique);
    await expectStatus(await postback(network, makePostback({ status: "paid" })), 200);
    const [listed] = await deliveriesIn(partner.id, 1, "dead");
    if (!listed) throw new Error("no delivery");

    const delivery = await detail(listed.id);
    const { attempts_log, ...rest } = delivery;
    expect(rest).toEqual(listed);
    expect(delivery).toMatchObject({ state: "dead", attempts: 2, last_status: 500, conversion_status: "paid" });
    expect(attempts_log.map((a) => a.attempt)).toEqual([1, 2]);
    expect(attempts_log.map((a) => a.outcome)).toEqual(["retry", "dead"]);
    for (const attempt of attempts_log) {
      expect(attempt).toMatchObject({
        http_status: 500,
        error_class: null,
        error: null,
        response_excerpt: "partner is down",
      });
      expect(typeof attempt.latency_ms).toBe("number");
      expect(Number.isInteger(attempt.latency_ms)).toBe(true);
      expect(attempt.latency_ms).toBeGreaterThanOrEqual(0);
      expect(Number.isNaN(Date.parse(attempt.started_at))).toBe(false);
    }
    const [firstAttempt, secondAttempt] = attempts_log;
    expect((firstAttempt?.started_at ?? "") < (secondAttempt?.started_at ?? "")).toBe(true);
    const requests = await partnerLog(`/fail/${unique}`);
    expect(requests.map((r) => new URL(r.url).searchParams.get("d"))).toEqual([listed.id, listed.id]);
  });

  it("answers 404 for an unknown delivery", async () => {
    const problem = await expectProblem(await admin(`/v1/deliveries/dlv_${uniqueId("ghost")}`), 404, "not_found");
    expectLocations(problem, ["path.delivery_id"]);
  });
});

describe("POST /v1/deliveries/{id}/replay", () => {
  it("replays a dead delivery (202, same id) and refuses a delivered one (409 invalid_state)", async () => {
    const network = await createNetwork();
    const unique = uniqueId("replay-one");
    const partner = await failingPartner(network, unique);
    await expectStatus(await postback(network, makePostback()), 200);
    const [dead] = await deliveriesIn(partner.id, 1, "dead");
    if (!dead) throw new Error("no delivery");

    await expectStatus(
      await admin(`/v1/partners/${partner.id}`, {
        method: "PATCH",
        body: JSON.stringify({ url_template: `${PARTNER}/ok/${unique}?d={delivery_id}` }),
      }),
      200,
    );
    const queued = await expectStatus<Delivery>(await replay(dead.id), 202);
    expect(queued).toMatchObject({ id: dead.id, event_id: dead.event_id, state: "pending" });

    const delivered = await stateBecomes(dead.id, "delivered");
    expect(delivered.attempts).toBe(3);
    expect(delivered.attempts_log.map((a) => [a.attempt, a.outcome, a.http_status])).toEqual([
      [1, "retry", 500],
      [2, "dead", 500],
      [3, "delivered", 200],
    ]);
    expect(delivered.attempts_log[2]?.response_excerpt).toBe("ok");
    const requests = await partnerLog(`/ok/${unique}`);
    expect(requests.map((r) => new URL(r.url).searchParams.get("d"))).toEqual([dead.id]);

    const problem = await expectProblem(await replay(dead.id), 409, "invalid_state");
    expectLocations(problem, ["path.delivery_id"]);
    expect(problem.detail).toContain("delivered");
    expect((await detail(dead.id)).state).toBe("delivered");
  });

  it("refuses a delivery whose partner is disabled (409 partner_disabled) and leaves it as it was", async () => {
    const network = await createNetwork();
    const partner = await failingPartner(network, uniqueId("replay-disabled"));
    await expectStatus(await postback(network, makePostback()), 200);
    const [dead] = await deliveriesIn(partner.id, 1, "dead");
    if (!dead) throw new Error("no delivery");
    await expectStatus(await admin(`/v1/partners/${partner.id}/disable`, { method: "POST" }), 200);

    const problem = await expectProblem(await replay(dead.id), 409, "partner_disabled");
    expectLocations(problem, ["path.delivery_id"]);
    const after = await detail(dead.id);
    expect(after.state).toBe("dead");
    expect(after.attempts).toBe(2);
  });

  it("answers 404 for an unknown delivery", async () => {
    await expectProblem(await replay(`dlv_${uniqueId("ghost")}`), 404, "not_found");
  });
});

describe("a partner answering 410 Gone", () => {
  it("is disabled (reason gone) with the delivery parked, and later events are parked too", async () => {
    const network = await createNetwork();
    const path = `/gone/${uniqueId("gone")}`;
    const partner = await createPartner({ url_template: `${PARTNER}${path}`, filters: onlyFrom(network) });
    await expectStatus(await postback(network, makePostback()), 200);

    const [parked] = await deliveriesIn(partner.id, 1, "parked");
    if (!parked) throw new Error("no delivery");
    const gone = await expectStatus<PartnerBody>(await admin(`/v1/partners/${partner.id}`), 200);
    expect(gone).toMatchObject({ status: "disabled", disabled_reason: "gone" });
    const { attempts_log } = await detail(parked.id);
    expect(attempts_log).toEqual([
      expect.objectContaining({
        attempt: 1,
        http_status: 410,
        outcome: "gone",
        response_excerpt: "no such endpoint any more",
      }),
    ]);

    await expectStatus(await postback(network, makePostback()), 200);
    const both = await deliveriesIn(partner.id, 2, "parked");
    const later = both.find((d) => d.id !== parked.id);
    expect(later?.attempts).toBe(0);
    expect(await partnerLog(path)).toHaveLength(1);
  });
});

describe("admin authentication on the partner and delivery routes", () => {
  // postbacks.security.test.ts checks every secured operation of /openapi.json; this pins that the
  // document lists the partner and delivery operations as secured, so that those checks cover them.
  const EXPECTED = [
    "POST /v1/partners",
    "GET /v1/partners",
    "GET /v1/partners/{partner_id}",
    "PATCH /v1/partners/{partner_id}",
    "DELETE /v1/partners/{partner_id}",
    "POST /v1/partners/{partner_id}/disable",
    "POST /v1/partners/{partner_id}/enable",
    "POST /v1/partners/{partner_id}/secrets",
    "POST /v1/partners/{partner_id}/preview",
    "POST /v1/partners/{partner_id}/replay",
    "GET /v1/deliveries",
    "GET /v1/deliveries/{delivery_id}",
    "POST /v1/deliveries/{delivery_id}/replay",
  ];

  it("documents every partner and delivery operation as secured by the admin token", async () => {
    const response = await exports.default.fetch(`${BASE}/openapi.json`);
    const document = await expectStatus<{ paths: Record<string, Record<string, { security?: unknown[] }>> }>(
      response,
      200,
    );
    const secured = Object.entries(document.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(([, operation]) => (operation.security ?? []).length > 0)
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    );
    expect(secured).toEqual(expect.arrayContaining(EXPECTED));
    const documented = secured.filter((name) => /\/v1\/(partners|deliveries)/.test(name));
    expect(documented.sort()).toEqual([...EXPECTED].sort());
  });
});

describe("deliveries of a deleted partner", () => {
  it("stay in the log, and cannot be replayed (409 partner_disabled)", async () => {
    const network = await createNetwork();
    const partner = await failingPartner(network, uniqueId("deleted"));
    await expectStatus(await postback(network, makePostback()), 200);
    const [dead] = await deliveriesIn(partner.id, 1, "dead");
    if (!dead) throw new Error("no delivery");
    await expectStatus(await admin(`/v1/partners/${partner.id}`, { method: "DELETE" }), 204);

    const kept = await detail(dead.id);
    expect(kept).toMatchObject({ id: dead.id, partner_id: partner.id, state: "dead" });
    expect(kept.attempts_log).toHaveLength(2);
    const problem = await expectProblem(await replay(dead.id), 409, "partner_disabled");
    expect(problem.detail).toContain("deleted");
    const row = await env.DB.prepare("SELECT state FROM deliveries WHERE id = ?")
      .bind(dead.id)
      .first<{ state: string }>();
    expect(row?.state).toBe("dead");
  });
});
