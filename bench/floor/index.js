// The bench's cost floor: each request creates one Durable Object (a fresh name) and writes one
// row in it, which is the irreducible part of ingesting a new conversion in the hub's design.
import { DurableObject } from "cloudflare:workers";

export class FloorObject extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec(
      "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL, at TEXT NOT NULL)",
    );
  }

  write(id, body) {
    this.ctx.storage.sql.exec("INSERT INTO events (id, body, at) VALUES (?, ?, ?)", id, body, new Date().toISOString());
    return true;
  }
}

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === "/health") return new Response("ok");
    const body = await request.text();
    const id = crypto.randomUUID();
    await env.FLOOR.getByName(id).write(id, body);
    return Response.json({ status: "accepted", id });
  },
};
