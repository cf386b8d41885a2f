/**
 * Admin API for dead letters: the queue messages consumers gave up on (every queue and its
 * dead-letter queue writes them), listed, inspected, and replayed into the queue they came from.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { ProblemError } from "../errors";
import { judgeDeadLetter, replayDeadLetter } from "../queues/dead-letter-replay";
import { QUEUE_SOURCES, queueNamesOf } from "../queues/queue-names";
import { type DeadLetterRow, getDeadLetter, listDeadLetters } from "../storage/dead-letters";
import {
  ADMIN_PROBLEMS,
  type App,
  decodeCursor,
  listOf,
  PaginationQuerySchema,
  page,
  problem,
  TimestampSchema,
} from "./common";

const tags = ["Dead letters"];

const DeadLetterSchema = z
  .object({
    id: z.string().openapi({
      description: "`<queue name>:<message id>`: one row per message, however often it died.",
      example: "postback-events-dlq:8c1e6a1f2b3d4c5e",
    }),
    queue: z.string().openapi({ description: "The queue whose consumer kept it (a main queue or its DLQ)." }),
    source: z
      .enum(QUEUE_SOURCES)
      .nullable()
      .openapi({ description: "What the queue carries; a replay goes to this source's main queue. Null: unknown." }),
    reason: z.string().openapi({ description: "Why the consumer gave up on it." }),
    attempts: z.number().int().openapi({ description: "Deliveries of the message before it was kept." }),
    created_at: z.string(),
    replayed_at: z.string().nullable().openapi({ description: "When it was last replayed; null if never." }),
    replayable: z.boolean().openapi({
      description: "Whether its body is a valid message of its queue (a deliveries one also needs its delivery).",
    }),
    not_replayable_reason: z.string().nullable().openapi({ description: "Why its body cannot be replayed." }),
  })
  .openapi("DeadLetter");

const DeadLetterDetailSchema = DeadLetterSchema.extend({
  body: z
    .unknown()
    .openapi({ description: "The message body, as the consumer received it (erased where an erasure reached it)." }),
}).openapi("DeadLetterDetail");

const ListQuery = PaginationQuerySchema.extend({
  queue: z
    .enum(QUEUE_SOURCES)
    .optional()
    .openapi({ description: "Only this source's letters: its queue's and its dead-letter queue's." }),
  since: TimestampSchema.optional().openapi({ description: "Kept at or after (RFC 3339)." }),
  until: TimestampSchema.optional().openapi({ description: "Kept before (RFC 3339)." }),
});

const Params = z.object({
  dead_letter_id: z
    .string()
    .max(300)
    .openapi({ param: { name: "dead_letter_id", in: "path" }, example: "postback-events-dlq:8c1e6a1f2b3d4c5e" }),
});

const ReplayBody = z
  .strictObject({
    force: z
      .boolean()
      .default(false)
      .openapi({ description: "Replay a letter that was replayed before (without it, that is a 409)." }),
  })
  .openapi("DeadLetterReplay");

function toDeadLetter(env: Env, row: DeadLetterRow): z.infer<typeof DeadLetterSchema> {
  const verdict = judgeDeadLetter(env, row);
  return {
    id: row.id,
    queue: row.queue,
    source: verdict.source,
    reason: row.reason,
    attempts: row.attempts,
    created_at: row.created_at,
    replayed_at: row.replayed_at,
    replayable: verdict.replayable,
    not_replayable_reason: verdict.replayable ? null : verdict.reason,
  };
}

function bodyOf(row: DeadLetterRow): unknown {
  try {
    return JSON.parse(row.body);
  } catch {
    return row.body;
  }
}

export function registerDeadLetterRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/dead-letters",
      operationId: "listDeadLetters",
      tags,
      summary: "List dead letters",
      description: "Newest first by when they were kept, filtered by queue and time, paginated with a cursor.",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of dead letters.",
          content: { "application/json": { schema: listOf(DeadLetterSchema, "DeadLetterList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, queue, since, until } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const names = queue === undefined ? null : queueNamesOf(c.env, queue);
      const rows = await listDeadLetters(
        c.env.DB,
        { queues: names && [names.queue, names.dlq], since: since ?? null, until: until ?? null },
        limit + 1,
        after,
      );
      return c.json(
        page(
          rows,
          limit,
          (row) => toDeadLetter(c.env, row),
          (row) => [row.created_at, row.id],
        ),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/dead-letters/{dead_letter_id}",
      operationId: "getDeadLetter",
      tags,
      summary: "Get a dead letter and its message body",
      request: { params: Params },
      responses: {
        200: { description: "The dead letter.", content: { "application/json": { schema: DeadLetterDetailSchema } } },
        404: problem("No such dead letter."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { dead_letter_id } = c.req.valid("param");
      const row = await getDeadLetter(c.env.DB, dead_letter_id);
      if (!row) throw missing(dead_letter_id);
      return c.json({ ...toDeadLetter(c.env, row), body: bodyOf(row) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/dead-letters/{dead_letter_id}/replay",
      operationId: "replayDeadLetter",
      tags,
      summary: "Send a dead letter's message back to its queue",
      description:
        "The body goes, as stored, to the main queue of its source (a dead-letter queue's letter too), and the letter is marked replayed. A deliveries letter replays its delivery, same id. Refused, with nothing sent, for a letter replayed before (unless `force`) and for a body that is not a valid message of its queue.",
      request: {
        params: Params,
        body: { required: false, content: { "application/json": { schema: ReplayBody } } },
      },
      responses: {
        202: {
          description: "Sent to its queue; the letter, with `replayed_at`.",
          content: { "application/json": { schema: DeadLetterDetailSchema } },
        },
        404: problem("No such dead letter."),
        409: problem(
          "Replayed before (`invalid_state`; send `force`), its delivery was delivered (`invalid_state`), or its delivery's partner is not active (`partner_disabled`).",
        ),
        ...ADMIN_PROBLEMS,
        422: problem(
          "Its body is not a valid message of its queue, or its delivery no longer exists (`not_replayable`); or the request failed validation.",
        ),
      },
    }),
    async (c) => {
      const { dead_letter_id } = c.req.valid("param");
      const body = c.req.valid("json") ?? { force: false };
      const row = await replayDeadLetter(
        {
          db: c.env.DB,
          names: c.env,
          queues: {
            events: c.env.EVENTS,
            deliveries: c.env.DELIVERIES,
            requests: c.env.REQUEST_LOG,
            clicks: c.env.CLICKS,
          },
        },
        dead_letter_id,
        body.force,
      );
      return c.json({ ...toDeadLetter(c.env, row), body: bodyOf(row) }, 202);
    },
  );
}

function missing(id: string): ProblemError {
  return new ProblemError("not_found", `No dead letter "${id}".`, [
    { location: "path.dead_letter_id", message: "not found" },
  ]);
}
