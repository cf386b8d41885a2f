/**
 * The dead-letters admin API through the real app: letters kept by the real consumers (and rows
 * written as the consumers write them) are listed, filtered and paged, inspected with their body,
 * and replayed into the queue they came from, where the effect shows (an event reaches D1, a click
 * is recorded, a dead delivery reaches its partner with its id); a letter that cannot be replayed
 * is refused with nothing sent, and a second replay needs `force`.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { createApp } from "../src/app";
import type { ClickMessage } from "../src/domain/click";
import worker from "../src/index";
import { deadLetterStatement } from "../src/storage/d1";
import {
  ADMIN_TOKEN,
  admin,
  BASE,
  conversionInD1,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makeEventMessage,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";
import { expectProblem } from "./support/problems";

interface DeadLetter {
  id: string;
  queue: string;
  source: string | null;
  reason: string;
  attempts: number;
  created_at: string;
  replayed_at: string | null;
  replayable: boolean;
  not_replayable_reason: string | null;
}

interface DeadLetterDetail extends DeadLetter {
  body: unknown;
}

interface DeadLetterPage {
  data: DeadLetter[];
  next_cursor: string | null;
}

/** A dead letter as a consumer writes it (storage/d1.ts deadLetterStatement), at a chosen time. */
async function keep(
  queue: string,
  body: unknown,
  createdAt: string,
  reason = "exhausted its retries",
): Promise<string> {
  const id = uniqueId("msg");
  await env.DB.batch([deadLetterStatement(env.DB, queue, { id, body, attempts: 3 }, reason, createdAt)]);
  return `${queue}:${id}`;
}

function path(id: string): string {
  return `/v1/dead-letters/${encodeURIComponent(id)}`;
}

function replay(id: string, body?: Record<string, unknown>): Promise<Response> {
  return admin(`${path(id)}/replay`, { method: "POST", ...(body ? { body: JSON.stringify(body) } : {}) });
}

async function list(query: Record<string, string>): Promise<DeadLetterPage> {
  return expectStatus<DeadLetterPage>(await admin(`/v1/dead-letters?${new URLSearchParams(query)}`), 200);
}

async function detail(id: string): Promise<DeadLetterDetail> {
  return expectStatus<DeadLetterDetail>(await admin(path(id)), 200);
}

/** A time window of its own per test (the file's tests share D1): the given second of a unique minute in 2001. */
let window = 0;
function windowOf(): (second: number) => string {
  window += 1;
  const minute = String(window).padStart(2, "0");
  return (second) => `2001-01-01T00:${minute}:${String(second).padStart(2, "0")}.000Z`;
}

/** The app with queue producers that only record what they are given: proves what was (not) sent. */
function appWithRecordingQueues() {
  const sent: { queue: string; body: unknown }[] = [];
  const recording = (queue: string) => ({
    send: async (body: unknown) => {
      sent.push({ queue, body });
    },
    sendBatch: async (messages: Iterable<{ body: unknown }>) => {
      for (const message of messages) sent.push({ queue, body: message.body });
    },
  });
  const testEnv = {
    ...env,
    EVENTS: recording("events"),
    DELIVERIES: recording("deliveries"),
    REQUEST_LOG: recording("requests"),
    CLICKS: recording("clicks"),
  } as unknown as Env;
  const app = createApp();
  const fetch = (target: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
    if (init.body !== undefined) headers.set("content-type", "application/json");
    return app.fetch(new Request(`${BASE}${target}`, { ...init, headers }), testEnv, createExecutionContext());
  };
  return { sent, fetch };
}

describe("GET /v1/dead-letters", () => {
  it("lists newest first, filters by queue (its DLQ's letters too) and time, and pages with a cursor", async () => {
    const at = windowOf();
    const events = await keep("postback-events", { v: 99 }, at(1), "invalid event message");
    const eventsDlq = await keep("postback-events-dlq", makeEventMessage(), at(2));
    const clicks = await keep("postback-clicks-dlq", { v: 1, clicks: [] }, at(3));
    const deliveries = await keep("postback-deliveries", { nonsense: true }, at(4), "invalid delivery message");
    const outside = await keep("postback-events", { v: 99 }, at(10));

    const everything = await list({ since: at(0), until: at(10) });
    expect(everything.data.map((d) => d.id)).toEqual([deliveries, clicks, eventsDlq, events]);
    expect(everything.next_cursor).toBeNull();
    expect(everything.data.map((d) => d.id)).not.toContain(outside);

    const onlyEvents = await list({ since: at(0), until: at(10), queue: "events" });
    expect(onlyEvents.data.map((d) => d.id)).toEqual([eventsDlq, events]);
    expect(onlyEvents.data.map((d) => d.source)).toEqual(["events", "events"]);

    const first = await list({ since: at(0), until: at(10), limit: "3" });
    expect(first.data.map((d) => d.id)).toEqual([deliveries, clicks, eventsDlq]);
    expect(first.next_cursor).not.toBeNull();
    const second = await list({ since: at(0), until: at(10), limit: "3", cursor: first.next_cursor ?? "" });
    expect(second.data.map((d) => d.id)).toEqual([events]);
    expect(second.next_cursor).toBeNull();
  });

  it("says which letters can be replayed, and why not", async () => {
    const at = windowOf();
    const valid = await keep("postback-events-dlq", makeEventMessage(), at(1));
    const invalid = await keep("postback-events", { v: 99, nonsense: true }, at(2), "invalid event message");
    const { data } = await list({ since: at(0), until: at(9) });
    const byId = new Map(data.map((d) => [d.id, d]));
    expect(byId.get(valid)).toMatchObject({ replayable: true, not_replayable_reason: null, source: "events" });
    expect(byId.get(invalid)?.replayable).toBe(false);
    expect(byId.get(invalid)?.not_replayable_reason).toMatch(/not a valid events message \(v: /);
  });

  it("rejects a queue it does not know and a bad time, naming the parameter", async () => {
    const problem = await expectProblem(
      await admin("/v1/dead-letters?queue=postback-events&since=yesterday"),
      422,
      "validation_failed",
    );
    expect(problem.errors.map((e) => e.location).sort()).toEqual(["query.queue", "query.since"]);
  });
});

describe("GET /v1/dead-letters/{id}", () => {
  it("shows the message body, reason, attempts and when it was kept; 404 for an unknown id", async () => {
    const at = windowOf();
    const message = makeEventMessage();
    const id = await keep("postback-events-dlq", message, at(5), "exhausted its retries on the events queue");
    const letter = await detail(id);
    expect(letter).toMatchObject({
      id,
      queue: "postback-events-dlq",
      source: "events",
      reason: "exhausted its retries on the events queue",
      attempts: 3,
      created_at: at(5),
      replayed_at: null,
      replayable: true,
    });
    expect(letter.body).toEqual(JSON.parse(JSON.stringify(message)));
    // The id's colon may be sent as it is, as the docs' curl examples do.
    expect((await expectStatus<DeadLetterDetail>(await admin(`/v1/dead-letters/${id}`), 200)).id).toBe(id);
    await expectProblem(await admin(path("postback-events:nope")), 404, "not_found");
  });
});

describe("POST /v1/dead-letters/{id}/replay", () => {
  it("sends an events letter back to the EVENTS queue (a DLQ's letter too): the event reaches D1", async () => {
    const network = uniqueId("net");
    // An event its consumer refused, as one an older schema refused would be, now a valid message.
    const message = makeEventMessage({ network_id: network });
    const id = await keep("postback-events", message, new Date().toISOString(), "invalid event message: …");
    expect(await conversionInD1(network, message.transaction_id)).toBeNull();

    const replayed = await expectStatus<DeadLetterDetail>(await replay(id), 202);
    expect(replayed.replayed_at).not.toBeNull();
    expect((await detail(id)).replayed_at).toBe(replayed.replayed_at);
    const conversion = await eventually(() => conversionInD1(network, message.transaction_id));
    expect(conversion).toMatchObject({ status: "pending", amount: "5.00" });
  });

  it("refuses a second replay (409 invalid_state), and replays again with force", async () => {
    const { sent, fetch } = appWithRecordingQueues();
    const message = makeEventMessage();
    const id = await keep("postback-events-dlq", message, new Date().toISOString());

    const first = await expectStatus<DeadLetterDetail>(await fetch(`${path(id)}/replay`, { method: "POST" }), 202);
    expect(sent).toEqual([{ queue: "events", body: JSON.parse(JSON.stringify(message)) }]);

    const again = await expectProblem(await fetch(`${path(id)}/replay`, { method: "POST" }), 409, "invalid_state");
    expect(again.detail).toContain(`was replayed at ${first.replayed_at}`);
    expect(again.detail).toContain('"force": true');
    expect(sent).toHaveLength(1);

    const forced = await expectStatus<DeadLetterDetail>(
      await fetch(`${path(id)}/replay`, { method: "POST", body: JSON.stringify({ force: true }) }),
      202,
    );
    expect(sent).toHaveLength(2);
    expect(forced.replayed_at && first.replayed_at && forced.replayed_at >= first.replayed_at).toBe(true);
  });

  it("refuses a letter whose body is not a valid message of its queue (422 not_replayable), sending nothing", async () => {
    const marker = uniqueId("nonsense");
    // The real consumer keeps a message it cannot parse.
    await env.EVENTS.send({ v: 99, nonsense: marker });
    const row = await eventually(() =>
      env.DB.prepare("SELECT id FROM dead_letters WHERE body LIKE ?").bind(`%${marker}%`).first<{ id: string }>(),
    );
    const letter = await detail(row.id);
    expect(letter).toMatchObject({ queue: "postback-events", source: "events", replayable: false });
    expect(letter.reason).toMatch(/invalid event message/);

    const { sent, fetch } = appWithRecordingQueues();
    const problem = await expectProblem(
      await fetch(`${path(row.id)}/replay`, { method: "POST" }),
      422,
      "not_replayable",
    );
    expect(problem.errors).toEqual([
      { location: "path.dead_letter_id", message: expect.stringMatching(/not a valid events message/) },
    ]);
    expect(sent).toEqual([]);
    expect((await detail(row.id)).replayed_at).toBeNull();
    // force does not make an invalid body valid.
    await expectProblem(
      await fetch(`${path(row.id)}/replay`, { method: "POST", body: JSON.stringify({ force: true }) }),
      422,
      "not_replayable",
    );
    expect(sent).toEqual([]);
  });

  it("refuses a letter of a queue the hub does not know, and an unknown id", async () => {
    const { sent, fetch } = appWithRecordingQueues();
    const id = await keep("some-old-queue", makeEventMessage(), new Date().toISOString());
    const problem = await expectProblem(await fetch(`${path(id)}/replay`, { method: "POST" }), 422, "not_replayable");
    expect(problem.detail).toContain("is not one of this hub's queues");
    await expectProblem(await fetch(`${path("postback-events:ghost")}/replay`, { method: "POST" }), 404, "not_found");
    expect(sent).toEqual([]);
  });

  it("sends a clicks letter to the CLICKS queue: the click is recorded", async () => {
    const clickId = uniqueId("clk");
    const message: ClickMessage = {
      v: 1,
      clicks: [
        {
          click_id: clickId,
          offer_id: "ofr_test",
          partner_id: "ptn_test",
          clicked_at: new Date().toISOString(),
          sub_ids: { sub1: "spring" },
          country: "NL",
          user_agent: null,
          referrer: null,
          ip_prefix: null,
        },
      ],
    };
    const id = await keep("postback-clicks-dlq", message, new Date().toISOString());
    await expectStatus(await replay(id), 202);
    const click = await eventually(() =>
      env.DB.prepare("SELECT sub1 FROM clicks WHERE click_id = ?").bind(clickId).first<{ sub1: string }>(),
    );
    expect(click.sub1).toBe("spring");
  });

  it("replays a deliveries letter's delivery, with its id, once its partner is fixed", async () => {
    const network = await createNetwork();
    const unique = uniqueId("dlq-delivery");
    // A partner that fails and would retry only in an hour: its delivery is still retrying.
    const partner = await createPartner({
      url_template: `${PARTNER}/fail/${unique}`,
      retry_schedule_seconds: [3600],
      sign: true,
      filters: { networks: [network.id] },
    });
    await expectStatus(await postback(network, makePostback()), 200);
    const [delivery] = await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 1 && rows[0]?.state === "retrying" ? rows : null;
    });
    if (!delivery) throw new Error("no delivery");

    // Its queue message exhausts the queue's retries: the DLQ consumer marks it dead and keeps a letter.
    const messageId = uniqueId("msg");
    const batch = createMessageBatch("postback-deliveries-dlq", [
      { id: messageId, timestamp: new Date(), attempts: 100, body: { v: 1, delivery_id: delivery.id } },
    ]);
    const ctx = createExecutionContext();
    await (worker as ExportedHandler<Env>).queue?.(batch, env, ctx);
    expect((await getQueueResult(batch, ctx)).ackAll).toBe(true);
    expect((await deliveriesOf(partner.id))[0]?.state).toBe("dead");
    const letterId = `postback-deliveries-dlq:${messageId}`;
    expect(await detail(letterId)).toMatchObject({ source: "deliveries", replayable: true });

    await expectStatus(
      await admin(`/v1/partners/${partner.id}`, {
        method: "PATCH",
        body: JSON.stringify({ url_template: `${PARTNER}/ok/${unique}` }),
      }),
      200,
    );
    await expectStatus(await replay(letterId), 202);
    const requests = await eventually(async () => {
      const log = await partnerLog(`/ok/${unique}`);
      return log.length > 0 ? log : null;
    });
    expect(requests.map((r) => r.headers["webhook-id"])).toEqual([delivery.id]);
    await eventually(async () => ((await deliveriesOf(partner.id))[0]?.state === "delivered" ? true : null));

    // Delivered now: a forced replay has nothing to send.
    const problem = await expectProblem(await replay(letterId, { force: true }), 409, "invalid_state");
    expect(problem.detail).toContain("was delivered");
    expect(await partnerLog(`/ok/${unique}`)).toHaveLength(1);
  });

  it("refuses a deliveries letter whose delivery no longer exists (422), or whose partner is disabled (409)", async () => {
    const { sent, fetch } = appWithRecordingQueues();
    const ghost = await keep(
      "postback-deliveries-dlq",
      { v: 1, delivery_id: `dlv_${uniqueId("ghost")}` },
      new Date().toISOString(),
    );
    const gone = await expectProblem(await fetch(`${path(ghost)}/replay`, { method: "POST" }), 422, "not_replayable");
    expect(gone.detail).toContain("no longer exists");

    const network = await createNetwork();
    const unique = uniqueId("dlq-disabled");
    const partner = await createPartner({
      url_template: `${PARTNER}/fail/${unique}`,
      retry_schedule_seconds: [1],
      filters: { networks: [network.id] },
    });
    await expectStatus(await postback(network, makePostback()), 200);
    const [dead] = await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 1 && rows[0]?.state === "dead" ? rows : null;
    }, 20_000);
    if (!dead) throw new Error("no delivery");
    await expectStatus(await admin(`/v1/partners/${partner.id}/disable`, { method: "POST" }), 200);
    const letter = await keep("postback-deliveries-dlq", { v: 1, delivery_id: dead.id }, new Date().toISOString());
    await expectProblem(await fetch(`${path(letter)}/replay`, { method: "POST" }), 409, "partner_disabled");
    expect(sent).toEqual([]);
    expect((await detail(letter)).replayed_at).toBeNull();
    expect((await deliveriesOf(partner.id))[0]?.state).toBe("dead");
  });

  it("rejects an unknown field in its body, naming it", async () => {
    const id = await keep("postback-events-dlq", makeEventMessage(), new Date().toISOString());
    const problem = await expectProblem(await replay(id, { forse: true }), 422, "validation_failed");
    expect(problem.errors.map((e) => e.location)).toEqual(["body.forse"]);
  });
});
