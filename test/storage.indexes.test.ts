/**
 * Indexes cost a row written on every insert (issue 16): migration 0022 drops those no query reads.
 * Here the planner is asked, for the queries that filter on the dropped indexes' columns, which
 * index it walks: the one each query was written for, never a scan of the table.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { archiveQueries } from "../src/storage/archive";
import {
  DELIVERIES_TO_COORDINATE_SQL,
  enablePartner,
  LAST_DELIVERED_SQL,
  parkDeliveriesStatement,
  type ReplaySelection,
  selectionWhere,
} from "../src/storage/deliveries";
import { deletePartner } from "../src/storage/partners";
import { hubConversionsOfPeriod } from "../src/storage/reconciliations";
import { LOGGED_NETWORKS } from "../src/storage/requests";
import { uniqueId } from "./support/helpers";

/** The plan, every parameter bound to NULL (the plan is made before the values are known). */
async function plan(sql: string): Promise<string> {
  const highest = Math.max(
    (sql.match(/\?(?!\d)/g) ?? []).length,
    ...[...sql.matchAll(/\?(\d+)/g)].map((match) => Number(match[1])),
  );
  const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...Array.from({ length: highest }, () => null))
    .all<{ detail: string }>();
  return results.map((row) => row.detail).join("\n");
}

describe("migration 0022's index drops", () => {
  it("leaves no index that a query was reading", async () => {
    const { results } = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('conversions_by_campaign', 'conversions_by_click', 'conversions_by_attributed_partner', 'inbound_requests_by_transaction', 'inbound_requests_by_received', 'conversions_by_network', 'clicks_by_partner')",
    ).all();
    expect(results).toEqual([]);
    // The conversions list (src/storage/d1.ts listConversions): its optional filters, newest first.
    expect(
      await plan(`SELECT * FROM conversions
       WHERE (?1 IS NULL OR network_id = ?1) AND (?3 IS NULL OR campaign_id = ?3)
         AND (?14 IS NULL OR click_id = ?14) AND (?15 IS NULL OR attributed_partner_id = ?15)
       ORDER BY first_seen_at DESC, network_id DESC, transaction_id DESC, test DESC LIMIT 10`),
    ).toContain("USING INDEX conversions_by_first_seen");
    // A reconciliation's period, for one partner, from a page's cursor (src/storage/reconciliations.ts).
    expect(
      await plan(`SELECT * FROM conversions INDEXED BY conversions_by_first_seen
       WHERE network_id = ?1 AND test = 0 AND first_seen_at >= max(?2, coalesce(?5, ?2)) AND first_seen_at < ?3
         AND (?4 IS NULL OR attributed_partner_id = ?4) AND (?5 IS NULL OR (first_seen_at, transaction_id) > (?5, ?6))
       ORDER BY first_seen_at, transaction_id LIMIT 10`),
    ).toContain("USING INDEX conversions_by_first_seen (first_seen_at>? AND first_seen_at<?)");
    // Conversions by click id, as the click and stats queries look them up (normalised).
    expect(
      await plan(`SELECT network_id FROM conversions
       WHERE click_id IS NOT NULL AND lower(trim(click_id)) IN (SELECT value FROM json_each(?1))`),
    ).toContain("USING INDEX conversions_by_click_key");
    // The inbound log by network, with a transaction filter (src/storage/requests.ts).
    expect(
      await plan(`SELECT * FROM inbound_requests WHERE network_id = ?1 AND (?6 IS NULL OR transaction_id = ?6)
       ORDER BY received_at DESC, request_id DESC LIMIT 10`),
    ).toContain("USING INDEX inbound_requests_by_network");
    // Deliveries still moving (the sweep, the backlog gauge and alert, the overview): the partial
    // deliveries_by_state, which holds only those; finished ones by time (retention) by creation.
    for (const query of [
      "SELECT min(created_at) AS oldest FROM deliveries WHERE state IN ('pending', 'retrying')",
      `SELECT id FROM deliveries WHERE state IN ('pending', 'retrying') AND updated_at < ?1
         AND (lease_until IS NULL OR lease_until < ?1) ORDER BY updated_at LIMIT ?2`,
    ]) {
      expect(await plan(query)).toMatch(/USING (COVERING )?INDEX deliveries_by_state \(state=\?\)/);
    }
    // A hand-over's deliveries by id (the events consumer derives them), then their conversions' by
    // deliveries_by_conversion: left to itself the planner walks every unfinished delivery.
    const coordinate = await plan(DELIVERIES_TO_COORDINATE_SQL);
    expect(coordinate).toMatch(/SEARCH m USING INDEX sqlite_autoindex_deliveries_1 \(id=\?\)/);
    expect(coordinate).toContain("SEARCH d USING INDEX deliveries_by_conversion (network_id=? AND transaction_id=?)");
    expect(coordinate).not.toContain("deliveries_by_state");
    // What the partner last received of the conversion, read by each attempt: the same two steps.
    const last = await plan(LAST_DELIVERED_SQL);
    expect(last).toMatch(/SEARCH m USING INDEX sqlite_autoindex_deliveries_1 \(id=\?\)/);
    expect(last).toContain("SEARCH d USING INDEX deliveries_by_conversion (network_id=? AND transaction_id=?)");
    expect(
      await plan("DELETE FROM deliveries WHERE created_at < ?1 AND state IN ('delivered', 'failed', 'dead')"),
    ).toContain("USING INDEX deliveries_by_created (created_at<?)");
    const { results: partial } = await env.DB.prepare(
      "SELECT sql FROM sqlite_master WHERE name = 'deliveries_by_state'",
    ).all<{ sql: string }>();
    expect(partial[0]?.sql).toContain("WHERE state IN ('pending', 'retrying')");
    // An offer's clicks, for one partner or all (src/storage/offers.ts).
    expect(
      await plan("SELECT count(*) AS n FROM clicks WHERE offer_id = ?1 AND (?2 IS NULL OR partner_id = ?2)"),
    ).toContain("INDEX clicks_by_offer (offer_id=?)");
    // The archive's reads by time of the other kinds (src/storage/archive.ts): each by its index on time.
    for (const [kind, index] of [
      ["events", "conversion_events_by_received"],
      ["deliveries", "deliveries_by_created"],
      ["clicks", "clicks_by_time"],
    ] as const) {
      for (const query of Object.values(archiveQueries(kind))) expect(await plan(query)).toContain(`INDEX ${index}`);
    }
    // The log by time across networks (retention, the overview's chart, the archive): by network, never a scan.
    for (const query of [
      `${LOGGED_NETWORKS} DELETE FROM inbound_requests WHERE network_id IN (SELECT network_id FROM logged) AND received_at < ?1`,
      `${LOGGED_NETWORKS} SELECT count(*) FROM inbound_requests WHERE network_id IN (SELECT network_id FROM logged) AND received_at >= ?1`,
      archiveQueries("requests").oldestDay,
      archiveQueries("requests").rows,
    ]) {
      const found = await plan(query);
      expect(found).toMatch(
        /SEARCH inbound_requests USING (COVERING )?INDEX inbound_requests_by_network \(network_id=\? AND received_at/,
      );
      expect(found).not.toMatch(/SCAN inbound_requests\b/);
    }
  });
});

/** The SQL a statement builder prepares (nothing is run). */
function sqlOf(build: (db: D1Database) => unknown): string {
  let captured = "";
  const db = {
    prepare: (sql: string) => {
      captured = sql;
      return { bind: () => ({}) };
    },
  } as unknown as D1Database;
  build(db);
  return captured;
}

/** Every statement an operation prepares that touches deliveries (its batch answers nothing). */
async function deliveryStatementsOf(run: (db: D1Database) => Promise<unknown>): Promise<string[]> {
  const captured: string[] = [];
  const db = {
    prepare: (sql: string) => {
      captured.push(sql);
      return { bind: () => ({}) };
    },
    batch: async (statements: unknown[]) => statements.map(() => ({ results: [], meta: { changes: 0 } })),
  } as unknown as D1Database;
  await run(db);
  return captured.filter((sql) => /(UPDATE|FROM) deliveries\b/.test(sql));
}

describe("a partner's deliveries, with no index by partner over all of them (0024, 0027)", () => {
  it("parks a partner's unfinished deliveries through deliveries_by_state, not the partner's whole history", async () => {
    // Disabling runs it (an operator, a 410, the breaker giving up, an attempt finding its partner
    // disabled): never a scan of every delivery.
    const park = await plan(sqlOf((db) => parkDeliveriesStatement(db, "ptn", "now")));
    expect(park).toMatch(/USING (COVERING )?INDEX deliveries_by_state \(state=\?\)/);
  });

  it("finds a partner's parked deliveries (enabling it, deleting it) without its whole history", async () => {
    const statements = [
      ...(await deliveryStatementsOf((db) => enablePartner(db, "ptn", "now"))),
      ...(await deliveryStatementsOf((db) => deletePartner(db, "ptn", "now"))),
    ];
    expect(statements.length).toBeGreaterThanOrEqual(2);
    for (const sql of statements) {
      const found = await plan(sql);
      expect(found, sql).not.toMatch(/SCAN deliveries\b/);
    }
  });

  it("replays a partner's failures through its replayable deliveries, not its whole history", async () => {
    const selection: ReplaySelection = {
      partner_id: "ptn",
      states: ["failed", "dead"],
      since: "2026-12-01T00:00:00.000Z",
      until: null,
    };
    const params: unknown[] = [];
    const where = selectionWhere(selection, params);
    for (const query of [
      `SELECT count(*) AS n FROM deliveries WHERE ${where}`,
      `SELECT created_at, id FROM deliveries WHERE ${where} ORDER BY created_at, id LIMIT 10`,
    ]) {
      expect(await plan(query), query).toMatch(
        /SEARCH deliveries USING (COVERING )?INDEX deliveries_replayable_by_partner \(partner_id=\? AND created_at>\?\)/,
      );
    }
    // A bulk replay of every partner walks the creation order from its cursor, as before.
    const everyone = selectionWhere({ ...selection, partner_id: null }, []);
    expect(
      await plan(`SELECT created_at, id FROM deliveries WHERE ${everyone} ORDER BY created_at, id LIMIT 10`),
    ).toContain("deliveries_by_created");
  });
});

describe("a reconciliation's period, without an index by network", () => {
  it("pages through the network's live conversions of the period in order, and nothing else", async () => {
    const network = uniqueId("net");
    const other = uniqueId("net");
    const insert = (networkId: string, tx: string, firstSeen: string, test = 0) =>
      env.DB.prepare(
        `INSERT INTO conversions (network_id, transaction_id, status, event_time, first_seen_at, updated_at, version, test)
         VALUES (?, ?, 'approved', ?, ?, ?, 1, ?)`,
      )
        .bind(networkId, tx, firstSeen, firstSeen, firstSeen, test)
        .run();
    const at = (minute: number) => `2032-03-01T00:${String(minute).padStart(2, "0")}:00.000Z`;
    for (const [tx, minute] of [
      ["b", 1],
      ["a", 1],
      ["c", 2],
      ["d", 3],
      ["e", 5],
    ] as const) {
      await insert(network, tx, at(minute));
      await insert(other, tx, at(minute));
    }
    await insert(network, "t", at(2), 1);
    await insert(network, "before", "2032-02-28T00:00:00.000Z");
    await insert(network, "after", at(30));
    const period = { network_id: network, partner_id: null, since: at(0), until: at(10) };
    const seen: string[] = [];
    let after: { first_seen_at: string; transaction_id: string } | null = null;
    for (let page = 0; page < 10; page++) {
      const rows = await hubConversionsOfPeriod(env.DB, period, after, 2);
      if (rows.length === 0) break;
      seen.push(...rows.map((row) => row.transaction_id));
      const last = rows.at(-1);
      after = last ? { first_seen_at: last.first_seen_at, transaction_id: last.transaction_id } : null;
    }
    expect(seen).toEqual(["a", "b", "c", "d", "e"]);
  });
});
