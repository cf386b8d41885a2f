/** The console's answers that are not a page of data: refusals, problems, and the result of an action. */
import type { FC, PropsWithChildren } from "hono/jsx";
import { recordAudit } from "../access/audit";
import { PROBLEM_CODES, ProblemError } from "../errors";
import { type ConsoleContext, NotAllowed, pageOf, render } from "./context";
import { Bare, Layout, type PageContext } from "./layout";
import { allows, type ConsoleOperation, scopesNeeded } from "./scopes";

/** The page shell when there is a session, a bare one when there is not (a refusal before sign-in). */
export const Shell: FC<PropsWithChildren<{ title: string; page: PageContext | null; nonce: string }>> = (props) =>
  props.page ? (
    <Layout title={props.title} page={props.page}>
      {props.children}
    </Layout>
  ) : (
    <Bare title={props.title} nonce={props.nonce}>
      {props.children}
    </Bare>
  );

export const NotAllowedBody: FC<{ operation: ConsoleOperation; scope: string | null }> = ({ operation, scope }) => (
  <section>
    <h1>Not allowed</h1>
    <p>
      This page mirrors the API operation <code>{operation}</code>, which needs a key with one of these scopes:{" "}
      <strong>{scopesNeeded(operation).join(", ")}</strong>.{scope ? ` This key's scope is ${scope}.` : ""}
    </p>
    <p>
      <a href="/console">Back to the console</a>
    </p>
  </section>
);

export const ProblemBody: FC<{ title: string; detail: string; code: string; status: number }> = (props) => (
  <section>
    <h1>{props.title}</h1>
    <p role="alert">{props.detail}</p>
    <p class="muted">
      HTTP {String(props.status)}, code <code>{props.code}</code>.
    </p>
    <p>
      <a href="/console">Back to the console</a>
    </p>
  </section>
);

export function problemPage(c: ConsoleContext, page: PageContext | null, error: ProblemError) {
  const title = PROBLEM_CODES[error.code].title;
  return render(
    c,
    <Shell title={title} page={page} nonce={c.get("nonce")}>
      <ProblemBody title={title} detail={error.message} code={error.code} status={error.status} />
    </Shell>,
    error.status as 401 | 403 | 404 | 409 | 422 | 500,
  );
}

export interface ActionSpec {
  operation: ConsoleOperation;
  /** The network or partner the action is on (a network or partner key must own it). */
  subject: string | null;
  /** The ids it is on, for the audit row. */
  target: Record<string, string>;
}

/**
 * Runs a console action the way the API runs its operation: allowed exactly when the operation is,
 * an audit row with the operation's name when it succeeded (via "console"), and a refusal of the
 * API's (a ProblemError) shown as a page with the API's status.
 */
export async function runAction(c: ConsoleContext, spec: ActionSpec, run: () => Promise<unknown>): Promise<Response> {
  const page = pageOf(c);
  if (!allows(page.principal, spec.operation, spec.subject)) throw new NotAllowed(spec.operation);
  let element: unknown;
  try {
    element = await run();
  } catch (error) {
    if (error instanceof ProblemError) return problemPage(c, page, error);
    throw error;
  }
  await recordAudit(c.env.DB, page.principal, {
    action: spec.operation,
    method: c.req.method,
    path: c.req.path,
    target: spec.target,
    status: 200,
    request_id: c.get("requestId"),
    via: "console",
  });
  return render(c, element);
}

/** The page an action answers with: what happened, and where to go next. */
export const Result: FC<PropsWithChildren<{ title: string; page: PageContext; back: string; backLabel: string }>> = (
  props,
) => (
  <Layout title={props.title} page={props.page}>
    <section>
      <h1>{props.title}</h1>
      <div role="status">{props.children}</div>
      <p>
        <a href={props.back}>{props.backLabel}</a>
      </p>
    </section>
  </Layout>
);
