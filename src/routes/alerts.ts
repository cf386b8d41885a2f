/**
 * Admin API for alerting (docs/monitoring.md#alert-rules): the incidents the rules opened (open and
 * recent), and the rules with their settings, which an operator may change.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { ALERT_RULE_NAMES, ALERT_RULES, type AlertRule, INCIDENT_STATES, settingsOf } from "../domain/alert-rules";
import { validationProblem } from "../errors";
import { type IncidentRow, listIncidents, saveRuleSettings, storedRuleSettings } from "../storage/alert-rules";
import { ADMIN_PROBLEMS, type App, decodeCursor, listOf, PaginationQuerySchema, page } from "./common";

const tags = ["Monitoring"];

const IncidentSchema = z
  .object({
    id: z.string().openapi({ description: "Stable for the incident's life: every notification of it carries it." }),
    rule: z.enum(ALERT_RULE_NAMES),
    subject: z.string().openapi({ example: "partner:ptn_01m8t94drzt2dvtb14rreyz833" }),
    state: z.enum(INCIDENT_STATES),
    summary: z.string(),
    details: z.record(z.string(), z.unknown()),
    started_at: z.string(),
    last_notified_at: z.string(),
    notifications: z.number().int(),
    resolved_at: z.string().nullable(),
  })
  .openapi("AlertIncident");

function toIncident(row: IncidentRow): z.infer<typeof IncidentSchema> {
  return {
    id: row.id,
    rule: row.rule as AlertRule,
    subject: row.subject,
    state: row.state,
    summary: row.summary,
    details: JSON.parse(row.details) as Record<string, unknown>,
    started_at: row.started_at,
    last_notified_at: row.last_notified_at,
    notifications: row.notifications,
    resolved_at: row.resolved_at,
  };
}

const RuleSchema = z
  .object({
    rule: z.enum(ALERT_RULE_NAMES),
    description: z.string(),
    settings: z.record(z.string(), z.union([z.number(), z.boolean()])),
    defaults: z.record(z.string(), z.union([z.number(), z.boolean()])),
  })
  .openapi("AlertRule");

const RuleParams = z.object({
  rule: z
    .enum(ALERT_RULE_NAMES, { error: `must be one of ${ALERT_RULE_NAMES.join(", ")}` })
    .openapi({ param: { name: "rule", in: "path" }, example: "partner_failure_share" }),
});

async function rules(db: D1Database) {
  const stored = await storedRuleSettings(db);
  return ALERT_RULE_NAMES.map((rule) => ({
    rule,
    description: ALERT_RULES[rule].description,
    settings: settingsOf(rule, stored.get(rule)) as Record<string, number | boolean>,
    defaults: settingsOf(rule, {}) as Record<string, number | boolean>,
  }));
}

export function registerAlertRoutes(app: App): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/alerts",
      operationId: "listAlerts",
      tags,
      summary: "List alert incidents",
      description: "What the alert rules found: open incidents and resolved ones, optionally of one state.",
      request: { query: PaginationQuerySchema.extend({ state: z.enum(INCIDENT_STATES).optional() }) },
      responses: {
        200: {
          description: "A page of incidents.",
          content: { "application/json": { schema: listOf(IncidentSchema, "AlertIncidentList") } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { limit, cursor, state } = c.req.valid("query");
      const after = decodeCursor(cursor, 2) as [string, string] | null;
      const rows = await listIncidents(c.env.DB, state, limit + 1, after);
      return c.json(
        page(rows, limit, toIncident, (row) => [row.started_at, row.id]),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/alert-rules",
      operationId: "listAlertRules",
      tags,
      summary: "List the alert rules",
      responses: {
        200: {
          description: "Every rule.",
          content: { "application/json": { schema: z.object({ data: z.array(RuleSchema) }) } },
        },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => c.json({ data: await rules(c.env.DB) }, 200),
  );

  app.openapi(
    createRoute({
      method: "patch",
      path: "/v1/alert-rules/{rule}",
      operationId: "updateAlertRule",
      tags,
      summary: "Change an alert rule's settings",
      description:
        "Only the settings named change; the others keep their value. The next evaluation (the cron, every 15 minutes) uses them.",
      request: {
        params: RuleParams,
        body: {
          required: true,
          content: { "application/json": { schema: z.record(z.string(), z.union([z.number(), z.boolean()])) } },
        },
      },
      responses: {
        200: { description: "The rule, as it is now.", content: { "application/json": { schema: RuleSchema } } },
        ...ADMIN_PROBLEMS,
      },
    }),
    async (c) => {
      const { rule } = c.req.valid("param");
      const changes = c.req.valid("json");
      const stored = await storedRuleSettings(c.env.DB);
      const parsed = ALERT_RULES[rule].settings.safeParse({ ...settingsOf(rule, stored.get(rule)), ...changes });
      if (!parsed.success) throw validationProblem("body", parsed.error);
      await saveRuleSettings(c.env.DB, rule, parsed.data, new Date().toISOString());
      const now = (await rules(c.env.DB)).find((entry) => entry.rule === rule);
      return c.json(now ?? { rule, description: "", settings: {}, defaults: {} }, 200);
    },
  );
}
