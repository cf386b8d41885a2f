/**
 * The partner coordinator's storage (issue 16, cost): `work` and `delivered` are WITHOUT ROWID
 * tables, an object written by earlier code (rowid tables, `work_by_conversion`) is moved over when
 * it starts, keeping its work in order, and finding the next deliveries reads about as many rows
 * as it returns, not the whole work list.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import {
  type CoordinatorDeps,
  HEADS_SQL,
  openCoordinatorSchema,
  PartnerCoordinator,
} from "../src/coordinator/partner-coordinator";
import type { AttemptReport } from "../src/delivery/attempt";
import { DEFAULT_BREAKER } from "../src/domain/partner";
import { uniqueId } from "./support/helpers";

const NOW = Date.now() + 365 * 86_400_000;

function recordingDeps(sent: string[]): CoordinatorDeps {
  return {
    now: () => NOW,
    supersede: async () => {},
    settings: async () => ({
      order: "ordered",
      pace: { max_in_flight: 1, max_per_second: null },
      breaker: DEFAULT_BREAKER,
    }),
    transition: async () => {},
    addCounts: async () => {},
    attempt: async ({ delivery_id }): Promise<AttemptReport> => {
      sent.push(delivery_id);
      return {
        retryInSeconds: null,
        sent: { outcome: { kind: "response", status: 200, retryAfter: null }, latencyMs: 20, retryAfterSeconds: null },
      };
    },
  };
}

function tableSql(sql: SqlStorage, name: string): string {
  return sql.exec<{ sql: string }>("SELECT sql FROM sqlite_master WHERE name = ?", name).toArray()[0]?.sql ?? "(none)";
}

describe("the coordinator's tables", () => {
  it("are WITHOUT ROWID for a new object, with no table of what was delivered (D1 says it)", async () => {
    const stub = env.COORDINATORS.getByName(uniqueId("ptn"));
    await runInDurableObject(stub, (_instance: PartnerCoordinator, state) => {
      expect(tableSql(state.storage.sql, "work")).toContain("WITHOUT ROWID");
      expect(tableSql(state.storage.sql, "delivered")).toBe("(none)");
      expect(tableSql(state.storage.sql, "work_by_conversion")).toBe("(none)");
    });
  });

  it("move an object written by earlier code over, keeping its work and its order, dropping what was delivered", async () => {
    const stub = env.COORDINATORS.getByName(uniqueId("ptn"));
    const sent: string[] = [];
    await runInDurableObject(stub, (_instance: PartnerCoordinator, state) => {
      const sql = state.storage.sql;
      // The storage as the code before issue 16 left it.
      sql.exec(`
        DROP TABLE work; DROP TABLE meta;
        CREATE TABLE work (delivery_id TEXT PRIMARY KEY, conversion TEXT NOT NULL, position INTEGER NOT NULL,
          due_ms INTEGER NOT NULL, status TEXT, fresh INTEGER NOT NULL DEFAULT 1);
        CREATE INDEX work_by_conversion ON work (conversion, position);
        CREATE TABLE delivered (conversion TEXT PRIMARY KEY, position INTEGER NOT NULL, status TEXT, at_ms INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      `);
      sql.exec("INSERT INTO meta (key, value) VALUES ('partner_id', '\"ptn_old\"')");
      sql.exec("INSERT INTO work VALUES ('o2', 'O', 2, 0, 'approved', 1), ('o1', 'O', 1, 0, 'pending', 1)");
      sql.exec("INSERT INTO work VALUES ('p1', 'P', 1, 0, 'pending', 1)");
      sql.exec("INSERT INTO delivered VALUES ('P', 3, 'approved', ?)", NOW);
      expect(tableSql(sql, "work")).not.toContain("WITHOUT ROWID");
      // A new instance over the same storage (what a restart after the deploy does).
      const restarted = new PartnerCoordinator(state, env);
      restarted.deps = recordingDeps(sent);
      expect(tableSql(sql, "work")).toContain("WITHOUT ROWID");
      expect(tableSql(sql, "delivered")).toBe("(none)");
      expect(tableSql(sql, "work_rowid")).toBe("(none)");
      expect(sql.exec("SELECT delivery_id FROM work ORDER BY conversion, position").toArray()).toEqual([
        { delivery_id: "o1" },
        { delivery_id: "o2" },
        { delivery_id: "p1" },
      ]);
      // Opening it again changes nothing.
      openCoordinatorSchema(sql);
      expect(sql.exec("SELECT count(*) AS n FROM work").one().n).toBe(3);
    });
    await runInDurableObject(stub, (instance: PartnerCoordinator) => {
      instance.deps = recordingDeps(sent);
    });
    await stub.submit("ptn_old", []);
    for (let i = 0; i < 5 && (await runDurableObjectAlarm(stub)); i++);
    // In order within O. Whether P's first delivery still goes is the attempt's to say, from D1
    // (test/delivery.attempt.test.ts, "what the partner already received").
    expect(sent).toEqual(["o1", "o2", "p1"]);
    expect((await stub.status()).waiting).toBe(0);
  });
});

describe("the pace and the breaker's window", () => {
  it("are one meta row, taken over from an object's pace row and outcomes table", async () => {
    const stub = env.COORDINATORS.getByName(uniqueId("ptn"));
    const attempts: string[] = [];
    const failing: CoordinatorDeps = {
      ...recordingDeps(attempts),
      settings: async () => ({
        order: "ordered",
        pace: { max_in_flight: 1, max_per_second: null },
        breaker: { ...DEFAULT_BREAKER, min_attempts: 4, failure_percent: 75 },
      }),
      attempt: async ({ delivery_id }): Promise<AttemptReport> => {
        attempts.push(delivery_id);
        return {
          retryInSeconds: 5,
          sent: {
            outcome: { kind: "response", status: 500, retryAfter: null },
            latencyMs: 20,
            retryAfterSeconds: null,
          },
        };
      },
    };
    await runInDurableObject(stub, (instance: PartnerCoordinator, state) => {
      instance.deps = failing;
      const sql = state.storage.sql;
      // As the code before left it: three failures in the outcomes table, the pace in its own row.
      sql.exec("INSERT INTO outcomes (at_ms, ok) VALUES (?, 0), (?, 0), (?, 0)", NOW - 3000, NOW - 2000, NOW - 1000);
      sql.exec(
        "INSERT INTO meta (key, value) VALUES ('pace', ?)",
        JSON.stringify({
          limit: 1,
          latency_ms: 20,
          paused_until_ms: null,
          changes: [{ at: "x", from: 2, to: 1, reason: "before" }],
        }),
      );
    });
    await stub.submit("ptn_window", [
      { delivery_id: "w1", conversion: "W", position: 1, due_ms: 0, status: "approved", fresh: 1 },
    ]);
    await stub.pump();
    // The fourth failure, counted with the three before: the breaker opens.
    expect(attempts).toEqual(["w1"]);
    const status = await stub.status();
    expect(status.breaker.position).toBe("open");
    expect(status.breaker.reason).toContain("4 of 4 attempts failed");
    expect(status.pace.changes[0]?.reason).toBe("before");
    await runInDurableObject(stub, (_instance: PartnerCoordinator, state) => {
      const sql = state.storage.sql;
      expect(sql.exec("SELECT count(*) AS n FROM outcomes").one().n).toBe(0);
      expect(sql.exec("SELECT key FROM meta WHERE key IN ('pace', 'learned') ORDER BY key").toArray()).toEqual([
        { key: "learned" },
      ]);
    });
  });
});

describe("finding the next deliveries", () => {
  it("reads about the rows it returns, not the whole work list", async () => {
    const stub = env.COORDINATORS.getByName(uniqueId("ptn"));
    await runInDurableObject(stub, (_instance: PartnerCoordinator, state) => {
      const sql = state.storage.sql;
      // 400 conversions with three waiting deliveries each, all due, and 400 not due yet.
      for (let c = 0; c < 400; c++) {
        for (let position = 1; position <= 3; position++) {
          sql.exec("INSERT INTO work VALUES (?, ?, ?, ?, 'approved', 1)", `d${c}.${position}`, `C${c}`, position, c);
        }
        sql.exec("INSERT INTO work VALUES (?, ?, 1, ?, 'approved', 1)", `later${c}`, `L${c}`, NOW + 60_000);
      }
      const inFlight = JSON.stringify(["C0", "C1"]);
      const cursor = sql.exec<{ delivery_id: string }>(HEADS_SQL, NOW, inFlight, 4);
      const heads = cursor.toArray().map((row) => row.delivery_id);
      // The soonest first place of each conversion not in flight.
      expect(heads).toEqual(["d2.1", "d3.1", "d4.1", "d5.1"]);
      // The walk passes C0 and C1 (in flight) and the later places of the conversions it returns: a
      // few dozen rows at most, where a scan of the list reads its 1,600.
      expect(cursor.rowsRead).toBeLessThan(60);
    });
  });
});
