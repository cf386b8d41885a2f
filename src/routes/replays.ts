/**
 * Admin API for bulk replay: a dry run counts what a filter would replay; a replay job re-arms it in
 * the background, at most a chunk a step (operations/replays.ts), with progress to poll.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { REPLAYABLE_STATES } from "../domain/delivery";
import { NETWORK_ID_PATTERN } from "../domain/network";
import { CONVERSION_STATUSES } from "../domain/postback";
import {
  BULK_REPLAY_DEFAULT_STATES,
  REPLAY_CHUNK_SIZE,
  REPLAY_JOB_STATES,
  REPLAY_SAMPLE_SIZE,
  REPLAY_STEP_PAUSE_MS,
  type ReplayFilter,
} from "../domain/replay";
import { ProblemError } from "../errors";
import { requestBulkReplay } from "../operations/replays";
import { filterOf, getReplayJob, listReplayJobs, type ReplayJobRow } from "../storage/replays";
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

const tags = ["Replays"];

const FilterFields = {
  partner_id: z.string().max(64).openapi({ description: "Only this partner's deliveries; it must be active." }),
  network_id: z
    .string()
    .regex(NETWORK_ID_PATTERN, { error: "must be a network id" })
    .openapi({ description: "Only deliveries of this network's conversions.", example: "acme" }),
  states: z
    .array(z.enum(REPLAYABLE_STATES))
    .min(1)
    .max(REPLAYABLE_STATES.length)
    .refine((states) => new Set(states).size === states.length, { error: "must not repeat a state" })
    .openapi({ description: `Deliveries in these states; default ${BULK_REPLAY_DEFAULT_STATES.join(" and ")}.` }),
  since: TimestampSchema.openapi({ description: "Deliveries created at or after (RFC 3339)." }),
  until: TimestampSchema.openapi({ description: "Deliveries created before (RFC 3339)." }),
  conversion_status: z
    .enum(CONVERSION_STATUSES)
    .openapi({ description: "Only deliveries that notify this status (the conversion's after its event)." }),
};

const ReplayRequest = z
  .strictObject({
    partner_id: FilterFields.partner_id.optional(),
    network_id: FilterFields.network_id.optional(),
    states: FilterFields.states.optional(),
    since: FilterFields.since.optional(),
    until: FilterFields.until.optional(),
    conversion_status: FilterFields.conversion_status.optional(),
    dry_run: z
      .boolean()
      .default(false)
      .openapi({ description: "Only count (and show a few ids of) what would be replayed; change nothing." }),
  })
  .superRefine((body, ctx) => {
    if (body.since !== undefined && body.until !== undefined && body.until <= body.since) {
      ctx.addIssue({ code: "custom", path: ["until"], message: "must be after since" });
    }
  })
  .openapi("ReplayRequest");

const FilterSchema = z
  .object({
    partner_id: z.string().nullable(),
    network_id: z.string().nullable(),
    states: z.array(z.enum(REPLAYABLE_STATES)),
    since: z.string().nullable(),
    until: z.string().nullable(),
    conversion_status: z.enum(CONVERSION_STATUSES).nullable(),
  })
  .openapi("ReplayFilter", { description: "What the replay selects; null: any." });

const DryRunSchema = z
  .object({
    dry_run: z.literal(true),
    filter: FilterSchema,
    total: z.number().int().openapi({ description: "Deliveries a replay with this filter would take now." }),
    sample: z
      .array(z.string())
      .openapi({ description: `The ids of the oldest ${REPLAY_SAMPLE_SIZE} of them, the first a replay would send.` }),
  })
  .openapi("ReplayDryRun");

const JobSchema = z
  .object({
    id: z.string().openapi({ example: "rpl_01jdx3yq2w8k4m6n9p0r2s4t6v" }),
    state: z.enum(REPLAY_JOB_STATES).openapi({
      description:
        "queued (no step yet), running, finished (nothing left to select), failed (its steps kept failing; `error` says why).",
    }),
    filter: FilterSchema,
    total: z.number().int().openapi({ description: "Deliveries that matched when the job was created." }),
    done: z
      .number()
      .int()
      .openapi({ description: "Deliveries it has re-armed and sent so far; `total` when nothing moved meanwhile." }),
    error: z
      .string()
      .nullable()
      .openapi({ description: "Why the last step failed; cleared by the next that succeeds." }),
    created_at: z.string(),
    started_at: z.string().nullable(),
    updated_at: z.string(),
    finished_at: z.string().nullable(),
  })
  .openapi("ReplayJob");

const ListQuery = PaginationQuerySchema.extend({
  state: z.enum(REPLAY_JOB_STATES).optional(),
});

const Params = z.object({
  replay_id: z
    .string()
    .max(64)
    .openapi({ param: { name: "replay_id", in: "path" }, example: "rpl_01jdx3yq2w8k4m6n9p0r2s4t6v" }),
});

function toJob(row: ReplayJobRow): z.infer<typeof JobSchema> {
  return {
    id: row.id,
    state: row.state,
    filter: filterOf(row),
    total: row.total,
    done: row.done,
    error: row.error,
    created_at: row.created_at,
    started_at: row.started_at,
    updated_at: row.updated_at,
    finished_at: row.finished_at,
  };
}

export function registerReplayRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/replays",
      operationId: "createReplay",
      tags,
      summary: "Replay deliveries in bulk by filter",
      description: `Selects failed or dead (or parked) deliveries of active partners created before now, by partner, network, time range and conversion status. \`dry_run\` answers 200 with the count and changes nothing; otherwise a job is created (202) and runs in the background: ${REPLAY_CHUNK_SIZE} deliveries a step, oldest first, ${REPLAY_STEP_PAUSE_MS / 1000} s between steps, each keeping its delivery id (the partner's \`webhook-id\`).`,
      request: { body: { required: true, content: { "application/json": { schema: ReplayRequest } } } },
      responses: {
        200: {
          description: "The dry run: what would be replayed.",
          content: { "application/json": { schema: DryRunSchema } },
        },
        202: {
          description: "The job, queued; poll it with GET /v1/replays/{replay_id}.",
          content: { "application/json": { schema: JobSchema } },
        },
        409: problem("The partner named is disabled."),
        415: problem("The request has no JSON body: send the filter, `{}` for every failed or dead delivery."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      // Without a JSON body the validator sees {}, which is a filter too: every failed or dead
      // delivery. A request that forgot its body must not start that.
      if (!/^application\/json\b/i.test(c.req.header("content-type") ?? "")) {
        throw new ProblemError(
          "unsupported_media_type",
          "Send the filter as a JSON body (Content-Type: application/json); {} selects every failed or dead delivery.",
          [{ location: "header.content-type", message: "must be application/json" }],
        );
      }
      const body = c.req.valid("json");
      const filter: ReplayFilter = {
        partner_id: body.partner_id ?? null,
        network_id: body.network_id ?? null,
        states: body.states ?? [...BULK_REPLAY_DEFAULT_STATES],
        since: body.since ?? null,
        until: body.until ?? null,
        conversion_status: body.conversion_status ?? null,
      };
      const answer = await requestBulkReplay(c.env, filter, body.dry_run);
      if (answer.dry_run)
        return c.json({ dry_run: true as const, filter, total: answer.total, sample: answer.sample }, 200);
      return c.json(toJob(answer.job), 202);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/replays",
      operationId: "listReplays",
      tags,
      summary: "List replay jobs",
      description: "Newest first, optionally by state, paginated with a cursor.",
      request: { query: ListQuery },
      responses: {
        200: {
          description: "A page of replay jobs.",
          content: { "application/json": { schema: listOf(JobSchema, "ReplayJobList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, state } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listReplayJobs(c.env.DB, state, limit + 1, after);
      return c.json(
        page(rows, limit, toJob, (row) => [row.created_at, row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/replays/{replay_id}",
      operationId: "getReplay",
      tags,
      summary: "Get a replay job and its progress",
      request: { params: Params },
      responses: {
        200: { description: "The job.", content: { "application/json": { schema: JobSchema } } },
        404: problem("No such replay job."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { replay_id } = c.req.valid("param");
      const row = await getReplayJob(c.env.DB, replay_id);
      if (!row) {
        throw new ProblemError("not_found", `No replay job "${replay_id}".`, [
          { location: "path.replay_id", message: "not found" },
        ]);
      }
      return c.json(toJob(row), 200);
    },
  );
}
