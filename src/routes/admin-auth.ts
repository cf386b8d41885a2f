/**
 * Guards every admin route (src/app.ts puts this on each one): `Authorization: Bearer <key>` with
 * the ADMIN_TOKEN or an API key, the key's scope checked against the operation's entry in
 * access/policy.ts (a network or partner key also against the network or partner the request names),
 * and every action that changes something written to the audit log with the key that did it.
 */
import type { Context, MiddlewareHandler } from "hono";
import { recordAudit } from "../access/audit";
import { authenticateToken, bearerToken } from "../access/keys";
import { type Access, type SubjectRule, scopeAllows, scopesOf, subjectRule } from "../access/policy";
import type { Principal } from "../domain/access";
import { ProblemError } from "../errors";
import { deliveryPartnerOf, inboundRequestNetworkOf } from "../storage/api-keys";
import type { AppEnv } from "./common";

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

export function requireAccess(operationId: string, access: Access): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    // A path can match two routes' patterns (/v1/requests/unlogged is also /v1/requests/{request_id}),
    // and each pattern has its guard. Guards run in the routes' order, and the first route to match
    // is the one that answers, so the first guard decides; a later one checking its own operation's
    // rule would refuse what the answering one allows (and write a second audit row for a change).
    if (c.get("principal")) return next();
    const header = c.req.header("authorization");
    const token = bearerToken(header);
    const principal = token === undefined ? null : await authenticateToken(c.env, token);
    if (!principal) {
      throw new ProblemError(
        "unauthorized",
        header ? "The key is wrong, disabled or expired." : "Send a key as Authorization: Bearer <key>.",
        [{ location: "header.authorization", message: header ? "does not hold a working key" : "is missing" }],
        { "www-authenticate": 'Bearer realm="postback-hub"' },
      );
    }
    if (!scopeAllows(principal, access)) throw outOfScope(operationId, principal, access);
    const rule = subjectRule(principal, access);
    if (rule) await requireOwnSubject(c, principal, rule);
    c.set("principal", principal);
    await next();
    // A refusal (4xx) changed nothing; a failure (5xx) may have changed part of what it was asked,
    // so its row is kept, with its status, rather than lose an action that took effect.
    const status = c.res.status;
    if (!READ_METHODS.has(c.req.method) && (status < 400 || status >= 500)) {
      await recordAudit(c.env.DB, principal, {
        action: operationId,
        method: c.req.method,
        path: c.req.path,
        target: await auditTarget(c),
        status,
        request_id: c.get("requestId"),
        via: "api",
      });
    }
  };
}

/** What the answer names beside the path's ids: a credential it issued, never its value. */
const ISSUED_IDS = ["secret_id", "token_id"] as const;

/**
 * The ids an action was on: the path's, and what the answer says it made (a create has no id in its
 * path, so without the answer's `id` its row could not say which key or network it created).
 */
async function auditTarget(c: Context<AppEnv>): Promise<Record<string, string>> {
  const target: Record<string, string> = { ...(c.req.param() as Record<string, string>) };
  if (!(c.res.headers.get("content-type") ?? "").startsWith("application/json")) return target;
  let answer: unknown;
  try {
    answer = await c.res.clone().json();
  } catch {
    return target;
  }
  if (typeof answer !== "object" || answer === null) return target;
  const fields = answer as Record<string, unknown>;
  if (Object.keys(target).length === 0 && typeof fields.id === "string") target.id = fields.id;
  for (const name of ISSUED_IDS) if (typeof fields[name] === "string") target[name] = fields[name];
  return target;
}

/** The principal of a guarded route (set by `requireAccess`, which runs before every handler). */
export function principalOf(c: Context<AppEnv>): Principal {
  const principal = c.get("principal");
  if (!principal) throw new Error(`${c.req.method} ${c.req.path} is not behind requireAccess`);
  return principal;
}

/** For a handler whose one branch needs more than its route's scopes (issuing a credential). */
export function requireAdminScope(c: Context<AppEnv>, what: string, location: string): void {
  const principal = principalOf(c);
  if (principal.scope !== "admin") {
    throw new ProblemError("forbidden", `Only an admin key may ${what}.`, [
      { location, message: `needs an admin key; this one is ${principal.scope}` },
    ]);
  }
}

function outOfScope(operationId: string, principal: Principal, access: Access): ProblemError {
  return new ProblemError(
    "forbidden",
    `A ${principal.scope} key may not call ${operationId}; it needs one of: ${scopesOf(access).join(", ")}.`,
    [{ location: "header.authorization", message: `is a ${principal.scope} key` }],
  );
}

/** A network or partner key reaches only its own: the request must name it, or name a record of it. */
async function requireOwnSubject(c: Context<AppEnv>, principal: Principal, rule: SubjectRule): Promise<void> {
  const own = principal.subject_id;
  const kind = principal.scope;
  if ("path" in rule) {
    if (c.req.param(rule.path) === own) return;
    throw new ProblemError("forbidden", `This ${kind} key reaches ${kind} "${own}" only.`, [
      { location: `path.${rule.path}`, message: `must be ${own}` },
    ]);
  }
  if ("query" in rule) {
    if (c.req.query(rule.query) === own) return;
    throw new ProblemError("forbidden", `A ${kind} key lists its own records only: add ${rule.query}=${own}.`, [
      { location: `query.${rule.query}`, message: `must be ${own}` },
    ]);
  }
  const [param, owner] =
    rule.owner === "delivery"
      ? ["delivery_id", (id: string) => deliveryPartnerOf(c.env.DB, id)]
      : ["request_id", (id: string) => inboundRequestNetworkOf(c.env.DB, id)];
  const id = c.req.param(param) ?? "";
  // A record of another, and no record at all, get the same answer: the key learns nothing of others.
  if ((await owner(id)) === own) return;
  throw new ProblemError("forbidden", `This ${kind} key reaches the records of ${kind} "${own}" only.`, [
    { location: `path.${param}`, message: `is not one of ${own}'s` },
  ]);
}
