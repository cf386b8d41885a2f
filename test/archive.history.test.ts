/**
 * The archive from the API's side: a conversion recorded through the whole pipeline (events in its
 * hash chain, deliveries to a partner, their attempts), archived to R2, reads back the same through
 * GET /v1/conversions/{n}/{t}, its proof and its deliveries; a later event joins it; and retention
 * over the archive cuts its chain with the object's agreement before deleting the objects.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { archiveOldRows, pruneArchive, runArchive } from "../src/operations/archive";
import { objectCutter } from "../src/operations/chain-retention";
import {
  admin,
  createNetwork,
  createPartner,
  deliveriesOf,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  postback,
  uniqueId,
} from "./support/helpers";

const DAY_MS = 86_400_000;

/** A run as the cron would make it ARCHIVE_AFTER_DAYS (30) from now: today's rows are in its window. */
function archiveLater(days = 40) {
  return runArchive({
    db: env.DB,
    bucket: env.ARCHIVE,
    nowMs: Date.now() + days * DAY_MS,
    archiveAfterDays: 30,
    historyRetentionDays: 400,
    inboundLogRetentionDays: 400,
  });
}

async function d1Rows(networkId: string, transactionId: string) {
  const [events, deliveries, attempts] = await env.DB.batch<{ n: number }>([
    env.DB.prepare("SELECT count(*) AS n FROM conversion_events WHERE network_id = ? AND transaction_id = ?").bind(
      networkId,
      transactionId,
    ),
    env.DB.prepare("SELECT count(*) AS n FROM deliveries WHERE network_id = ? AND transaction_id = ?").bind(
      networkId,
      transactionId,
    ),
    env.DB.prepare(
      `SELECT count(*) AS n FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
       WHERE d.network_id = ? AND d.transaction_id = ?`,
    ).bind(networkId, transactionId),
  ]);
  return { events: events?.results[0]?.n, deliveries: deliveries?.results[0]?.n, attempts: attempts?.results[0]?.n };
}

interface Detail {
  events: { seq: number; status: string; hash: string | null }[];
}
interface Deliveries {
  deliveries: { id: string; state: string; attempts_log: { attempt: number; http_status: number | null }[] }[];
}
interface Proof {
  verified: boolean;
}

async function history(networkId: string, transactionId: string) {
  const base = `/v1/conversions/${networkId}/${transactionId}`;
  return {
    detail: await expectStatus<Detail>(await admin(base), 200),
    deliveries: await expectStatus<Deliveries>(await admin(`${base}/deliveries`), 200),
    proof: await expectStatus<Proof>(await admin(`${base}/proof`), 200),
  };
}

describe("a conversion's history across D1 and the archive", () => {
  it("reads back whole after its rows moved to R2, joins a later event, and is cut by retention only with its object's consent", async () => {
    const network = await createNetwork();
    const prefix = `/ok/${uniqueId("archive")}`;
    const partner = await createPartner({
      url_template: `${PARTNER}${prefix}?tx={transaction_id}&s={status}`,
      filters: { networks: [network.id] },
    });
    const body = makePostback({ status: "pending" });
    const tx = String(body.transaction_id);
    await expectStatus(await postback(network, body), 200);
    await expectStatus(await postback(network, { transaction_id: tx, status: "approved" }), 200);
    await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 2 && rows.every((d) => d.state === "delivered") ? rows : null;
    }, 20_000);

    const before = await history(network.id, tx);
    expect(before.detail.events.map((e) => e.status)).toEqual(["pending", "approved"]);
    expect(before.deliveries.deliveries).toHaveLength(2);
    expect(before.deliveries.deliveries.every((d) => d.attempts_log.length === 1)).toBe(true);
    expect(before.proof.verified).toBe(true);

    // Nothing is old enough yet: a run now leaves D1 as it is.
    const early = await runArchive({
      db: env.DB,
      bucket: env.ARCHIVE,
      nowMs: Date.now(),
      archiveAfterDays: 30,
      historyRetentionDays: 400,
      inboundLogRetentionDays: 400,
    });
    expect(early.objects).toEqual({ events: 0, deliveries: 0, requests: 0, clicks: 0 });

    const summary = await archiveLater();
    expect(summary.objects.events).toBeGreaterThanOrEqual(1);
    expect(summary.objects.deliveries).toBeGreaterThanOrEqual(1);
    expect(await d1Rows(network.id, tx)).toEqual({ events: 0, deliveries: 0, attempts: 0 });
    const pointers = await env.DB.prepare(
      "SELECT kind, rows FROM archived_conversions WHERE network_id = ? AND transaction_id = ? ORDER BY kind",
    )
      .bind(network.id, tx)
      .all();
    expect(pointers.results).toEqual([
      { kind: "deliveries", rows: 2 },
      { kind: "events", rows: 2 },
    ]);
    const conversion = await env.DB.prepare(
      "SELECT status FROM conversions WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, tx)
      .first();
    expect(conversion).toEqual({ status: "approved" });

    // The same answers, read from the archive.
    expect(await history(network.id, tx)).toEqual(before);

    // A later event lands in D1; the history is one chain across both stores.
    await expectStatus(await postback(network, { transaction_id: tx, status: "paid" }), 200);
    await eventually(async () => {
      const rows = await deliveriesOf(partner.id);
      return rows.length === 1 && rows[0]?.state === "delivered" ? rows : null;
    }, 20_000);
    const joined = await history(network.id, tx);
    expect(joined.detail.events.map((e) => [e.seq, e.status])).toEqual([
      [1, "pending"],
      [2, "approved"],
      [3, "paid"],
    ]);
    expect(joined.detail.events.slice(0, 2)).toEqual(before.detail.events);
    expect(joined.deliveries.deliveries).toHaveLength(3);
    expect(joined.proof.verified).toBe(true);

    // Retention past the archived day: the object agrees to cut at seq 2, then the objects go.
    const keys = await env.DB.prepare(
      "SELECT object_key FROM archived_conversions WHERE network_id = ? AND transaction_id = ?",
    )
      .bind(network.id, tx)
      .all<{ object_key: string }>();
    const later = Date.now() + 3 * DAY_MS;
    const pruned = await pruneArchive(
      { db: env.DB, bucket: env.ARCHIVE, cutter: objectCutter(env.CONVERSIONS), nowMs: later },
      new Date(later).toISOString(),
      new Date(later).toISOString(),
    );
    expect(pruned.refused).toBe(0);
    expect(pruned.cut).toBeGreaterThanOrEqual(1);
    for (const { object_key } of keys.results) expect(await env.ARCHIVE.head(object_key)).toBeNull();
    const cut = await env.DB.prepare(
      "SELECT seq FROM conversion_chain_pruned WHERE network_id = ? AND transaction_id = ? AND test = 0",
    )
      .bind(network.id, tx)
      .first();
    expect(cut).toEqual({ seq: 2 });
    const after = await history(network.id, tx);
    expect(after.detail.events.map((e) => e.seq)).toEqual([3]);
    expect(after.deliveries.deliveries).toHaveLength(1);
    expect(after.proof.verified).toBe(true);
  });

  it("answers 404 problem+json naming the transaction for a conversion that does not exist, and refuses a bad world", async () => {
    const network = await createNetwork();
    const missing = await admin(`/v1/conversions/${network.id}/nope/deliveries`);
    const problem = await expectStatus<{ code: string; errors: { location: string }[] }>(missing, 404);
    expect(missing.headers.get("content-type")).toContain("application/problem+json");
    expect(problem.errors.map((e) => e.location)).toEqual(["path.transaction_id"]);
    const bad = await admin(`/v1/conversions/${network.id}/nope/deliveries?test=maybe`);
    const refusal = await expectStatus<{ errors: { location: string }[] }>(bad, 422);
    expect(refusal.errors.map((e) => e.location)).toEqual(["query.test"]);
  });

  it("logs one summary line a cron run, and a failure as an error line instead of throwing", async () => {
    const logged = vi.spyOn(console, "log").mockImplementation(() => undefined);
    const errors = vi.spyOn(console, "error").mockImplementation(() => undefined);
    try {
      const network = await createNetwork();
      const body = makePostback();
      await expectStatus(await postback(network, body), 200);
      await eventually(async () => (await d1Rows(network.id, String(body.transaction_id))).events === 1 || null);
      await archiveOldRows(env, Date.now() + 40 * DAY_MS);
      const lines = logged.mock.calls
        .map(([line]) => JSON.parse(String(line)) as Record<string, unknown>)
        .filter((line) => line.message === "archive");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ level: "info", more: false, objects: { events: 1 } });
      expect(lines[0]?.bytes).toBeGreaterThan(0);

      const broken = { ...env, ARCHIVE: { ...env.ARCHIVE, put: () => Promise.reject(new Error("R2 is down")) } };
      await expectStatus(await postback(network, makePostback()), 200);
      await eventually(async () => {
        const row = await env.DB.prepare("SELECT count(*) AS n FROM conversion_events WHERE network_id = ?")
          .bind(network.id)
          .first<{ n: number }>();
        return row?.n === 1 ? true : null;
      });
      await archiveOldRows(broken as unknown as Env, Date.now() + 40 * DAY_MS);
      const failure = errors.mock.calls
        .map(([line]) => JSON.parse(String(line)) as Record<string, unknown>)
        .find((line) => String(line.message).startsWith("archive failed"));
      expect(failure?.error).toContain("R2 is down");
    } finally {
      logged.mockRestore();
      errors.mockRestore();
    }
  });
});
