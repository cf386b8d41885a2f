/**
 * Formatting functions through the real app: a chain that cannot work is a 422 naming the field and
 * the position, and nothing is stored; macros that some conversions leave empty come back as
 * warnings from create, update and preview (the partner is saved all the same); and deliveries reach
 * the fake partner formatted, a conversion without an amount included (delivered, not failed).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
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
  uniqueId,
} from "./support/helpers";
import { expectLocations, expectProblem, type FieldError } from "./support/problems";

interface SavedPartner {
  id: string;
  name: string;
  url_template: string;
  body_template: string | null;
  warnings: FieldError[];
}

interface PreviewedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | null;
  warnings: FieldError[];
}

/** Filters on a network no test posts to: the partner receives nothing. */
function nobodysEvents() {
  return { networks: [uniqueId("net-none")] };
}

function createRequest(fields: Record<string, unknown>): Promise<Response> {
  return admin("/v1/partners", { method: "POST", body: JSON.stringify({ name: uniqueId("partner"), ...fields }) });
}

function patch(id: string, fields: Record<string, unknown>): Promise<Response> {
  return admin(`/v1/partners/${id}`, { method: "PATCH", body: JSON.stringify(fields) });
}

async function partnersNamed(name: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM partners WHERE name = ?")
    .bind(name)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

async function received(prefix: string, count: number): Promise<PartnerRequestLog[]> {
  return eventually(async () => {
    const log = await partnerLog(prefix);
    return log.length >= count ? log : null;
  }, 20_000);
}

describe("a formatting function that cannot work", () => {
  it("is a 422 naming the field, the position and the macro, and stores nothing", async () => {
    const name = uniqueId("bad-function");
    const url_template = `${PARTNER}/ok/x?tx={transaction_id}&amount={amount|centz}`;
    const body_template = '{"tx":"{transaction_id}","day":"{event_time|date}","s":{status|map:approved}}';
    const problem = await expectProblem(
      await admin("/v1/partners", {
        method: "POST",
        body: JSON.stringify({ name, url_template, method: "POST", body_template }),
      }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.url_template", "body.body_template"]);
    expect(problem.detail).toContain("body.url_template");
    const urlMessages = problem.errors.filter((e) => e.location === "body.url_template").map((e) => e.message);
    expect(urlMessages).toEqual([
      `at character ${url_template.indexOf("{amount|centz}") + 1}: {amount|centz}: unknown function centz; known: cents, unix, unix_ms, date, sha256, map, default, upper, lower`,
    ]);
    const bodyMessages = problem.errors.filter((e) => e.location === "body.body_template").map((e) => e.message);
    expect(bodyMessages).toEqual([
      "at character 33: {event_time|date}: date needs a pattern after a colon, like date:YYYY-MM-DD",
      'at character 56: {status|map:approved}: map: "approved" is not a pair like approved=1 (pairs are separated by commas)',
    ]);
    expect(await partnersNamed(name)).toBe(0);
  });

  it("is a 422 on update too, and the stored partner stays as it was", async () => {
    const partner = await expectStatus<SavedPartner>(
      await createRequest({
        url_template: `${PARTNER}/ok/${uniqueId("patch")}?tx={transaction_id}`,
        filters: nobodysEvents(),
      }),
      201,
    );
    const problem = await expectProblem(
      await patch(partner.id, { url_template: `${PARTNER}/ok/x?c={amount|cents:2}&s={status|cents}`, name: "nope" }),
      422,
      "validation_failed",
    );
    expect(problem.errors.map((e) => e.message)).toEqual([
      expect.stringMatching(/^at character 29: \{amount\|cents:2\}: cents takes no argument/),
      expect.stringMatching(/^at character 48: \{status\|cents\}: cents formats \{amount\}, \{payout\} or/),
    ]);
    const stored = await expectStatus<SavedPartner>(await admin(`/v1/partners/${partner.id}`), 200);
    expect(stored).toMatchObject({ name: partner.name, url_template: partner.url_template });
  });

  it("in the host is refused as a macro in the host, as without functions", async () => {
    const problem = await expectProblem(
      await createRequest({ url_template: "https://{network_id|lower}.partner.test/ok/x" }),
      422,
      "validation_failed",
    );
    expectLocations(problem, ["body.url_template"]);
    expect(problem.errors.map((e) => e.message).join("\n")).toMatch(/must not have a macro in the scheme or host/);
  });
});

describe("warnings for macros some conversions leave empty", () => {
  it("come back from create, update and preview, and the partner is saved", async () => {
    const path = `/ok/${uniqueId("warned")}`;
    const url_template = `${PARTNER}${path}?tx={transaction_id}&p={amount}&s1={sub1|default:none}&t={event_time|unix}`;
    const created = await expectStatus<SavedPartner>(
      await createRequest({ url_template, filters: nobodysEvents() }),
      201,
    );
    expect(created.warnings).toEqual([
      {
        location: "body.url_template",
        message: `at character ${url_template.indexOf("{amount}") + 1}: {amount} is empty for a conversion without an amount, and for an attributed partner that does not share it; it is then sent as the empty string. To send something else, add a default: {amount|default:…}`,
      },
    ]);
    const stored = await expectStatus<SavedPartner & { warnings?: unknown }>(
      await admin(`/v1/partners/${created.id}`),
      200,
    );
    expect(stored.url_template).toBe(url_template);
    expect("warnings" in stored).toBe(false);

    const updated = await expectStatus<SavedPartner>(
      await patch(created.id, {
        method: "POST",
        url_template: `${PARTNER}${path}`,
        body_template: '{"tx":"{transaction_id}","p":{amount|cents},"was":"{previous_status}"}',
      }),
      200,
    );
    expect(updated.warnings).toEqual([
      {
        location: "body.body_template",
        message: expect.stringMatching(/^at character 30: \{amount\|cents\} is empty .* sent as null\./),
      },
      {
        location: "body.body_template",
        message: expect.stringMatching(
          /^at character 52: \{previous_status\} is empty for a new conversion; .* sent as the empty string\./,
        ),
      },
    ]);

    const preview = await expectStatus<PreviewedRequest>(
      await admin(`/v1/partners/${created.id}/preview`, {
        method: "POST",
        body: JSON.stringify({ conversion: { amount: null } }),
      }),
      200,
    );
    expect(preview.warnings).toEqual(updated.warnings);
    expect(JSON.parse(preview.body ?? "")).toEqual({ tx: "ord_8812", p: null, was: "" });
    expect(await partnerLog(path)).toEqual([]);

    const quiet = await expectStatus<SavedPartner>(
      await patch(created.id, { body_template: '{"tx":"{transaction_id}","p":{amount|cents|default:0}}' }),
      200,
    );
    expect(quiet.warnings).toEqual([]);
  });
});

describe("deliveries with formatting functions", () => {
  it("reach the partner formatted, and a conversion without an amount is delivered with it empty or null", async () => {
    const network = await createNetwork();
    const prefix = `/ok/${uniqueId("formatted")}`;
    const only = { networks: [network.id] };
    const getter = await expectStatus<SavedPartner>(
      await createRequest({
        url_template: `${PARTNER}${prefix}/get?tx={transaction_id}&c={amount|cents}&t={event_time|unix}&d={event_time|date:DD/MM/YYYY}&s1={sub1|default:none|upper}&st={status|map:approved=1,declined=2|default:0}`,
        filters: only,
      }),
      201,
    );
    const poster = await expectStatus<SavedPartner>(
      await createRequest({
        url_template: `${PARTNER}${prefix}/post`,
        method: "POST",
        body_template:
          '{"tx":"{transaction_id}","cents":{amount|cents},"payout":{amount},"t":{event_time|unix},"h":"{transaction_id|sha256}"}',
        filters: only,
      }),
      201,
    );
    const event_time = "2026-01-15T12:34:56Z";
    const paid = makePostback({ amount: "1500", currency: "JPY", event_time });
    const free = makePostback({ amount: undefined, currency: undefined, status: "pending", event_time });
    await expectStatus(await postback(network, paid), 200);
    await expectStatus(await postback(network, free), 200);

    const gets = await received(`${prefix}/get`, 2);
    const posts = await received(`${prefix}/post`, 2);
    const query = (tx: unknown) => {
      const request = gets.find((r) => new URL(r.url).searchParams.get("tx") === tx);
      return Object.fromEntries(new URL(request?.url ?? "https://x.test").searchParams);
    };
    expect(query(paid.transaction_id)).toEqual({
      tx: paid.transaction_id,
      c: "1500",
      t: "1768480496",
      d: "15/01/2026",
      s1: "NONE",
      st: "1",
    });
    expect(query(free.transaction_id)).toEqual({
      tx: free.transaction_id,
      c: "",
      t: "1768480496",
      d: "15/01/2026",
      s1: "NONE",
      st: "0",
    });
    const bodies = posts.map((r) => JSON.parse(r.body) as Record<string, unknown>);
    const digest = async (text: string) =>
      [...new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)))]
        .map((byte) => byte.toString(16).padStart(2, "0"))
        .join("");
    expect(bodies.find((b) => b.tx === paid.transaction_id)).toEqual({
      tx: paid.transaction_id,
      cents: 1500,
      payout: 1500,
      t: 1768480496,
      h: await digest(String(paid.transaction_id)),
    });
    expect(bodies.find((b) => b.tx === free.transaction_id)).toEqual({
      tx: free.transaction_id,
      cents: null,
      payout: null,
      t: 1768480496,
      h: await digest(String(free.transaction_id)),
    });
    for (const partner of [getter, poster]) {
      const deliveries = await eventually(async () => {
        const rows = await deliveriesOf(partner.id);
        return rows.length === 2 && rows.every((row) => row.state === "delivered") ? rows : null;
      });
      expect(deliveries.map((row) => row.last_error)).toEqual([null, null]);
    }
  });
});
