/**
 * What a delivery costs in D1's storage (its 10 GB is the hub's ceiling: BENCHMARKS.md counts about
 * 1.5 million conversions a database). A delivery's row is about a kilobyte: its payload is the
 * event and the conversion after it. A WITHOUT ROWID table keeps rows in an index b-tree, whose
 * cells hold at most about a quarter of a page (1,001 bytes of a 4,096-byte page) before the rest
 * goes to an overflow page of its own: a 1,040-byte row then takes two pages, not a quarter of one.
 * So the tables written per conversion stay rowid tables (migrations/0024_delivery_rows.sql).
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { uniqueId } from "./support/helpers";

const ROWS = 400;

describe("a delivery's row in D1", () => {
  // A draft of 0024 made deliveries WITHOUT ROWID: 4,844 bytes a row here (1,652 before it, by
  // sqlite3 over the same rows). 0024 keeps them a rowid table.
  it("takes about its own size on disk, not a page and a half per row", async () => {
    const partnerId = uniqueId("ptn");
    const at = new Date().toISOString();
    // A rich postback's payload (sub ids, user and device ids, attribution): about 860 bytes.
    const payload = JSON.stringify({ event: { blob: "x".repeat(800) }, conversion: { version: 1 } });
    const before = (await env.DB.prepare("SELECT 1").run()).meta.size_after;
    for (let i = 0; i < ROWS; i += 50) {
      await env.DB.batch(
        Array.from({ length: 50 }, () =>
          env.DB.prepare(
            `INSERT INTO deliveries (id, event_id, partner_id, network_id, transaction_id, state, payload, created_at,
               updated_at, delivered_at)
             VALUES (?1, ?2, ?3, 'net_size', ?4, 'delivered', ?5, ?6, ?6, ?6)`,
          ).bind(uniqueId("dlv"), uniqueId("evt_01m96jz6dtzkwrqavy"), partnerId, uniqueId("tx"), payload, at),
        ),
      );
    }
    const after = (await env.DB.prepare("SELECT 1").run()).meta.size_after;
    const perRow = (after - before) / ROWS;
    // A rowid table: about 1,650 bytes (the row, its automatic key index and the other indexes).
    expect(perRow).toBeLessThan(2_500);
  });
});
