/**
 * The archive job is idempotent and resumable: a run stopped at any step (before a part's rows are
 * read, before its put, after its put but before its commit, after a commit: the next part's first
 * step) and then run again leaves every row in exactly one place (D1 or one archive object), every
 * conversion's history as it was, and no object in R2 the manifest does not know. And a run whose
 * rows another run archived meanwhile commits nothing.
 */
import { env } from "cloudflare:workers";
import { gunzipSync } from "node:zlib";
import { beforeEach, describe, expect, it } from "vitest";
import { type ArchiveDeps, type ArchiveStep, runArchive } from "../src/operations/archive";
import { type ArchiveKind, conversionDeliveries, getConversionWithArchive } from "../src/storage/archive";

const NOW_MS = Date.parse("2026-12-03T12:00:00.000Z");
/** Two old days and today: the old ones are in the window (ARCHIVE_AFTER_DAYS 30), today is not. */
const DAYS = ["2026-09-01", "2026-09-02"];
const TODAY = "2026-12-03";
const NETWORK = "crash-net";
const CONVERSIONS = Array.from({ length: 3 }, (_, i) => `tx-${i}`);

function deps(overrides: Partial<ArchiveDeps> = {}): ArchiveDeps {
  return {
    db: env.DB,
    bucket: env.ARCHIVE,
    nowMs: NOW_MS,
    archiveAfterDays: 30,
    historyRetentionDays: 400,
    inboundLogRetentionDays: 400,
    // Small parts, so each kind's day takes several objects and a crash can fall between them.
    partRows: 2,
    maxParts: 1000,
    ...overrides,
  };
}

async function clear() {
  await env.DB.batch(
    [
      "DELETE FROM archived_conversions",
      "DELETE FROM archive_objects",
      "DELETE FROM delivery_attempts",
      "DELETE FROM deliveries",
      "DELETE FROM conversion_events",
      "DELETE FROM conversions",
      "DELETE FROM inbound_requests",
      "DELETE FROM clicks",
      "DELETE FROM offers WHERE id = 'ofr-window'",
      "DELETE FROM networks WHERE id = 'net-window'",
    ].map((sql) => env.DB.prepare(sql)),
  );
  for (;;) {
    const listed = await env.ARCHIVE.list();
    if (listed.objects.length === 0) break;
    await env.ARCHIVE.delete(listed.objects.map((o) => o.key));
  }
}

/** Three conversions, each with an event a day on two old days and one today; a delivery per event. */
async function seed() {
  const statements: D1PreparedStatement[] = [];
  for (const tx of CONVERSIONS) {
    statements.push(
      env.DB.prepare(
        `INSERT INTO conversions (network_id, transaction_id, status, event_time, first_seen_at, updated_at, version)
         VALUES (?, ?, 'paid', ?, ?, ?, 4)`,
      ).bind(NETWORK, tx, `${DAYS[0]}T10:00:00.000Z`, `${DAYS[0]}T10:00:00.000Z`, `${TODAY}T08:00:00.000Z`),
    );
    [...DAYS, TODAY].forEach((day, index) => {
      const at = `${day}T${String(10 + index).padStart(2, "0")}:${tx.slice(-1)}0:00.000Z`;
      const eventId = `evt-${tx}-${index}`;
      statements.push(
        env.DB.prepare(
          `INSERT INTO conversion_events (event_id, network_id, transaction_id, seq, verdict, status, payload, received_at,
             hash, prev_hash)
           VALUES (?, ?, ?, ?, 'accepted', 'approved', ?, ?, ?, ?)`,
        ).bind(
          eventId,
          NETWORK,
          tx,
          index + 1,
          JSON.stringify({ status: "approved", amount: `${index}.00`, note: "x".repeat(200) }),
          at,
          `hash-${tx}-${index}`,
          index === 0 ? null : `hash-${tx}-${index - 1}`,
        ),
        env.DB.prepare(
          `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, attempts, payload,
             created_at, updated_at, delivered_at)
           VALUES (?, ?, 'ptn-crash', ?, ?, ?, 2, ?, ?, ?, ?)`,
        ).bind(
          `dlv-${tx}-${index}`,
          eventId,
          NETWORK,
          tx,
          // One old delivery still retrying: it stays in D1 whatever its age.
          tx === "tx-0" && index === 1 ? "retrying" : "delivered",
          JSON.stringify({ test: false, status: "approved" }),
          at,
          at,
          at,
        ),
        ...[1, 2].map((attempt) =>
          env.DB.prepare(
            `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, outcome)
             VALUES (?, ?, 'ptn-crash', ?, ?, 12, ?)`,
          ).bind(`dlv-${tx}-${index}`, attempt, at, attempt === 1 ? 503 : 200, attempt === 1 ? "retry" : "delivered"),
        ),
        env.DB.prepare(
          `INSERT INTO inbound_requests (request_id, network_id, received_at, route, method, status, verdict, body_bytes,
             excerpt)
           VALUES (?, ?, ?, 'postback', 'POST', 200, 'accepted', 120, '{}')`,
        ).bind(`req-${tx}-${index}`, NETWORK, at),
        env.DB.prepare(
          "INSERT INTO clicks (click_id, offer_id, partner_id, clicked_at, recorded_at) VALUES (?, 'ofr-crash', 'ptn-crash', ?, ?)",
        ).bind(`clk-${tx}-${index}`, at, at),
      );
    });
  }
  await env.DB.batch(statements);
}

/** Every conversion's whole history as the API reads it (D1 and the archive). */
async function histories() {
  const all: Record<string, unknown> = {};
  for (const tx of CONVERSIONS) {
    const { events } = await getConversionWithArchive(env.DB, env.ARCHIVE, NETWORK, tx, false);
    const { deliveries } = await conversionDeliveries(env.DB, env.ARCHIVE, NETWORK, tx, false);
    all[tx] = { events, deliveries };
  }
  return all;
}

const ID_COLUMNS: Record<ArchiveKind, string> = {
  events: "event_id",
  deliveries: "id",
  requests: "request_id",
  clicks: "click_id",
};
const TABLES: Record<ArchiveKind, string> = {
  events: "conversion_events",
  deliveries: "deliveries",
  requests: "inbound_requests",
  clicks: "clicks",
};

/**
 * Where every row is: the ids D1 holds and, per kind, the ids in each archived object, read whole
 * (every gzip member, as zcat would) from R2. Also the keys R2 holds that the manifest does not.
 */
async function placement() {
  const d1: Record<string, string[]> = {};
  const archived: Record<string, string[]> = {};
  for (const kind of Object.keys(TABLES) as ArchiveKind[]) {
    const { results } = await env.DB.prepare(`SELECT ${ID_COLUMNS[kind]} AS id FROM ${TABLES[kind]} ORDER BY 1`).all<{
      id: string;
    }>();
    d1[kind] = results.map((row) => row.id);
    archived[kind] = [];
  }
  const manifest = await env.DB.prepare("SELECT key, kind, rows, bytes FROM archive_objects").all<{
    key: string;
    kind: ArchiveKind;
    rows: number;
    bytes: number;
  }>();
  const listed = await env.ARCHIVE.list();
  const known = new Set(manifest.results.map((o) => o.key));
  const unknown = listed.objects.map((o) => o.key).filter((key) => !known.has(key));
  for (const object of manifest.results) {
    const stored = await env.ARCHIVE.get(object.key);
    expect(stored, object.key).not.toBeNull();
    const bytes = new Uint8Array(await (stored as R2ObjectBody).arrayBuffer());
    expect(bytes.length).toBe(object.bytes);
    const lines = new TextDecoder()
      .decode(await gunzipAll(bytes))
      .split("\n")
      .filter((line) => line !== "");
    expect(lines).toHaveLength(object.rows);
    archived[object.kind]?.push(
      ...lines.map((line) => String((JSON.parse(line) as Record<string, unknown>)[ID_COLUMNS[object.kind]])),
    );
  }
  for (const kind of Object.keys(archived)) archived[kind]?.sort();
  return { d1, archived, unknown };
}

/**
 * A multi-member gzip file read whole, as zcat and DuckDB read it: node:zlib (workerd's, under
 * nodejs_compat) goes on past a member's end, where DecompressionStream stops with an error.
 */
async function gunzipAll(bytes: Uint8Array): Promise<Uint8Array> {
  return new Uint8Array(gunzipSync(bytes));
}

/** A run that throws when it reaches its `stopAt`-th step. */
async function runStoppingAt(stopAt: number): Promise<{ stopped: ArchiveStep | null }> {
  let steps = 0;
  let stopped: ArchiveStep | null = null;
  await runArchive(
    deps({
      beforeStep: (step) => {
        steps++;
        if (steps === stopAt) {
          stopped = step;
          throw new Error(`stopped at step ${stopAt} (${step})`);
        }
      },
    }),
  ).catch((error: unknown) => {
    if (!String(error).includes("stopped at step")) throw error;
  });
  return { stopped };
}

describe("the archive job across crashes", () => {
  beforeEach(async () => {
    await clear();
    await seed();
  });

  it("archives the old days whole, in parts, leaving today, unfinished deliveries and the conversions in D1", async () => {
    const before = await histories();
    const summary = await runArchive(deps());
    expect(summary.more).toBe(false);
    // 6 old events in parts of 2 (a day's 3 rows: 2 parts), 5 finished deliveries (one retrying stays).
    expect(summary.rows).toEqual({ events: 6, deliveries: 5, requests: 6, clicks: 6 });
    expect(summary.objects).toEqual({ events: 4, deliveries: 3, requests: 4, clicks: 4 });
    const { d1, archived, unknown } = await placement();
    expect(unknown).toEqual([]);
    expect(d1.events).toEqual(CONVERSIONS.map((tx) => `evt-${tx}-2`));
    expect(d1.deliveries).toEqual(["dlv-tx-0-1", ...CONVERSIONS.map((tx) => `dlv-${tx}-2`)].sort());
    expect(archived.events).toHaveLength(6);
    expect(new Set(archived.events).size).toBe(6);
    expect(await histories()).toEqual(before);
    const conversions = await env.DB.prepare("SELECT count(*) AS n FROM conversions").first();
    expect(conversions).toEqual({ n: CONVERSIONS.length });
    // Keys name kind, day and part: a day's objects are one prefix.
    const keys = (await env.ARCHIVE.list({ prefix: "events/2026/09/01/" })).objects.map((o) => o.key);
    expect(keys).toHaveLength(2);
    expect(keys.every((key) => /^events\/2026\/09\/01\/part-0000[12]-[0-9a-f]{16}\.ndjson\.gz$/.test(key))).toBe(true);
    // A second run finds nothing left to do.
    const again = await runArchive(deps());
    expect(again.objects).toEqual({ events: 0, deliveries: 0, requests: 0, clicks: 0 });
  });

  it("loses and duplicates nothing when a run stops at any step and runs again", async () => {
    const before = await histories();
    const clean = await placement();
    // Count a clean run's steps once, on a copy of the seed.
    let total = 0;
    await runArchive(
      deps({
        beforeStep: () => {
          total++;
        },
      }),
    );
    const finished = await placement();
    // Per object: select, put, commit; then each kind's last select, which finds nothing.
    expect(total).toBe(15 * 3 + 4);
    const stoppedAt = new Set<ArchiveStep>();
    for (let stopAt = 1; stopAt <= total; stopAt++) {
      await clear();
      await seed();
      const { stopped } = await runStoppingAt(stopAt);
      expect(stopped, `step ${stopAt}`).not.toBeNull();
      if (stopped) stoppedAt.add(stopped);
      // Whatever the stop left, the history reads the same, and every row is in one place only.
      const midway = await placement();
      for (const kind of Object.keys(TABLES)) {
        const everywhere = [...(midway.d1[kind] ?? []), ...(midway.archived[kind] ?? [])].sort();
        expect(everywhere, `${kind} after stopping at step ${stopAt}`).toEqual(clean.d1[kind]);
      }
      expect(await histories(), `after stopping at step ${stopAt}`).toEqual(before);
      // Run again, to the end: the same place as a run that never stopped, and no stray object.
      await runArchive(deps());
      const after = await placement();
      expect(after, `after stopping at step ${stopAt} and running again`).toEqual(finished);
      expect(await histories()).toEqual(before);
    }
    expect([...stoppedAt].sort()).toEqual(["commit", "put", "select"]);
  }, 180_000);

  it("commits nothing when another run archived the same rows first", async () => {
    const before = await histories();
    let raced = false;
    const first = runArchive(
      deps({
        maxParts: 1,
        beforeStep: async (step) => {
          if (step === "commit" && !raced) {
            raced = true;
            await runArchive(deps({ partRows: 1 }));
          }
        },
      }),
    );
    await expect(first).rejects.toThrow(/NOT NULL|UNIQUE/);
    const { d1, archived, unknown } = await placement();
    for (const kind of Object.keys(TABLES)) {
      expect(new Set(archived[kind]).size, kind).toBe(archived[kind]?.length);
      expect(
        (d1[kind] ?? []).filter((id) => archived[kind]?.includes(id)),
        kind,
      ).toEqual([]);
    }
    // The loser's object was put, its commit refused, and the object deleted: no reader of the bucket
    // (DuckDB over a day's prefix) meets its rows twice.
    expect(unknown).toEqual([]);
    expect(await histories()).toEqual(before);
  });

  it("commits nothing for a delivery replayed between its read and the commit, and keeps it whole in D1", async () => {
    let replayed = false;
    const run = runArchive(
      deps({
        beforeStep: async (step, kind) => {
          if (step === "commit" && kind === "deliveries" && !replayed) {
            replayed = true;
            // The first part of 2026-09-01 holds dlv-tx-0-0: an operator replays it, and it is tried again.
            await env.DB.batch([
              env.DB.prepare("UPDATE deliveries SET state = 'delivered', attempts = 3 WHERE id = 'dlv-tx-0-0'"),
              env.DB.prepare(
                `INSERT INTO delivery_attempts (delivery_id, attempt, partner_id, started_at, http_status, latency_ms, outcome)
                 VALUES ('dlv-tx-0-0', 3, 'ptn-crash', ?, 200, 9, 'delivered')`,
              ).bind(new Date(NOW_MS).toISOString()),
            ]);
          }
        },
      }),
    );
    await expect(run).rejects.toThrow(/NOT NULL/);
    const attempts = await env.DB.prepare(
      "SELECT attempt FROM delivery_attempts WHERE delivery_id = 'dlv-tx-0-0' ORDER BY attempt",
    ).all();
    expect(attempts.results).toEqual([{ attempt: 1 }, { attempt: 2 }, { attempt: 3 }]);
    // The next run archives it with all three attempts.
    await runArchive(deps());
    const { deliveries } = await conversionDeliveries(env.DB, env.ARCHIVE, NETWORK, "tx-0", false);
    expect(deliveries.find((d) => d.id === "dlv-tx-0-0")?.attempts_log.map((a) => a.attempt)).toEqual([1, 2, 3]);
    const { d1, archived, unknown } = await placement();
    expect(unknown).toEqual([]);
    expect(d1.deliveries).not.toContain("dlv-tx-0-0");
    expect(archived.deliveries?.filter((id) => id === "dlv-tx-0-0")).toHaveLength(1);
  });

  it("keeps clicks in D1 while an offer's attribution window could still bring a conversion back to them", async () => {
    await env.DB.batch([
      env.DB.prepare(
        "INSERT INTO networks (id, name, created_at, updated_at) VALUES ('net-window', 'Window', '2026-01-01', '2026-01-01')",
      ),
      // 100 days: the clicks of 1 and 2 September (93 and 92 days old) may still attribute.
      env.DB.prepare(
        `INSERT INTO offers (id, network_id, name, landing_url, attribution_window_days, created_at, updated_at)
         VALUES ('ofr-window', 'net-window', 'Window', 'https://shop.test/', 100, '2026-01-01', '2026-01-01')`,
      ),
    ]);
    const summary = await runArchive(deps());
    expect(summary.rows.clicks).toBe(0);
    expect(summary.rows.events).toBe(6);
    const { d1 } = await placement();
    expect(d1.clicks).toHaveLength(CONVERSIONS.length * 3);
  });
});
