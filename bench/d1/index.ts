/**
 * `npm run bench:d1`: what a D1 `batch()` of the events consumer's writes costs as the batch grows.
 * One unit is one event as the consumer records it, built by the hub's own statement builders
 * (src/storage/, never copied): its `conversion_events` row and `conversions` upsert
 * (recordEventStatements) and one `deliveries` row (insertDeliveryStatement), 3 statements.
 *
 * `GET /health` answers ok (for the bench's start-up wait); `POST /run?size=<events per batch>&batches=<n>` writes n batches of that many new events, one
 * `await db.batch(...)` each, and answers the elapsed time and D1's own counts (rows written,
 * indexes included, and its `duration` summed over statements). The clock: local workerd lets
 * Date.now() advance at 1 ms resolution, and it moves across each batch's I/O, so the total over
 * n batches is timed, never one small batch alone.
 */
import { EventMessageSchema } from "../../src/domain/messages";
import { recordEventStatements } from "../../src/storage/d1";
import { insertDeliveryStatement } from "../../src/storage/deliveries";

interface Env {
  DB: D1Database;
}

let next = 0;

function eventStatements(db: D1Database, runId: string): D1PreparedStatement[] {
  next += 1;
  const at = new Date(Date.UTC(2026, 11, 3, 12, 0, 0) + next).toISOString();
  const transaction = `tx-${runId}-${next}`;
  const fields = {
    transaction_id: transaction,
    status: "pending",
    amount: "49.90",
    currency: "EUR",
    event_type: "purchase",
    campaign_id: "camp-987",
    click_id: `clk_${next}`,
    event_time: at,
  };
  const message = EventMessageSchema.parse({
    v: 1,
    event_id: `evt_${runId}_${next}`,
    network_id: "net_bench",
    transaction_id: transaction,
    seq: 1,
    verdict: "accepted",
    previous_status: null,
    received_at: at,
    event: fields,
    conversion: { ...fields, first_seen_at: at, version: 1 },
    hash: "a".repeat(64),
    prev_hash: null,
  });
  const delivery = insertDeliveryStatement(db, {
    id: `dlv_${runId}_${next}`,
    partner_id: "ptn_bench",
    state: "pending",
    now: at,
    payload: {
      network_id: message.network_id,
      transaction_id: message.transaction_id,
      event_id: message.event_id,
      verdict: "accepted",
      received_at: at,
      previous_status: null,
      conversion: message.conversion,
    },
  });
  return [...recordEventStatements(db, message), delivery];
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/health") return new Response("ok");
    if (request.method !== "POST" || url.pathname !== "/run") return new Response("not found", { status: 404 });
    const size = Number(url.searchParams.get("size"));
    const batches = Number(url.searchParams.get("batches"));
    const runId = crypto.randomUUID().slice(0, 8);
    // Built before the clock starts: only D1's side is timed.
    const work = Array.from({ length: batches }, () =>
      Array.from({ length: size }, () => eventStatements(env.DB, runId)).flat(),
    );
    let rowsWritten = 0;
    let d1DurationMs = 0;
    await scheduler.wait(0);
    const start = Date.now();
    for (const statements of work) {
      const results = await env.DB.batch(statements);
      for (const result of results) {
        rowsWritten += result.meta.rows_written ?? 0;
        d1DurationMs += result.meta.duration ?? 0;
      }
    }
    const elapsedMs = Date.now() - start;
    return Response.json({
      size,
      batches,
      events: size * batches,
      statements: work.flat().length,
      elapsedMs,
      rowsWritten,
      d1DurationMs,
    });
  },
} satisfies ExportedHandler<Env>;
