// The bench's cost floors. POST /ingest: each request creates one Durable Object (a fresh name) and
// writes one row in it, the irreducible part of ingesting a new conversion in the hub's design.
// POST /ingest-queued: the same, plus the outbox's minimum: the object's alarm sends one message to
// a queue whose consumer only acks it (the hub's consumer also writes D1). Under wrangler dev the
// queue is Miniflare's broker in the same workerd, so this shows what that hop costs on this machine.
import { DurableObject } from "cloudflare:workers";

export class FloorObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL, at TEXT NOT NULL)",
    );
  }

  async write(id, body, queued) {
    this.ctx.storage.sql.exec("INSERT INTO events (id, body, at) VALUES (?, ?, ?)", id, body, new Date().toISOString());
    if (queued) await this.ctx.storage.setAlarm(Date.now());
    return true;
  }

  async alarm() {
    const rows = this.ctx.storage.sql.exec("SELECT id, body FROM events").toArray();
    await this.env.FLOOR_EVENTS.sendBatch(rows.map((row) => ({ body: row, contentType: "json" })));
  }
}

export default {
  async fetch(request, env) {
    const { pathname } = new URL(request.url);
    if (pathname === "/health") return new Response("ok");
    const body = await request.text();
    const id = crypto.randomUUID();
    await env.FLOOR.getByName(id).write(id, body, pathname === "/ingest-queued");
    return Response.json({ status: "accepted", id });
  },

  async queue(batch) {
    batch.ackAll();
  },
};
