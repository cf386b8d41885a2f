/**
 * Indexes cost a row written on every insert (issue 16): migration 0022 drops those no query reads.
 * Here the planner is asked, for the queries that filter on the dropped indexes' columns, which
 * index it walks: the one each query was written for, never a scan of the table.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { LOGGED_NETWORKS } from "../src/storage/requests";

/** The plan, every parameter bound to NULL (the plan is made before the values are known). */
async function plan(sql: string): Promise<string> {
  const highest = Math.max(0, ...[...sql.matchAll(/\?(\d+)/g)].map((match) => Number(match[1])));
  const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`)
    .bind(...Array.from({ length: highest }, () => null))
    .all<{ detail: string }>();
  return results.map((row) => row.detail).join("\n");
}

describe("migration 0022's index drops", () => {
  it("leaves no index that a query was reading", async () => {
    const { results } = await env.DB.prepare(
      "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN ('conversions_by_campaign', 'conversions_by_click', 'conversions_by_attributed_partner', 'inbound_requests_by_transaction', 'inbound_requests_by_received')",
    ).all();
    expect(results).toEqual([]);
    // The conversions list (src/storage/d1.ts listConversions): its optional filters, newest first.
    expect(
      await plan(`SELECT * FROM conversions
       WHERE (?1 IS NULL OR network_id = ?1) AND (?3 IS NULL OR campaign_id = ?3)
         AND (?14 IS NULL OR click_id = ?14) AND (?15 IS NULL OR attributed_partner_id = ?15)
       ORDER BY first_seen_at DESC, network_id DESC, transaction_id DESC, test DESC LIMIT 10`),
    ).toContain("USING INDEX conversions_by_first_seen");
    // A reconciliation's period, for one partner (src/storage/reconciliations.ts).
    expect(
      await plan(`SELECT * FROM conversions
       WHERE network_id = ?1 AND test = 0 AND first_seen_at >= ?2 AND first_seen_at < ?3
         AND (?4 IS NULL OR attributed_partner_id = ?4) ORDER BY first_seen_at, transaction_id LIMIT 10`),
    ).toContain("USING INDEX conversions_by_network");
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
    // The log by time across networks (retention, the overview's chart): by network, never a scan.
    for (const query of [
      `${LOGGED_NETWORKS} DELETE FROM inbound_requests WHERE network_id IN (SELECT network_id FROM logged) AND received_at < ?1`,
      `${LOGGED_NETWORKS} SELECT count(*) FROM inbound_requests WHERE network_id IN (SELECT network_id FROM logged) AND received_at >= ?1`,
    ]) {
      const found = await plan(query);
      expect(found).toMatch(
        /SEARCH inbound_requests USING (COVERING )?INDEX inbound_requests_by_network \(network_id=\? AND received_at/,
      );
      expect(found).not.toMatch(/SCAN inbound_requests\b/);
    }
  });
});
