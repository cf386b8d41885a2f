/** What the console's handlers share: their Hono environment, rendering, and the refusals they throw. */
import type { Context, Hono } from "hono";
import type { Principal } from "../domain/access";
import { ProblemError, validationFailed } from "../errors";
import type { InboundTrace } from "../ingest/request-log";
import type { PageContext } from "./layout";
import type { ConsoleOperation } from "./scopes";
import type { Session } from "./session";

export interface ConsoleEnv {
  Bindings: Env;
  Variables: {
    requestId: string;
    inbound: InboundTrace | undefined;
    principal: Principal | undefined;
    nonce: string;
    session: Session | undefined;
    csrf: string | undefined;
  };
}

export type ConsoleApp = Hono<ConsoleEnv>;
export type ConsoleContext = Context<ConsoleEnv>;

/** A page or action outside the key's scope: the 403 page names the operation and the scopes it needs. */
export class NotAllowed extends Error {
  constructor(readonly operation: ConsoleOperation) {
    super(`not allowed: ${operation}`);
  }
}

/** A record the page names does not exist. */
export class NotFoundPage extends Error {}

export async function render(
  c: ConsoleContext,
  element: unknown,
  status: 200 | 400 | 401 | 403 | 404 | 409 | 422 | 500 = 200,
) {
  return c.html(`<!DOCTYPE html>${await (element as Promise<string> | string)}`, status);
}

/** The signed-in page's context (set by the session middleware before every signed-in handler). */
export function pageOf(c: ConsoleContext): PageContext & { session: Session } {
  const principal = c.get("principal");
  const session = c.get("session");
  const csrf = c.get("csrf");
  if (!principal || !session || csrf === undefined) throw new Error(`${c.req.path} is not behind the console session`);
  return { nonce: c.get("nonce"), principal, session, csrf, path: c.req.path };
}

/**
 * The posted form (every value of a repeated field). A body the parser cannot read (a multipart
 * body without its boundary, a truncated one) is the sender's mistake: a 400 page, not a 500.
 */
export async function formOf(c: ConsoleContext): Promise<Record<string, string | File | (string | File)[]>> {
  try {
    return await c.req.parseBody({ all: true });
  } catch {
    throw new ProblemError(
      "invalid_request",
      "The form's body could not be read: nothing was done. Submit the form again.",
    );
  }
}

/** A form field as a trimmed string; undefined when absent or empty. */
export function field(form: Record<string, unknown>, name: string): string | undefined {
  const value = form[name];
  if (typeof value !== "string") return undefined;
  const trimmed = value.trim();
  return trimmed === "" ? undefined : trimmed;
}

/** A query parameter, trimmed; undefined when absent or empty. */
export function param(c: ConsoleContext, name: string): string | undefined {
  const value = c.req.query(name)?.trim();
  return value ? value : undefined;
}

/**
 * A query parameter that must be one of `allowed` (a select's options): undefined when absent; a
 * value from elsewhere (an edited URL) is a 422 page naming it, never silently unfiltered results.
 */
export function choiceParam<T extends string>(c: ConsoleContext, name: string, allowed: readonly T[]): T | undefined {
  const value = param(c, name);
  if (value === undefined) return undefined;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw validationFailed([{ location: `query.${name}`, message: `must be one of ${allowed.join(", ")}` }]);
}

/** A date input's value (YYYY-MM-DD, a real day): undefined when absent, a 422 page naming it otherwise. */
export function dayParam(c: ConsoleContext, name: string): string | undefined {
  const value = param(c, name);
  if (value === undefined) return undefined;
  const ms = /^\d{4}-\d{2}-\d{2}$/.test(value) ? Date.parse(`${value}T00:00:00.000Z`) : Number.NaN;
  if (Number.isNaN(ms) || new Date(ms).toISOString().slice(0, 10) !== value) {
    throw validationFailed([{ location: `query.${name}`, message: "must be a day as YYYY-MM-DD" }]);
  }
  return value;
}
