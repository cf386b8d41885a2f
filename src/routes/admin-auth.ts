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
    if (!READ_METHODS.has(c.req.method) && c.res.status < 400) {
      await recordAudit(c.env.DB, principal, {
        action: operationId,
        method: c.req.method,
        path: c.req.path,
        target: c.req.param() as Record<string, string>,
        status: c.res.status,
        request_id: c.get("requestId"),
        via: "api",
      });
    }
  };
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
