/**
 * Bulk replay through the real app and pipeline (ingest → EVENTS → coordinator → the fake partner,
 * a replay's deliveries by DELIVERIES → coordinator): a dry run counts exactly what a filter takes
 * and changes nothing; a job, run by its Durable Object's alarm, re-arms the filtered deliveries
 * and each reaches the partner once with its original id; a job that dies mid-step (steps run
 * directly here, with small chunks) completes without losing or doubling a delivery; a job whose
 * runner never started is started by the cron; bad filters are 4xx problems naming the field.
 */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { createReplayJob, runReplayStep } from "../src/operations/replays";
import type { DeliveriesQueue } from "../src/queues/delivery-messages";
import { getReplayJob } from "../src/storage/replays";
import {
  admin,
  createNetwork,
  createPartner,
  type DeliveryRow,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  type TestNetwork,
  type TestPartner,
  uniqueId,
} from "./support/helpers";
import { expectProblem } from "./support/problems";

interface ReplayJob {
  id: string;
  state: "queued" | "running" | "finished" | "failed";
  filter: Record<string, unknown>;
  total: number;
  done: number;
  error: string | null;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

interface DryRun {
  dry_run: true;
  filter: Record<string, unknown>;
  total: number;
  sample: string[];
}

function replays(body: Record<string, unknown>): Promise<Response> {
  return admin("/v1/replays", { method: "POST", body: JSON.stringify(body) });
}

async function dryRun(body: Record<string, unknown>): Promise<DryRun> {
  return expectStatus<DryRun>(await replays({ ...body, dry_run: true }), 200);
}

async function job(id: string): Promise<ReplayJob> {
  return expectStatus<ReplayJob>(await admin(`/v1/replays/${id}`), 200);
}

/** A signing partner that answers 500 and retries once, a second later: its deliveries die quickly. */
async function failingPartner(network: TestNetwork, unique: string): Promise<TestPartner> {
  return createPartner({
    url_template: `${PARTNER}/fail/${unique}`,
    retry_schedule_seconds: [1],
    sign: true,
    filters: { networks: [network.id] },
    // Its failures must not open its breaker: the replay is what these tests watch.
    breaker: { min_attempts: 100_000 },
  });
}

async function fixPartner(partner: TestPartner, unique: string): Promise<void> {
  await expectStatus(
    await admin(`/v1/partners/${partner.id}`, {
      method: "PATCH",
      body: JSON.stringify({ url_template: `${PARTNER}/ok/${unique}` }),
    }),
    200,
  );
}

async function allIn(partnerId: string, count: number, state: string): Promise<DeliveryRow[]> {
  return eventually(async () => {
    const rows = await deliveriesOf(partnerId);
    return rows.length === count && rows.every((row) => row.state === state) ? rows : null;
  }, 25_000);
}

/** Posts the events one at a time, each after the previous one's deliveries exist (distinct created_at). */
async function post(network: TestNetwork, partner: TestPartner, bodies: Record<string, unknown>[]): Promise<void> {
  for (const [index, body] of bodies.entries()) {
    await expectStatus(await postback(network, body), 200);
    await eventually(async () => ((await deliveriesOf(partner.id)).length === index + 1 ? true : null));
  }
}

/** Every column a replay would change, per delivery: a dry run must leave all of it as it was. */
async function snapshot(partnerIds: string[]): Promise<unknown[]> {
  const { results } = await env.DB.prepare(
    `SELECT id, state, attempts, retries, next_attempt_at, lease_until, updated_at FROM deliveries
     WHERE partner_id IN (SELECT value FROM json_each(?)) ORDER BY id`,
  )
    .bind(JSON.stringify(partnerIds))
    .all();
  return results;
}

async function jobCount(): Promise<number> {
  return (await env.DB.prepare("SELECT count(*) AS n FROM replay_jobs").first<{ n: number }>())?.n ?? 0;
}

/** Lets queued messages reach the consumer (and the partner) before asserting that nothing more arrived. */
function settle(ms = 1_500): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe("POST /v1/replays with dry_run", () => {
  it("counts exactly what each filter takes, shows the oldest ids, and changes nothing", async () => {
    const network = await createNetwork();
    const unique = uniqueId("dry");
    const a = await failingPartner(network, `${unique}-a`);
    const b = await failingPartner(network, `${unique}-b`);
    const tx = uniqueId("tx");
    await post(network, a, [
      makePostback({ transaction_id: tx, status: "pending" }),
      makePostback({ transaction_id: tx, status: "approved" }),
      makePostback({ status: "approved" }),
    ]);
    const deadA = await allIn(a.id, 3, "dead");
    await allIn(b.id, 3, "dead");
    const before = await snapshot([a.id, b.id]);
    const jobsBefore = await jobCount();

    const all = await dryRun({ network_id: network.id });
    expect(all.total).toBe(6);
    const { results: oldest } = await env.DB.prepare(
      "SELECT id FROM deliveries WHERE network_id = ? ORDER BY created_at, id",
    )
      .bind(network.id)
      .all<{ id: string }>();
    expect(all.sample).toEqual(oldest.map((row) => row.id));
    expect(all.filter).toEqual({
      partner_id: null,
      network_id: network.id,
      states: ["failed", "dead"],
      since: null,
      until: null,
      conversion_status: null,
    });

    expect((await dryRun({ partner_id: a.id })).total).toBe(3);
    const approved = await dryRun({ partner_id: a.id, conversion_status: "approved" });
    expect(approved.total).toBe(2);
    expect(approved.sample).toEqual(deadA.slice(1).map((d) => d.id));
    expect((await dryRun({ network_id: network.id, conversion_status: "pending" })).total).toBe(2);
    expect((await dryRun({ partner_id: a.id, since: deadA[1]?.created_at })).total).toBe(2);
    expect((await dryRun({ partner_id: a.id, until: deadA[1]?.created_at })).total).toBe(1);
    expect((await dryRun({ network_id: network.id, states: ["failed", "parked"] })).total).toBe(0);
    expect((await dryRun({ network_id: network.id, states: ["dead"] })).total).toBe(6);

    expect(await snapshot([a.id, b.id])).toEqual(before);
    expect(await jobCount()).toBe(jobsBefore);
    await settle(500);
    expect(await partnerLog(`/ok/${unique}`)).toEqual([]);
    // Each failed twice (the first attempt and one retry), and nothing since.
    expect(await partnerLog(`/fail/${unique}-a`)).toHaveLength(6);
  });
});

describe("POST /v1/replays", () => {
  it("runs a job in the background: the filtered deliveries reach the partner once each, with their ids, and done == total", async () => {
    const network = await createNetwork();
    const unique = uniqueId("bulk");
    const partner = await failingPartner(network, unique);
    const other = await failingPartner(network, `${unique}-other`);
    const tx = uniqueId("tx");
    await post(network, partner, [
      makePostback({ transaction_id: tx, status: "pending" }),
      makePostback({ status: "approved" }),
      makePostback({ status: "approved" }),
      makePostback({ transaction_id: tx, status: "approved" }),
    ]);
    const dead = await allIn(partner.id, 4, "dead");
    await allIn(other.id, 4, "dead");
    await fixPartner(partner, unique);
    await fixPartner(other, `${unique}-other`);
    const selected = dead.slice(1).map((d) => d.id);

    const created = await expectStatus<ReplayJob>(
      await replays({ partner_id: partner.id, conversion_status: "approved" }),
      202,
    );
    expect(created).toMatchObject({ state: "queued", total: 3, done: 0, finished_at: null, error: null });
    expect(created.id).toMatch(/^rpl_[0-9a-z]{26}$/);
    expect(created.filter).toMatchObject({
      partner_id: partner.id,
      conversion_status: "approved",
      states: ["failed", "dead"],
    });

    // Nobody polls the job to make it move: its object's alarm does. Reading it only watches.
    const finished = await eventually(async () => {
      const current = await job(created.id);
      return current.state === "finished" ? current : null;
    }, 20_000);
    expect(finished).toMatchObject({ total: 3, done: 3, error: null });
    expect(finished.finished_at).not.toBeNull();
    expect(finished.started_at).not.toBeNull();

    const delivered = await eventually(async () => {
      const log = await partnerLog(`/ok/${unique}`);
      return log.length >= 3 ? log : null;
    });
    await settle();
    expect((await partnerLog(`/ok/${unique}`)).length).toBe(3);
    expect(delivered.map((r) => r.headers["webhook-id"]).sort()).toEqual([...selected].sort());

    const after = await deliveriesOf(partner.id);
    expect(after.map((d) => [d.id, d.state])).toEqual([
      [dead[0]?.id, "dead"],
      ...selected.map((id) => [id, "delivered"]),
    ]);
    // The other partner's deliveries were not in the filter.
    expect((await deliveriesOf(other.id)).every((d) => d.state === "dead")).toBe(true);
    expect(await partnerLog(`/ok/${unique}-other`)).toEqual([]);

    const listed = await expectStatus<{ data: ReplayJob[] }>(await admin("/v1/replays?state=finished&limit=200"), 200);
    expect(listed.data.map((j) => j.id)).toContain(created.id);
    const running = await expectStatus<{ data: ReplayJob[] }>(await admin("/v1/replays?state=running&limit=200"), 200);
    expect(running.data.map((j) => j.id)).not.toContain(created.id);
  });

  it("replays each delivery once, even when the partner fails it again at once", async () => {
    const network = await createNetwork();
    const unique = uniqueId("refail");
    // The fake partner answers 404 on any other path: a 4xx fails a delivery at once, no retry.
    const partner = await createPartner({
      url_template: `${PARTNER}/missing/${unique}`,
      sign: true,
      filters: { networks: [network.id] },
    });
    await post(network, partner, [makePostback(), makePostback()]);
    await allIn(partner.id, 2, "failed");
    expect(await partnerLog(`/missing/${unique}`)).toHaveLength(2);

    const created = await expectStatus<ReplayJob>(await replays({ partner_id: partner.id }), 202);
    const finished = await eventually(async () => {
      const current = await job(created.id);
      return current.state === "finished" ? current : null;
    });
    expect(finished).toMatchObject({ total: 2, done: 2 });
    await allIn(partner.id, 2, "failed");
    await settle();
    // One more attempt each: failed again, it is not taken again by the same job.
    expect(await partnerLog(`/missing/${unique}`)).toHaveLength(4);
    expect((await deliveriesOf(partner.id)).map((d) => d.attempts)).toEqual([2, 2]);
  });

  it("leaves out deliveries of disabled partners, and refuses a disabled partner by name (409)", async () => {
    const network = await createNetwork();
    const unique = uniqueId("disabled");
    const partner = await failingPartner(network, unique);
    await post(network, partner, [makePostback()]);
    await allIn(partner.id, 1, "dead");
    expect((await dryRun({ network_id: network.id })).total).toBe(1);
    await expectStatus(await admin(`/v1/partners/${partner.id}/disable`, { method: "POST" }), 200);

    expect((await dryRun({ network_id: network.id })).total).toBe(0);
    const problem = await expectProblem(await replays({ partner_id: partner.id }), 409, "partner_disabled");
    expect(problem.errors).toEqual([{ location: "body.partner_id", message: "is disabled" }]);
    await expectProblem(await replays({ partner_id: partner.id, dry_run: true }), 409, "partner_disabled");
  });

  it("is started by the 15-minute cron when its runner never was", async () => {
    const network = await createNetwork();
    const unique = uniqueId("cron");
    const partner = await failingPartner(network, unique);
    await post(network, partner, [makePostback()]);
    const [dead] = await allIn(partner.id, 1, "dead");
    await fixPartner(partner, unique);

    // Recorded, as the route records it, but its object never asked to run it.
    const recorded = await createReplayJob(env.DB, filterFor(partner), Date.now());
    await env.DB.prepare("UPDATE replay_jobs SET updated_at = ? WHERE id = ?")
      .bind(new Date(Date.now() - 3_600_000).toISOString(), recorded.id)
      .run();
    await settle(500);
    expect((await job(recorded.id)).state).toBe("queued");

    const ctx = createExecutionContext();
    const controller = createScheduledController({ cron: "*/15 * * * *", scheduledTime: Date.now() });
    await (worker as ExportedHandler<Env>).scheduled?.(controller, env, ctx);
    await waitOnExecutionContext(ctx);
    const finished = await eventually(async () => {
      const current = await job(recorded.id);
      return current.state === "finished" ? current : null;
    });
    expect(finished).toMatchObject({ total: 1, done: 1 });
    const log = await eventually(async () => {
      const requests = await partnerLog(`/ok/${unique}`);
      return requests.length > 0 ? requests : null;
    });
    expect(log.map((r) => r.headers["webhook-id"])).toEqual([dead?.id]);
  });
});

function filterFor(partner: TestPartner) {
  return {
    partner_id: partner.id,
    network_id: null,
    states: ["failed" as const, "dead" as const],
    since: null,
    until: null,
    conversion_status: null,
  };
}

/** DELIVERIES as a step sees it, failing the way a Worker dies: before sending, or after. */
function queueThat(fails: "before" | "after"): DeliveriesQueue {
  return {
    sendBatch: async (messages) => {
      if (fails === "after") await env.DELIVERIES.sendBatch(messages);
      throw new Error(`the Worker died ${fails} sending`);
    },
  };
}

describe("a replay job interrupted mid-step", () => {
  it("completes without losing or doubling a delivery when its steps die before and after sending", async () => {
    const network = await createNetwork();
    const unique = uniqueId("interrupted");
    const partner = await failingPartner(network, unique);
    await post(
      network,
      partner,
      Array.from({ length: 5 }, () => makePostback()),
    );
    const dead = await allIn(partner.id, 5, "dead");
    await fixPartner(partner, unique);
    const created = await createReplayJob(env.DB, filterFor(partner), Date.now());
    expect(created.total).toBe(5);
    const step = (deliveries: DeliveriesQueue) => runReplayStep({ db: env.DB, deliveries, chunkSize: 2 }, created.id);

    // Dies after re-arming the first chunk, before its messages left.
    await expect(step(queueThat("before"))).rejects.toThrow(/died before/);
    const armed = await getReplayJob(env.DB, created.id);
    expect(armed?.state).toBe("running");
    expect(armed?.done).toBe(0);
    const firstChunk = dead.slice(0, 2).map((d) => d.id);
    expect(JSON.parse(armed?.pending_ids ?? "null")).toEqual(firstChunk);
    expect((await deliveriesOf(partner.id)).map((d) => d.state)).toEqual([
      "pending",
      "pending",
      "dead",
      "dead",
      "dead",
    ]);
    await settle(500);
    expect(await partnerLog(`/ok/${unique}`)).toEqual([]);

    // Run again: it sends the recorded chunk (and dies again, after sending, before confirming).
    await expect(step(queueThat("after"))).rejects.toThrow(/died after/);
    await eventually(async () => ((await partnerLog(`/ok/${unique}`)).length === 2 ? true : null));
    expect((await getReplayJob(env.DB, created.id))?.done).toBe(0);

    // And again, healthy, to the end: the first chunk is sent a third time, then the rest.
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const outcome = await step(env.DELIVERIES);
      outcomes.push(outcome);
      if (outcome !== "more") break;
    }
    expect(outcomes).toEqual(["more", "more", "finished"]);
    const finished = await getReplayJob(env.DB, created.id);
    expect(finished).toMatchObject({ state: "finished", total: 5, done: 5, pending_ids: null });

    await allIn(partner.id, 5, "delivered");
    await settle();
    const log = await partnerLog(`/ok/${unique}`);
    expect(log.map((r) => r.headers["webhook-id"]).sort()).toEqual(dead.map((d) => d.id).sort());
    // An ended job's step changes nothing.
    expect(await step(env.DELIVERIES)).toBe("ended");
    expect((await getReplayJob(env.DB, created.id))?.done).toBe(5);
  });

  it("never takes a delivery twice, even one that failed again before the next step", async () => {
    const network = await createNetwork();
    const unique = uniqueId("cursor");
    const partner = await createPartner({
      url_template: `${PARTNER}/missing/${unique}`,
      filters: { networks: [network.id] },
    });
    await post(network, partner, [makePostback(), makePostback()]);
    await allIn(partner.id, 2, "failed");
    const created = await createReplayJob(env.DB, filterFor(partner), Date.now());
    const outcomes: string[] = [];
    for (let i = 0; i < 5; i++) {
      const outcome = await runReplayStep({ db: env.DB, deliveries: env.DELIVERIES, chunkSize: 1 }, created.id);
      outcomes.push(outcome);
      if (outcome !== "more") break;
      // The re-armed delivery fails again (404) before the next step looks: it matches the filter again.
      await allIn(partner.id, 2, "failed");
    }
    expect(outcomes).toEqual(["more", "more", "finished"]);
    expect(await getReplayJob(env.DB, created.id)).toMatchObject({ state: "finished", total: 2, done: 2 });
    expect((await deliveriesOf(partner.id)).map((d) => d.attempts)).toEqual([2, 2]);
  });

  it("lets only one of two runners of the same step take its chunk", async () => {
    const network = await createNetwork();
    const unique = uniqueId("racing");
    const partner = await failingPartner(network, unique);
    await post(network, partner, [makePostback(), makePostback(), makePostback()]);
    await allIn(partner.id, 3, "dead");
    await fixPartner(partner, unique);
    const created = await createReplayJob(env.DB, filterFor(partner), Date.now());

    const sent: string[] = [];
    const counting: DeliveriesQueue = {
      sendBatch: async (messages) => {
        for (const message of messages) sent.push((message.body as { delivery_id: string }).delivery_id);
        return env.DELIVERIES.sendBatch(messages);
      },
    };
    const step = () => runReplayStep({ db: env.DB, deliveries: counting, chunkSize: 2 }, created.id);
    await Promise.all([step(), step()]);
    while ((await step()) === "more") {}
    expect(await getReplayJob(env.DB, created.id)).toMatchObject({ state: "finished", total: 3, done: 3 });
    // Each re-armed once; a message sent twice would be tolerated, but here none needed to be.
    expect(sent.sort()).toEqual((await deliveriesOf(partner.id)).map((d) => d.id).sort());
    await allIn(partner.id, 3, "delivered");
  });
});

describe("replay validation", () => {
  it("answers 4xx problems naming each offending field", async () => {
    const cases: [Record<string, unknown>, string[]][] = [
      [{ states: ["delivered"] }, ["body.states[0]"]],
      [{ states: [] }, ["body.states"]],
      [{ states: ["dead", "dead"] }, ["body.states"]],
      [{ since: "yesterday" }, ["body.since"]],
      [{ since: "2026-11-27T12:00:00Z", until: "2026-11-27T11:00:00Z" }, ["body.until"]],
      [{ conversion_status: "maybe" }, ["body.conversion_status"]],
      [{ network_id: "Not A Network!" }, ["body.network_id"]],
      [{ dry_run: "yes" }, ["body.dry_run"]],
      [{ partner: "ptn_x" }, ["body.partner"]],
    ];
    for (const [body, locations] of cases) {
      const problem = await expectProblem(await replays(body), 422, "validation_failed");
      expect(
        problem.errors.map((e) => e.location),
        JSON.stringify(body),
      ).toEqual(locations);
    }
  });

  it("names a partner or a network that does not exist", async () => {
    const problem = await expectProblem(
      await replays({ partner_id: `ptn_${uniqueId("ghost")}`, network_id: uniqueId("ghost"), dry_run: true }),
      422,
      "validation_failed",
    );
    expect(problem.errors).toEqual([
      { location: "body.partner_id", message: "no such partner" },
      { location: "body.network_id", message: "no such network" },
    ]);
  });

  it("wants a JSON body, and answers 404 for an unknown job and 422 for an unknown state", async () => {
    // Without a body, the validator would see {} (every failed or dead delivery): refused instead.
    const jobsBefore = await jobCount();
    const missing = await expectProblem(await admin("/v1/replays", { method: "POST" }), 415, "unsupported_media_type");
    expect(missing.errors.map((e) => e.location)).toEqual(["header.content-type"]);
    expect(await jobCount()).toBe(jobsBefore);
    await expectProblem(await admin("/v1/replays/rpl_nope"), 404, "not_found");
    const problem = await expectProblem(await admin("/v1/replays?state=done"), 422, "validation_failed");
    expect(problem.errors.map((e) => e.location)).toEqual(["query.state"]);
  });
});
