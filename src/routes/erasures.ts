/**
 * Admin API for erasure (docs/privacy.md): erase one person's user id, device id or click id
 * everywhere the hub keeps it, in bounded runs (the same request again continues), and read the
 * record of what was done, which never holds the identifier.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { configOf } from "../config";
import { ERASABLE_IDENTIFIERS, ERASED_PREFIX, type ErasableIdentifier } from "../domain/erasure";
import { NETWORK_ID_PATTERN } from "../domain/network";
import { PostbackFieldsSchema } from "../domain/postback";
import { ProblemError, validationFailed } from "../errors";
import { hmacKey } from "../lib/keys";
import { ERASURE_DEFAULT_LIMIT, ERASURE_MAX_LIMIT, parseCounts, runErasure } from "../privacy/erasure";
import { type ErasureRow, getErasure, listErasures } from "../storage/erasures";
import { getNetwork } from "../storage/networks";
import { ADMIN_PROBLEMS, type App, decodeCursor, listOf, PaginationQuerySchema, page, problem } from "./common";

const tags = ["Privacy"];

const identifier = (field: ErasableIdentifier, description: string) =>
  PostbackFieldsSchema.shape[field].openapi({ description });

const ErasureBody = z
  .strictObject({
    user_id: identifier(
      "user_id",
      "Erase this user id: as the network sent it, and as its keyed hash (`h1:…`) where a network hashes it. An `h1:…` value, as the hub shows it, finds only the hashed rows.",
    ),
    device_id: identifier("device_id", "Erase this device id (as sent, and as its keyed hash)."),
    click_id: identifier(
      "click_id",
      "Erase this click id: in conversions, their history and deliveries, and the click's own record.",
    ),
    network_id: z
      .string()
      .regex(NETWORK_ID_PATTERN, { error: "must be a network id" })
      .optional()
      .openapi({ description: "Only this network's data; every network's when omitted.", example: "acme" }),
    limit: z
      .number()
      .int()
      .min(1)
      .max(ERASURE_MAX_LIMIT)
      .default(ERASURE_DEFAULT_LIMIT)
      .openapi({
        description: `Conversions to erase in this call (1 to ${ERASURE_MAX_LIMIT}, default ${ERASURE_DEFAULT_LIMIT}): each costs one Durable Object call, and a Worker request may make only so many subrequests (50 on the Free plan, 1,000 by default on Paid). Call again while \`remaining\` is above 0.`,
      }),
  })
  .superRefine((body, ctx) => {
    const given = ERASABLE_IDENTIFIERS.filter((field) => body[field] !== undefined);
    if (given.length === 0) {
      ctx.addIssue({
        code: "custom",
        path: ["user_id"],
        message: `is required unless device_id or click_id is given: an erasure names exactly one of ${ERASABLE_IDENTIFIERS.join(", ")}`,
      });
    }
    for (const field of given.slice(1)) {
      ctx.addIssue({
        code: "custom",
        path: [field],
        message: `must not be given with ${given[0]}: one identifier per erasure (send another request for this one)`,
      });
    }
    for (const field of given) {
      if (body[field]?.startsWith(ERASED_PREFIX)) {
        ctx.addIssue({ code: "custom", path: [field], message: "is an erasure's marker: it was erased already" });
      }
    }
  })
  .openapi("ErasureRequest");

const NumberMap = (keys: readonly string[]) =>
  z.object(Object.fromEntries(keys.map((key) => [key, z.number().int()])) as Record<string, z.ZodNumber>);

const CountsSchema = z
  .object({
    d1: NumberMap([
      "conversions",
      "conversion_events",
      "deliveries",
      "delivery_attempts",
      "inbound_requests",
      "dead_letters",
      "clicks",
    ]).openapi({ description: "Rows rewritten, per D1 table." }),
    objects: NumberMap([
      "touched",
      "held",
      "states",
      "fingerprints",
      "outbox",
      "in_flight",
      "attested",
      "unverified_chains",
    ]).openapi({
      description:
        "The conversions' Durable Objects: asked (`touched`), holding their conversion (`held`), whose state, history fingerprints and outbox rows held the value; `in_flight`: outbox rows the queue already had a copy of (the events consumer erases such copies as they arrive); `attested`: rewritten events whose erased content the object recorded the hash of, so the proof still verifies them; `unverified_chains`: conversions whose chain did not verify before the erasure, so their rewritten events cannot be verified.",
    }),
  })
  .openapi("ErasureCounts");

const ErasureSchema = z
  .object({
    id: z.string().openapi({
      description:
        "The same identifier and scope always make the same id: a repeated request is another run of this erasure. Erased values become `erased:<id>`.",
      example: "ers_7k2m9q4r1t8v3w6x0y5z2a4b6c",
    }),
    kind: z.enum(ERASABLE_IDENTIFIERS),
    identifier_hash: z.string().openapi({
      description: "The identifier's keyed hash (`h1:…`, docs/privacy.md): never the identifier itself.",
    }),
    network_id: z.string().nullable().openapi({ description: "The scope; null: every network." }),
    requested_at: z.string(),
    last_run_at: z.string(),
    runs: z.number().int(),
    status: z.enum(["partial", "complete"]).openapi({
      description: "complete: its last run found nothing left to erase; partial: call again.",
    }),
    counts: CountsSchema.openapi({ description: "What all runs did." }),
  })
  .openapi("Erasure");

const ErasureRunSchema = ErasureSchema.extend({
  run: z
    .object({
      counts: CountsSchema,
      remaining: z.number().int().openapi({ description: "Conversions still holding the value: call again." }),
      inbound_remaining: z
        .boolean()
        .openapi({ description: "Inbound log records still show it beyond this run's bound: call again." }),
      partners: z.array(z.string()).openapi({
        description:
          "Partners this run's conversions were sent to: they hold copies the hub cannot erase; pass the request on to them.",
      }),
    })
    .openapi({ description: "What this call did." }),
}).openapi("ErasureRun");

const ErasureParams = z.object({
  erasure_id: z
    .string()
    .openapi({ param: { name: "erasure_id", in: "path" }, example: "ers_7k2m9q4r1t8v3w6x0y5z2a4b6c" }),
});

function toResponse(row: ErasureRow) {
  return {
    id: row.id,
    kind: row.kind,
    identifier_hash: row.identifier_hash,
    network_id: row.network_id,
    requested_at: row.requested_at,
    last_run_at: row.last_run_at,
    runs: row.runs,
    status: row.status,
    counts: parseCounts(row.counts),
  };
}

export function registerErasureRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/erasure",
      operationId: "createErasure",
      tags,
      summary: "Erase a person's identifier everywhere the hub keeps it",
      description:
        "Exactly one of `user_id`, `device_id` or `click_id`, optionally for one network. The value (as sent, and as its keyed hash) becomes `erased:<erasure id>` in D1 (conversions, their history, deliveries and their attempts, the inbound log, dead letters, the click) and in the conversions' Durable Objects (state, dedupe fingerprints, outbox), which also keep the field erased for later events. The proof of an erased conversion still verifies: the object checks the chain before rewriting and records the hash of each rewritten event. Bounded per call (`limit` conversions): while `run.remaining` is above 0 or `status` is `partial`, send the same request again. 201 for the first run of an erasure, 200 for every later one (nothing left: all counts 0).",
      request: {
        body: {
          required: true,
          content: { "application/json": { schema: ErasureBody, example: { user_id: "u_1234" } } },
        },
      },
      responses: {
        201: {
          description: "The first run of this erasure.",
          content: { "application/json": { schema: ErasureRunSchema } },
        },
        200: {
          description: "Another run of an erasure requested before.",
          content: { "application/json": { schema: ErasureRunSchema } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const kind = ERASABLE_IDENTIFIERS.find((field) => body[field] !== undefined);
      const value = kind === undefined ? undefined : body[kind];
      if (kind === undefined || value === undefined) {
        throw new ProblemError("validation_failed", "Name the identifier to erase.", [
          { location: "body.user_id", message: "is required" },
        ]);
      }
      const networkId = body.network_id ?? null;
      if (networkId !== null && !(await getNetwork(c.env.DB, networkId))) {
        throw validationFailed([{ location: "body.network_id", message: "is not a registered network" }]);
      }
      const key = await hmacKey(configOf(c.env).ENCRYPTION_KEY, "identifier-hash v1");
      const result = await runErasure(
        { kind, value, network_id: networkId, limit: body.limit },
        {
          db: c.env.DB,
          key,
          conversion: (name) => c.env.CONVERSIONS.getByName(name),
          nowMs: Date.now(),
          archive: c.env.ARCHIVE,
        },
      );
      const answer = {
        ...toResponse(result.erasure),
        run: {
          counts: result.run,
          remaining: result.remaining,
          inbound_remaining: result.inbound_remaining,
          partners: result.partners,
        },
      };
      return result.created ? c.json(answer, 201) : c.json(answer, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/erasures",
      operationId: "listErasures",
      tags,
      summary: "List erasures",
      request: { query: PaginationQuerySchema },
      responses: {
        200: {
          description: "A page of erasures, newest first.",
          content: { "application/json": { schema: listOf(ErasureSchema, "ErasureList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listErasures(c.env.DB, limit + 1, after);
      return c.json(
        page(rows, limit, toResponse, (row) => [row.requested_at, row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/erasures/{erasure_id}",
      operationId: "getErasure",
      tags,
      summary: "Get an erasure",
      description: "What all of its runs did; never the identifier, only its keyed hash.",
      request: { params: ErasureParams },
      responses: {
        200: { description: "The erasure.", content: { "application/json": { schema: ErasureSchema } } },
        404: problem("No such erasure."),
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { erasure_id } = c.req.valid("param");
      const row = await getErasure(c.env.DB, erasure_id);
      if (!row) {
        throw new ProblemError("not_found", `No erasure "${erasure_id}".`, [
          { location: "path.erasure_id", message: "not found" },
        ]);
      }
      return c.json(toResponse(row), 200);
    },
  );
}
