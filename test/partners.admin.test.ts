/**
 * The partners admin API through the real app, with real local D1, Durable Objects and Queues:
 * what a partner is created with, which templates and settings are refused (and how the refusal
 * names the field), secrets that are shown once and stored encrypted, disable/enable with parked
 * deliveries, secret rotation as a partner verifies it, previews that send nothing, deletion, and
 * replay of dead deliveries with their ids kept.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { SECRET_PREFIX } from "../src/lib/standard-webhooks";
import {
  admin,
  createNetwork,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  type PartnerRequestLog,
  partnerLog,
  postback,
  signedContentOf,
  type TestNetwork,
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem, type ProblemBody } from "./support/problems";

interface PartnerBody {
  id: string;
  name: string;
  status: "active" | "paused" | "disabled";
  disabled_reason: string | null;
  paused_reason: string | null;
  max_in_flight: number;
  breaker: Record<string, number>;
  url_template: string;
  method: "GET" | "POST";
  sign: boolean;
  retry_schedule_seconds: number[];
  filters: Record<string, string[]>;
  headers: Record<string, string>;
  body_template: string | null;
  timeout_ms: number;
  receives_test_traffic: boolean;
  created_at: string;
  updated_at: string;
  signing_secret?: string;
  resumed_deliveries?: number;
  /** Create, update and preview only: macros some conversions leave empty (test/partners.formatting.test.ts). */
  warnings?: { location: string; message: string }[];
}

/** A create or update answer as GET answers it afterwards: without the secret shown once and the warnings. */
function asStored({ signing_secret: _secret, warnings: _warnings, ...partner }: PartnerBody): PartnerBody {
  return partner;
}

interface PartnerPage {
  data: PartnerBody[];
  next_cursor: string | null;
}

interface RotatedPartnerSecret {
  secret_id: string;
  signing_secret: string;
  previous_secrets_expire_at: string;
}

interface PreviewedRequest {
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  body: string | null;
}

interface ReplayResult {
  dry_run: boolean;
  matched: number;
  replayed: number;
  remaining: number;
}

const DEFAULT_RETRY_SCHEDULE_SECONDS = [5, 300, 1800, 7200, 18000, 36000, 36000];
const SECRET_PATTERN = /^whsec_[A-Za-z0-9+/]{43}=$/;

/** Filters on a network no test posts to: the partner receives nothing from this file's other tests. */
function nobodysEvents() {
  return { networks: [uniqueId("net-none")] };
}

function onlyFrom(network: TestNetwork) {
  return { networks: [network.id] };
}

function createRequest(fields: Record<string, unknown>): Promise<Response> {
  return admin("/v1/partners", { method: "POST", body: JSON.stringify({ name: uniqueId("partner"), ...fields }) });
}

async function create(fields: Record<string, unknown>): Promise<PartnerBody> {
  return expectStatus<PartnerBody>(await createRequest(fields), 201);
}

/** The partner as stored; what its coordinator says (`pace`, `health`) is checked on its own. */
async function fetchPartner(id: string): Promise<PartnerBody> {
  const { pace, health, ...stored } = await expectStatus<PartnerBody & { pace: unknown; health: unknown }>(
    await admin(`/v1/partners/${id}`),
    200,
  );
  expect(pace).toMatchObject({ max_in_flight: stored.max_in_flight });
  expect(health).toMatchObject({ breaker: expect.stringMatching(/^(closed|open|half_open)$/) });
  return stored;
}

function patch(id: string, fields: Record<string, unknown>): Promise<Response> {
  return admin(`/v1/partners/${id}`, { method: "PATCH", body: JSON.stringify(fields) });
}

function post(path: string, body?: Record<string, unknown>): Promise<Response> {
  return admin(path, { method: "POST", ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

async function replay(partnerId: string, body: Record<string, unknown>): Promise<ReplayResult> {
  return expectStatus<ReplayResult>(await post(`/v1/partners/${partnerId}/replay`, body), 200);
}

/** Polls D1 until the partner has `count` deliveries, all in `state`. */
async function deliveriesIn(partnerId: string, count: number, state: string, timeoutMs = 20_000) {
  return eventually(async () => {
    const rows = await deliveriesOf(partnerId);
    return rows.length === count && rows.every((row) => row.state === state) ? rows : null;
  }, timeoutMs);
}

async function received(prefix: string, count: number): Promise<PartnerRequestLog[]> {
  return eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= count ? log : null;
  }, 20_000);
}

async function signingCiphertexts(partnerId: string): Promise<string[]> {
  const { results } = await env.DB.prepare("SELECT ciphertext FROM partner_secrets WHERE partner_id = ?")
    .bind(partnerId)
    .all<{ ciphertext: string }>();
  return results.map((row) => row.ciphertext);
}

function signaturesOf(request: PartnerRequestLog): string[] {
  return (request.headers["webhook-signature"] ?? "").split(" ").filter((part) => part !== "");
}

function verifies(secret: string, request: PartnerRequestLog): boolean {
  try {
    new Webhook(secret).verify(signedContentOf(request), request.headers, { jsonParse: false });
    return true;
  } catch {
    return false;
  }
}

function expectNoSecretIn(text: string, secret: string): void {
  expect(text).not.toContain(secret);
  expect(text).not.toContain(secret.slice(SECRET_PREFIX.length));
}

describe("creating a partner", () => {
  it("answers 201 with a ptn_ id and the documented defaults, and no secret when sign is false", async () => {
    const before = Date.now();
    const name = uniqueId("defaults");
    const response = await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({ name, url_template: `${PARTNER}/ok/${uniqueId("defaults")}?tx={transaction_id}` }),
    });
    const partner = await expectStatus<PartnerBody>(response, 201);
    try {
      expect(partner.id).toMatch(/^ptn_[0-9a-z]{26}$/);
      expect(partner).toMatchObject({
        name,
        status: "active",
        disabled_reason: null,
        method: "GET",
        sign: false,
        retry_schedule_seconds: DEFAULT_RETRY_SCHEDULE_SECONDS,
        timeout_ms: 10_000,
        filters: {},
        headers: {},
        body_template: null,
        receives_test_traffic: false,
        delivery_order: "ordered",
        max_in_flight: 10,
        max_per_second: null,
        breaker: {
          window_seconds: 259_200,
          min_attempts: 10,
          failure_percent: 80,
          cooldown_seconds: 300,
          disable_after_seconds: 432_000,
        },
        paused_reason: null,
        paused_at: null,
      });
      expect("signing_secret" in partner, JSON.stringify(partner)).toBe(false);
      expect(Date.parse(partner.created_at)).toBeGreaterThanOrEqual(before - 1000);
      expect(partner.updated_at).toBe(partner.created_at);
      expect(await signingCiphertexts(partner.id)).toEqual([]);
      expect(partner.warnings).toEqual([]);
      expect(await fetchPartner(partner.id)).toEqual(asStored(partner));
    } finally {
      // Empty filters mean every event: this partner must not receive the rest of the file's events.
      await expectStatus(await admin(`/v1/partners/${partner.id}`, { method: "DELETE" }), 204);
    }
  });

  it("keeps every field it is given", async () => {
    const fields = {
      url_template: `${PARTNER}/ok/${uniqueId("full")}`,
      method: "POST",
      sign: false,
      retry_schedule_seconds: [1, 60, 43_200],
      timeout_ms: 2500,
      filters: {
        networks: ["acme", "globex"],
        campaign_ids: ["camp-1"],
        statuses: ["approved", "paid"],
        event_types: ["purchase"],
        platforms: ["ios", "android"],
      },
      headers: { "X-Api-Key": "k-123", Accept: "application/json" },
      body_template: '{"tx":"{transaction_id}","payout":"{amount}"}',
      receives_test_traffic: true,
    };
    const partner = await create(fields);
    expect(partner).toMatchObject(fields);
    expect(await fetchPartner(partner.id)).toMatchObject(fields);
  });

  it("issues a whsec_ signing secret once when sign is true, and stores it only encrypted", async () => {
    const partner = await create({
      url_template: `${PARTNER}/ok/${uniqueId("signed")}`,
      sign: true,
      filters: nobodysEvents(),
    });
    const secret = partner.signing_secret ?? "";
    expect(secret).toMatch(SECRET_PATTERN);
    expect(atob(secret.slice(SECRET_PREFIX.length))).toHaveLength(32);

    const getResponse = await admin(`/v1/partners/${partner.id}`);
    const getText = await getResponse.clone().text();
    const fetched = await expectStatus<PartnerBody>(getResponse, 200);
    expect(fetched.sign).toBe(true);
    expect("signing_secret" in fetched).toBe(false);
    expectNoSecretIn(getText, secret);
    expect(getText).not.toMatch(/whsec_/);

    let cursor: string | null = null;
    let seen = false;
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const listResponse = await admin(`/v1/partners?limit=200${query}`);
      const listText = await listResponse.clone().text();
      const page = await expectStatus<PartnerPage>(listResponse, 200);
      expectNoSecretIn(listText, secret);
      expect(listText).not.toMatch(/whsec_/);
      seen ||= page.data.some((p) => p.id === partner.id);
      cursor = page.next_cursor;
    } while (cursor !== null);
    expect(seen).toBe(true);

    const ciphertexts = await signingCiphertexts(partner.id);
    expect(ciphertexts).toHaveLength(1);
    const { results } = await env.DB.prepare("SELECT * FROM partner_secrets WHERE partner_id = ?")
      .bind(partner.id)
      .all();
    expectNoSecretIn(JSON.stringify(results), secret);
    const partnerRow = await env.DB.prepare("SELECT * FROM partners WHERE id = ?").bind(partner.id).first();
    expectNoSecretIn(JSON.stringify(partnerRow), secret);
  });

  it("answers 404 for an unknown partner", async () => {
    const problem = await expectProblem(await admin(`/v1/partners/ptn_${uniqueId("ghost")}`), 404, "not_found");
    expectLocations(problem, ["path.partner_id"]);
  });
});

describe("creating a partner: 422 naming the field", () => {
  it("names an unknown macro in the URL template", async () => {
    const problem = await expectProblem(
      await createRequest({ url_template: `${PARTNER}/ok/x?payout={amout}` }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.url_template"]);
    expect(problem.errors.find((e) => e.location === "body.url_template")?.message).toContain("{amout}");
    expect(problem.detail).toContain("body.url_template");
  });

  it("runs without ALLOW_INSECURE_PARTNER_URLS (wrangler.toml's false), as production does", () => {
    // When this fails, a .dev.vars copied from .dev.vars.example (ALLOW_INSECURE_PARTNER_URLS=true)
    // leaks into the test runtime and the loopback and http cases below stop meaning anything.
    expect(env.ALLOW_INSECURE_PARTNER_URLS).toBe("false");
  });

  it.each([
    ["plain http", "http://partner.test/ok/x", /https/],
    ["a private address", "https://10.0.0.1/ok/x", /private/],
    ["the cloud metadata address (link-local)", "https://169.254.169.254/latest/meta-data", /link-local/],
    ["IPv4 loopback", "https://127.0.0.1/ok/x", /loopback/],
    ["IPv6 loopback", "https://[::1]/ok/x", /loopback/],
    ["localhost", "https://localhost/ok/x", /loopback/],
    ["a macro in the host", "https://{network_id}.partner.test/ok/x", /host/],
    ["a relative URL", "/ok/x?tx={transaction_id}", /valid absolute URL/],
    ["a tab the URL parser drops, letting a macro choose the host", "ht\ttps://{campaign_id}/ok/x", /tab \(U\+0009\)/],
    ["a newline", "https://partner.test/ok/x\n", /line feed/],
    ["a leading space", " https://partner.test/ok/x", /start or end with a space/],
    ["a reserved address (TEST-NET-3)", "https://203.0.113.7/ok/x", /reserved/],
    ["a 6to4 address", "https://[2002:a00:1::1]/ok/x", /reserved/],
  ])("refuses %s", async (_, url_template, message) => {
    const problem = await expectProblem(await createRequest({ url_template }), 422, "validation_failed");
    expectLocations(problem, ["body.url_template"]);
    expect(problem.errors.map((e) => e.message).join("\n")).toMatch(message);
  });

  it("refuses a body template that is not JSON once macros are filled in", async () => {
    const problem = await expectProblem(
      await createRequest({
        url_template: `${PARTNER}/ok/x`,
        method: "POST",
        // A text macro outside quotes: a transaction id with a quote in it breaks the JSON.
        body_template: '{"tx":{transaction_id}}',
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.body_template"]);
    expect(problem.errors.find((e) => e.location === "body.body_template")?.message).toMatch(/valid JSON/);
  });

  it("refuses a body template with method GET", async () => {
    const problem = await expectProblem(
      await createRequest({ url_template: `${PARTNER}/ok/x`, body_template: '{"tx":"{transaction_id}"}' }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.body_template"]);
    expect(problem.errors.find((e) => e.location === "body.body_template")?.message).toMatch(/POST/);
  });

  it.each([
    ["empty", []],
    ["with a zero delay", [5, 0]],
    ["with a delay past the 12 h queue cap", [5, 43_201]],
    ["with 21 entries", Array.from({ length: 21 }, () => 5)],
  ])("refuses a retry schedule %s", async (_, retry_schedule_seconds) => {
    const problem = await expectProblem(
      await createRequest({ url_template: `${PARTNER}/ok/x`, retry_schedule_seconds }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.retry_schedule_seconds"]);
  });

  it.each([
    ["timeout_ms below 1 s", { timeout_ms: 999 }, "body.timeout_ms"],
    ["timeout_ms above 30 s", { timeout_ms: 30_001 }, "body.timeout_ms"],
    ["an unknown top-level field", { retries: 3 }, "body.retries"],
    ["a webhook-signature header", { headers: { "Webhook-Signature": "v1,forged" } }, "body.headers.Webhook-Signature"],
    ["a host header", { headers: { host: "internal.example" } }, "body.headers.host"],
    ["a header value with CR/LF", { headers: { "X-Note": "a\r\nX-Injected: 1" } }, "body.headers.X-Note"],
    ["a filter on an unknown status", { filters: { statuses: ["approved", "won"] } }, "body.filters.statuses[1]"],
    ["a filter on an unknown platform", { filters: { platforms: ["desktop"] } }, "body.filters.platforms[0]"],
    ["an unknown filter", { filters: { countries: ["FR"] } }, "body.filters.countries"],
  ])("refuses %s", async (_, fields, location) => {
    const problem = await expectProblem(
      await createRequest({ url_template: `${PARTNER}/ok/x`, ...fields }),
      422,
      "validation_failed",
    );
    expectLocations(problem, [location]);
  });

  it("lists every bad template and schedule in one 422", async () => {
    const problem = await expectProblem(
      await createRequest({
        url_template: "http://10.0.0.1/pb?payout={amout}",
        retry_schedule_seconds: [0],
        body_template: '{"tx":"{transaction_id}"}',
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.url_template", "body.retry_schedule_seconds", "body.body_template"]);
    const urlMessages = problem.errors.filter((e) => e.location === "body.url_template").map((e) => e.message);
    expect(urlMessages.join("\n")).toContain("{amout}");
    expect(urlMessages.join("\n")).toMatch(/https/);
    expect(urlMessages.join("\n")).toMatch(/private/);
  });

  it("lists every bad field in one 422, whatever check finds it", async () => {
    // Schema checks (timeout, headers, filters, unknown field) and template checks (URL, schedule)
    // together: an operator should not have to fix one round to discover the next.
    const problem = await expectProblem(
      await createRequest({
        url_template: "https://127.0.0.1/pb?payout={amout}",
        retry_schedule_seconds: [43_201],
        timeout_ms: 0,
        headers: { host: "x" },
        filters: { platforms: ["desktop"] },
        colour: "blue",
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, [
      "body.timeout_ms",
      "body.headers.host",
      "body.filters.platforms[0]",
      "body.colour",
      "body.url_template",
      "body.retry_schedule_seconds",
    ]);
  });
});

describe("listing partners", () => {
  it("pages with limit and cursor, in id order, without duplicates", async () => {
    const mine = new Set<string>();
    for (let i = 0; i < 3; i++) {
      mine.add((await create({ url_template: `${PARTNER}/ok/${uniqueId("list")}`, filters: nobodysEvents() })).id);
    }
    const ids: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = cursor === null ? "" : `&cursor=${encodeURIComponent(cursor)}`;
      const page: PartnerPage = await expectStatus<PartnerPage>(await admin(`/v1/partners?limit=2${query}`), 200);
      expect(Object.keys(page).sort()).toEqual(["data", "next_cursor"]);
      expect(page.data.length).toBeLessThanOrEqual(2);
      if (page.next_cursor !== null) expect(page.data).toHaveLength(2);
      ids.push(...page.data.map((p) => p.id));
      cursor = page.next_cursor;
      pages += 1;
      expect(pages, "pagination does not end").toBeLessThan(500);
    } while (cursor !== null);
    expect(pages).toBeGreaterThanOrEqual(2);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(ids);
    for (const id of mine) expect(ids).toContain(id);
  });

  it("answers 400 to a forged cursor and 422 to a bad limit", async () => {
    const forged = await expectProblem(await admin("/v1/partners?cursor=not-a-cursor"), 400, "invalid_request");
    expectLocations(forged, ["query.cursor"]);
    const tooMany = await expectProblem(await admin("/v1/partners?limit=201"), 422, "validation_failed");
    expectLocations(tooMany, ["query.limit"]);
  });
});

describe("updating a partner", () => {
  it("changes only the fields it is given", async () => {
    const partner = await create({
      url_template: `${PARTNER}/ok/${uniqueId("patch")}?tx={transaction_id}`,
      method: "POST",
      headers: { "X-Api-Key": "k-1" },
      retry_schedule_seconds: [10, 20],
      filters: nobodysEvents(),
      timeout_ms: 4000,
    });
    const renamed = await expectStatus<PartnerBody>(await patch(partner.id, { name: "Renamed partner" }), 200);
    const { name: _name, updated_at: _updated, ...unchanged } = partner;
    expect(renamed).toMatchObject({ ...unchanged, name: "Renamed partner" });
    expect("signing_secret" in renamed).toBe(false);
    expect(Date.parse(renamed.updated_at)).toBeGreaterThanOrEqual(Date.parse(partner.updated_at));

    const retuned = await expectStatus<PartnerBody>(
      await patch(partner.id, {
        timeout_ms: 7000,
        headers: { "X-Other": "v" },
        body_template: '{"tx":"{transaction_id}"}',
        receives_test_traffic: true,
      }),
      200,
    );
    expect(retuned).toMatchObject({
      ...unchanged,
      name: "Renamed partner",
      timeout_ms: 7000,
      headers: { "X-Other": "v" },
      body_template: '{"tx":"{transaction_id}"}',
      receives_test_traffic: true,
    });
    expect(await fetchPartner(partner.id)).toEqual(asStored(retuned));

    const cleared = await expectStatus<PartnerBody>(await patch(partner.id, { body_template: null }), 200);
    expect(cleared.body_template).toBeNull();
  });

  it("re-checks the whole partner: a bad URL or a body template on GET is 422 and changes nothing", async () => {
    const partner = await create({
      url_template: `${PARTNER}/ok/${uniqueId("relint")}`,
      method: "POST",
      body_template: '{"tx":"{transaction_id}"}',
      filters: nobodysEvents(),
    });
    const badUrl = await expectProblem(
      await patch(partner.id, { url_template: "https://169.254.169.254/latest", name: "should not stick" }),
      422,
      "validation_failed",
    );
    expectLocations(badUrl, ["body.url_template"]);
    // The template is fine alone, but not with the stored body template.
    const getWithBody = await expectProblem(await patch(partner.id, { method: "GET" }), 422, "validation_failed");
    expectLocations(getWithBody, ["body.body_template"]);
    const unknown = await expectProblem(await patch(partner.id, { id: "ptn_other" }), 422, "validation_failed");
    expectLocations(unknown, ["body.id"]);
    expect(await fetchPartner(partner.id)).toEqual(asStored(partner));
  });

  it("answers 404 for an unknown partner", async () => {
    await expectProblem(await patch(`ptn_${uniqueId("ghost")}`, { name: "x" }), 404, "not_found");
  });

  it("issues a signing secret the first time sign is turned on, and never again", async () => {
    const network = await createNetwork();
    const path = `/ok/${uniqueId("sign-later")}`;
    const partner = await create({ url_template: `${PARTNER}${path}`, filters: onlyFrom(network) });
    expect(partner.signing_secret).toBeUndefined();

    const signed = await expectStatus<PartnerBody>(await patch(partner.id, { sign: true }), 200);
    expect(signed.sign).toBe(true);
    const secret = signed.signing_secret ?? "";
    expect(secret).toMatch(SECRET_PATTERN);
    expect(await signingCiphertexts(partner.id)).toHaveLength(1);
    expectNoSecretIn(await (await admin(`/v1/partners/${partner.id}`)).text(), secret);

    const again = await expectStatus<PartnerBody>(await patch(partner.id, { sign: true }), 200);
    expect("signing_secret" in again).toBe(false);
    const off = await expectStatus<PartnerBody>(await patch(partner.id, { sign: false }), 200);
    expect(off.sign).toBe(false);
    expect("signing_secret" in off).toBe(false);
    const onAgain = await expectStatus<PartnerBody>(await patch(partner.id, { sign: true }), 200);
    expect(onAgain.sign).toBe(true);
    expect("signing_secret" in onAgain, JSON.stringify(onAgain)).toBe(false);
    expect(await signingCiphertexts(partner.id)).toHaveLength(1);

    // The secret shown the first time still signs.
    await expectStatus(await postback(network, makePostback()), 200);
    const [request] = await received(path, 1);
    if (!request) throw new Error("the partner received nothing");
    expect(verifies(secret, request), JSON.stringify(request.headers)).toBe(true);
  });
});

describe("disabling and enabling a partner", () => {
  it("parks deliveries while disabled and resumes them, same delivery id, when enabled", async () => {
    const network = await createNetwork();
    const path = `/ok/${uniqueId("parked")}`;
    const partner = await create({ url_template: `${PARTNER}${path}?d={delivery_id}`, filters: onlyFrom(network) });

    const disabled = await expectStatus<PartnerBody>(await post(`/v1/partners/${partner.id}/disable`), 200);
    expect(disabled).toMatchObject({ id: partner.id, status: "disabled", disabled_reason: "operator" });
    expect((await fetchPartner(partner.id)).status).toBe("disabled");

    await expectStatus(await postback(network, makePostback()), 200);
    const [parked] = await deliveriesIn(partner.id, 1, "parked");
    if (!parked) throw new Error("no parked delivery");
    expect(parked.attempts).toBe(0);
    expect(await partnerLog(path)).toEqual([]);

    const enabled = await expectStatus<PartnerBody>(await post(`/v1/partners/${partner.id}/enable`), 200);
    expect(enabled).toMatchObject({ id: partner.id, status: "active", disabled_reason: null, resumed_deliveries: 1 });

    const [request] = await received(path, 1);
    expect(new URL(request?.url ?? PARTNER).searchParams.get("d")).toBe(parked.id);
    const [delivered] = await deliveriesIn(partner.id, 1, "delivered");
    expect(delivered?.id).toBe(parked.id);
    expect(delivered?.attempts).toBe(1);
    expect(await partnerLog(path)).toHaveLength(1);
  });

  it("answers 404 to disable or enable an unknown partner", async () => {
    const id = `ptn_${uniqueId("ghost")}`;
    await expectProblem(await post(`/v1/partners/${id}/disable`), 404, "not_found");
    await expectProblem(await post(`/v1/partners/${id}/enable`), 404, "not_found");
  });
});

describe("rotating a partner's signing secret", () => {
  it("signs with both secrets during the grace period, each verifiable by the standardwebhooks library", async () => {
    const network = await createNetwork();
    const path = `/ok/${uniqueId("rotate-grace")}`;
    const partner = await create({ url_template: `${PARTNER}${path}`, sign: true, filters: onlyFrom(network) });
    const oldSecret = partner.signing_secret ?? "";
    const before = Date.now();
    const rotated = await expectStatus<RotatedPartnerSecret>(await post(`/v1/partners/${partner.id}/secrets`, {}), 201);
    expect(rotated.signing_secret).toMatch(SECRET_PATTERN);
    expect(rotated.signing_secret).not.toBe(oldSecret);
    expect(rotated.secret_id).toMatch(/^psec_/);
    const graceMs = Number(env.SECRET_GRACE_PERIOD_SECONDS) * 1000;
    const expiresAt = Date.parse(rotated.previous_secrets_expire_at);
    expect(expiresAt).toBeGreaterThanOrEqual(before + graceMs - 1000);
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + graceMs + 1000);
    expect(await signingCiphertexts(partner.id)).toHaveLength(2);

    await expectStatus(await postback(network, makePostback()), 200);
    const [request] = await received(path, 1);
    if (!request) throw new Error("the partner received nothing");
    const signatures = signaturesOf(request);
    expect(signatures).toHaveLength(2);
    for (const signature of signatures) expect(signature).toMatch(/^v1,/);
    expect(verifies(oldSecret, request)).toBe(true);
    expect(verifies(rotated.signing_secret, request)).toBe(true);
    expect(verifies(`${SECRET_PREFIX}${btoa("x".repeat(32))}`, request)).toBe(false);
  });

  it("with grace_period_seconds 0, signs with the new secret only, at once", async () => {
    const network = await createNetwork();
    const path = `/ok/${uniqueId("rotate-now")}`;
    const partner = await create({ url_template: `${PARTNER}${path}`, sign: true, filters: onlyFrom(network) });
    const oldSecret = partner.signing_secret ?? "";

    // A first delivery, so this isolate has the partner's keys cached when the rotation happens.
    await expectStatus(await postback(network, makePostback()), 200);
    const [first] = await received(path, 1);
    if (!first) throw new Error("the partner received nothing");
    expect(verifies(oldSecret, first)).toBe(true);

    const rotated = await expectStatus<RotatedPartnerSecret>(
      await post(`/v1/partners/${partner.id}/secrets`, { grace_period_seconds: 0 }),
      201,
    );
    await expectStatus(await postback(network, makePostback()), 200);
    const [, second] = await received(path, 2);
    if (!second) throw new Error("the partner received one request");
    expect(signaturesOf(second), JSON.stringify(second.headers)).toHaveLength(1);
    expect(verifies(rotated.signing_secret, second)).toBe(true);
    expect(verifies(oldSecret, second)).toBe(false);
  });

  it("refuses a bad grace period (422) and answers 404 for an unknown partner", async () => {
    const partner = await create({ url_template: `${PARTNER}/ok/x`, sign: true, filters: nobodysEvents() });
    const negative = await expectProblem(
      await post(`/v1/partners/${partner.id}/secrets`, { grace_period_seconds: -1 }),
      422,
      "validation_failed",
    );
    expectLocations(negative, ["body.grace_period_seconds"]);
    expect(await signingCiphertexts(partner.id)).toHaveLength(1);
    await expectProblem(await post(`/v1/partners/ptn_${uniqueId("ghost")}/secrets`, {}), 404, "not_found");
  });
});

describe("previewing a partner's request", () => {
  it("renders a GET with every value percent-encoded, and sends nothing", async () => {
    const path = `/ok/${uniqueId("preview-get")}`;
    const partner = await create({
      url_template: `${PARTNER}${path}?tx={transaction_id}&click={click_id}&sub={meta.sub1}&amount={amount}&s={status}`,
      headers: { "X-Api-Key": "k-1" },
      filters: nobodysEvents(),
    });
    const preview = await expectStatus<PreviewedRequest>(
      await post(`/v1/partners/${partner.id}/preview`, {
        conversion: { transaction_id: "a&b=c", click_id: 'say "hi"', amount: 12.5, status: "paid" },
        meta: { sub1: "x y/z?" },
      }),
      200,
    );
    expect(preview.method).toBe("GET");
    expect(preview.body).toBeNull();
    expect(preview.headers).toEqual({ "X-Api-Key": "k-1" });
    expect(preview.url).toBe(`${PARTNER}${path}?tx=a%26b%3Dc&click=say%20%22hi%22&sub=x%20y%2Fz%3F&amount=12.5&s=paid`);
    const query = new URL(preview.url).searchParams;
    expect(query.get("tx")).toBe("a&b=c");
    expect(query.get("click")).toBe('say "hi"');
    expect(query.get("b")).toBeNull();
    expect(await partnerLog(path)).toEqual([]);
  });

  it("renders a signed POST with values JSON-escaped and signature headers that verify, and sends nothing", async () => {
    const path = `/ok/${uniqueId("preview-post")}`;
    const partner = await create({
      url_template: `${PARTNER}${path}`,
      method: "POST",
      sign: true,
      body_template: '{"tx":"{transaction_id}","click":"{click_id}","sub1":"{meta.sub1}","payout":{amount}}',
      filters: nobodysEvents(),
    });
    const preview = await expectStatus<PreviewedRequest>(
      await post(`/v1/partners/${partner.id}/preview`, {
        conversion: { transaction_id: "a&b=c", click_id: 'say "hi" \\ "}' },
        meta: { sub1: '","injected":"yes' },
      }),
      200,
    );
    expect(preview.method).toBe("POST");
    expect(preview.url).toBe(`${PARTNER}${path}`);
    const body = preview.body ?? "";
    expect(body).toContain('\\"hi\\"');
    expect(JSON.parse(body)).toEqual({
      tx: "a&b=c",
      click: 'say "hi" \\ "}',
      sub1: '","injected":"yes',
      payout: 29.99,
    });
    expect(preview.headers["webhook-id"]).toEqual(expect.any(String));
    expect(preview.headers["webhook-timestamp"]).toMatch(/^\d+$/);
    expect(preview.headers["webhook-signature"]).toMatch(/^v1,/);
    expect(() => new Webhook(partner.signing_secret ?? "").verify(body, preview.headers)).not.toThrow();
    expect(await partnerLog(path)).toEqual([]);
  });

  it("answers 422, not 500, when the sample conversion cannot fill the body template", async () => {
    // The template is valid with the lint's sample (its meta.sub2 is a number), but a text sub2 renders
    // `{"n":seven}`: the delivery consumer records that as a render failure, and the preview must say so.
    const path = `/ok/${uniqueId("preview-broken")}`;
    const partner = await create({
      url_template: `${PARTNER}${path}`,
      method: "POST",
      body_template: '{"payout":{amount},"n":{meta.sub2}}',
      filters: nobodysEvents(),
    });
    const problem = await expectProblem(
      await post(`/v1/partners/${partner.id}/preview`, { meta: { sub2: "seven" } }),
      422,
      "validation_failed",
    );
    expect(problem.errors.map((e) => e.message).join("\n")).toMatch(/JSON/);
    // Without an amount, the unquoted {amount} is null: that body is sent, not refused.
    const preview = await expectStatus<PreviewedRequest>(
      await post(`/v1/partners/${partner.id}/preview`, { conversion: { amount: null }, meta: { sub2: 2 } }),
      200,
    );
    expect(preview.body).toBe('{"payout":null,"n":2}');
    expect(await partnerLog(path)).toEqual([]);
  });

  it("signs a GET over its request line, as the delivery consumer does", async () => {
    const path = `/ok/${uniqueId("preview-signed-get")}`;
    const partner = await create({
      url_template: `${PARTNER}${path}?tx={transaction_id}&s={status}`,
      sign: true,
      filters: nobodysEvents(),
    });
    const preview = await expectStatus<PreviewedRequest>(
      await post(`/v1/partners/${partner.id}/preview`, { conversion: { transaction_id: "t 1" } }),
      200,
    );
    const webhook = new Webhook(partner.signing_secret ?? "");
    const line = `GET ${path}?tx=t%201&s=approved`;
    expect(signedContentOf(preview)).toBe(line);
    expect(() => webhook.verify(line, preview.headers, { jsonParse: false })).not.toThrow();
    expect(() => webhook.verify(line.replace("approved", "paid"), preview.headers, { jsonParse: false })).toThrow();
  });

  it("answers 409 when the delivery would be blocked before sending, as a partner saved under other rules", async () => {
    const partner = await create({
      url_template: `${PARTNER}/ok/${uniqueId("preview-blocked")}`,
      filters: nobodysEvents(),
    });
    await env.DB.prepare("UPDATE partners SET url_template = ? WHERE id = ?")
      .bind("http://127.0.0.1:9000/pb", partner.id)
      .run();
    const problem = await expectProblem(await post(`/v1/partners/${partner.id}/preview`), 409, "invalid_state");
    expect(problem.detail).toMatch(/would be blocked before sending: the partner URL must use https/);
  });

  it("has no signature headers when sign is false, and answers 404 for an unknown partner", async () => {
    const partner = await create({
      url_template: `${PARTNER}/ok/${uniqueId("preview-plain")}`,
      filters: nobodysEvents(),
    });
    const preview = await expectStatus<PreviewedRequest>(await post(`/v1/partners/${partner.id}/preview`), 200);
    expect(Object.keys(preview.headers).filter((name) => name.startsWith("webhook-"))).toEqual([]);
    await expectProblem(await post(`/v1/partners/ptn_${uniqueId("ghost")}/preview`, {}), 404, "not_found");
  });
});

describe("deleting a partner", () => {
  it("answers 204, then 404, and fails its unfinished deliveries", async () => {
    const network = await createNetwork();
    const path = `/ok/${uniqueId("deleted")}`;
    const partner = await create({ url_template: `${PARTNER}${path}`, filters: onlyFrom(network) });
    await expectStatus(await post(`/v1/partners/${partner.id}/disable`), 200);
    await expectStatus(await postback(network, makePostback()), 200);
    const [parked] = await deliveriesIn(partner.id, 1, "parked");
    if (!parked) throw new Error("no parked delivery");

    const response = await admin(`/v1/partners/${partner.id}`, { method: "DELETE" });
    expect(response.status, await response.clone().text()).toBe(204);
    expect(await response.text()).toBe("");
    await expectProblem(await admin(`/v1/partners/${partner.id}`), 404, "not_found");
    await expectProblem(await admin(`/v1/partners/${partner.id}`, { method: "DELETE" }), 404, "not_found");

    const [failed] = await deliveriesOf(partner.id);
    expect(failed).toMatchObject({ id: parked.id, state: "failed", last_error: "partner deleted" });
    expect(await signingCiphertexts(partner.id)).toEqual([]);
    expect(await partnerLog(path)).toEqual([]);
  });
});

describe("replaying a partner's deliveries", () => {
  it("counts dead deliveries in a dry run, then replays them with their ids kept", async () => {
    const network = await createNetwork();
    const unique = uniqueId("replay");
    const partner = await create({
      url_template: `${PARTNER}/fail/${unique}?tx={transaction_id}`,
      sign: true,
      retry_schedule_seconds: [1],
      filters: onlyFrom(network),
    });
    await expectStatus(await postback(network, makePostback()), 200);
    await expectStatus(await postback(network, makePostback()), 200);
    const dead = await deliveriesIn(partner.id, 2, "dead");
    const deadIds = dead.map((d) => d.id).sort();
    const failedLog = await partnerLog(`/fail/${unique}`);
    expect(failedLog).toHaveLength(4);

    const dryRun = await replay(partner.id, { dry_run: true });
    expect(dryRun).toEqual({ dry_run: true, matched: 2, replayed: 0, remaining: 2 });
    expect(await deliveriesOf(partner.id)).toEqual(dead);

    await expectStatus(await patch(partner.id, { url_template: `${PARTNER}/ok/${unique}?tx={transaction_id}` }), 200);
    const replayed = await replay(partner.id, {});
    expect(replayed).toEqual({ dry_run: false, matched: 2, replayed: 2, remaining: 0 });

    const delivered = await deliveriesIn(partner.id, 2, "delivered");
    expect(delivered.map((d) => d.id).sort()).toEqual(deadIds);
    for (const d of delivered) expect(d.attempts).toBe(3);
    const okLog = await received(`/ok/${unique}`, 2);
    expect(okLog.map((r) => r.headers["webhook-id"]).sort()).toEqual(deadIds);
    expect(new Set(failedLog.map((r) => r.headers["webhook-id"]))).toEqual(new Set(deadIds));
    for (const request of okLog) expect(verifies(partner.signing_secret ?? "", request)).toBe(true);

    expect(await replay(partner.id, { dry_run: true })).toEqual({
      dry_run: true,
      matched: 0,
      replayed: 0,
      remaining: 0,
    });
  });

  it("replays only deliveries created in [since, until)", async () => {
    const network = await createNetwork();
    const unique = uniqueId("replay-range");
    const partner = await create({
      url_template: `${PARTNER}/fail/${unique}`,
      retry_schedule_seconds: [1],
      filters: onlyFrom(network),
    });
    await expectStatus(await postback(network, makePostback()), 200);
    const [older] = await deliveriesIn(partner.id, 1, "dead");
    await expectStatus(await postback(network, makePostback()), 200);
    const both = await deliveriesIn(partner.id, 2, "dead");
    const newer = both.find((d) => d.id !== older?.id);
    if (!older || !newer) throw new Error("expected two deliveries");
    expect(newer.created_at > older.created_at, `${older.created_at} < ${newer.created_at}`).toBe(true);

    expect((await replay(partner.id, { dry_run: true, since: newer.created_at })).matched).toBe(1);
    expect((await replay(partner.id, { dry_run: true, until: newer.created_at })).matched).toBe(1);
    expect(
      (await replay(partner.id, { dry_run: true, since: older.created_at, until: newer.created_at })).matched,
    ).toBe(1);
    expect((await replay(partner.id, { dry_run: true, until: older.created_at })).matched).toBe(0);
    expect((await replay(partner.id, { dry_run: true, states: ["failed", "parked"] })).matched).toBe(0);
    expect((await replay(partner.id, { dry_run: true, states: ["dead"] })).matched).toBe(2);

    await expectStatus(await patch(partner.id, { url_template: `${PARTNER}/ok/${unique}` }), 200);
    expect(await replay(partner.id, { since: newer.created_at })).toEqual({
      dry_run: false,
      matched: 1,
      replayed: 1,
      remaining: 0,
    });
    const [request] = await received(`/ok/${unique}`, 1);
    expect(request).toBeDefined();
    await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.find((d) => d.id === newer.id)?.state === "delivered" ? rows : null;
    });
    expect((await deliveriesOf(partner.id)).find((d) => d.id === older.id)?.state).toBe("dead");
    expect(await partnerLog(`/ok/${unique}`)).toHaveLength(1);
  });

  it("refuses to replay for a disabled partner (409 partner_disabled) but still counts in a dry run", async () => {
    const network = await createNetwork();
    const unique = uniqueId("replay-disabled");
    const partner = await create({
      url_template: `${PARTNER}/fail/${unique}`,
      retry_schedule_seconds: [1],
      filters: onlyFrom(network),
    });
    await expectStatus(await postback(network, makePostback()), 200);
    const dead = await deliveriesIn(partner.id, 1, "dead");
    await expectStatus(await post(`/v1/partners/${partner.id}/disable`), 200);

    const problem = await expectProblem(await post(`/v1/partners/${partner.id}/replay`, {}), 409, "partner_disabled");
    expectLocations(problem, ["path.partner_id"]);
    expect(await replay(partner.id, { dry_run: true })).toEqual({
      dry_run: true,
      matched: 1,
      replayed: 0,
      remaining: 1,
    });
    expect(await deliveriesOf(partner.id)).toEqual(dead);
  });

  it("refuses bad replay bodies (422) and unknown partners (404)", async () => {
    const partner = await create({ url_template: `${PARTNER}/ok/x`, filters: nobodysEvents() });
    const cases: [Record<string, unknown>, string][] = [
      [{ since: "yesterday" }, "body.since"],
      [{ states: ["delivered"] }, "body.states[0]"],
      [{ states: [] }, "body.states"],
      [{ dry_run: "yes" }, "body.dry_run"],
      [{ everything: true }, "body.everything"],
    ];
    for (const [body, location] of cases) {
      const problem: ProblemBody = await expectProblem(
        await post(`/v1/partners/${partner.id}/replay`, body),
        422,
        "validation_failed",
      );
      expectLocations(problem, [location]);
    }
    await expectProblem(
      await post(`/v1/partners/ptn_${uniqueId("ghost")}/replay`, { dry_run: true }),
      404,
      "not_found",
    );
  });
});

describe("a partner's order, pace and breaker settings", () => {
  it("keeps what the operator sets, merges a breaker patch over the rest, and shows the coordinator's view", async () => {
    const created = await expectStatus<PartnerBody>(
      await admin("/v1/partners", {
        method: "POST",
        body: JSON.stringify({
          name: uniqueId("paced"),
          url_template: `${PARTNER}/ok/${uniqueId("paced")}`,
          filters: { networks: ["nobody-sends-here"] },
          delivery_order: "coalesce",
          max_in_flight: 4,
          max_per_second: 20,
          breaker: { min_attempts: 25, cooldown_seconds: 30 },
        }),
      }),
      201,
    );
    expect(created).toMatchObject({
      delivery_order: "coalesce",
      max_in_flight: 4,
      max_per_second: 20,
      breaker: { min_attempts: 25, cooldown_seconds: 30, failure_percent: 80, window_seconds: 259_200 },
    });
    const patched = await expectStatus<PartnerBody>(
      await patch(created.id, { breaker: { failure_percent: 50 }, max_per_second: null }),
      200,
    );
    expect(patched).toMatchObject({
      max_per_second: null,
      breaker: { min_attempts: 25, cooldown_seconds: 30, failure_percent: 50 },
    });
    const read = await expectStatus<PartnerBody & { pace: Record<string, unknown>; health: Record<string, unknown> }>(
      await admin(`/v1/partners/${created.id}`),
      200,
    );
    expect(read.pace).toMatchObject({ max_in_flight: 4, max_per_second: null, in_flight_limit: 2, changes: [] });
    expect(read.health).toEqual({ breaker: "closed", reason: null, probe_at: null, waiting: 0, transitions: [] });
  });

  it.each([
    [{ delivery_order: "random" }, "body.delivery_order"],
    [{ max_in_flight: 0 }, "body.max_in_flight"],
    [{ max_in_flight: 101 }, "body.max_in_flight"],
    [{ max_per_second: 0 }, "body.max_per_second"],
    [{ breaker: { failure_percent: 101 } }, "body.breaker.failure_percent"],
    [{ breaker: { cooldown_seconds: 0 } }, "body.breaker.cooldown_seconds"],
    [{ breaker: { threshold: 3 } }, "body.breaker.threshold"],
  ])("refuses %j with a 422 naming %s", async (fields, location) => {
    const response = await admin("/v1/partners", {
      method: "POST",
      body: JSON.stringify({ name: uniqueId("bad"), url_template: `${PARTNER}/ok/bad`, ...fields }),
    });
    const problem = await expectStatus<{ errors: { location: string }[] }>(response, 422);
    expect(problem.errors.map((e) => e.location)).toContain(location);
  });
});
