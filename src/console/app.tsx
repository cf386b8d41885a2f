/**
 * The operator console at /console (docs/console.md): server-rendered pages with Hono's JSX over
 * the same queries and operations as the API. Every response carries a strict CSP with a fresh
 * nonce and is never cached; every signed-in request re-resolves its key; every POST must come from
 * the hub's own origin and carry the session's CSRF token. Not part of the OpenAPI document.
 */
import { Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { FC } from "hono/jsx";
import { authenticateToken, principalForSession } from "../access/keys";
import { ADMIN_TOKEN_KEY_ID } from "../domain/access";
import { ProblemError } from "../errors";
import { randomBytes, toBase64 } from "../lib/bytes";
import { logLine } from "../lib/log";
import {
  type ConsoleApp,
  type ConsoleContext,
  type ConsoleEnv,
  formOf,
  NotAllowed,
  NotFoundPage,
  render,
} from "./context";
import { NotAllowedBody, ProblemBody, Shell } from "./feedback";
import { Bare, type PageContext } from "./layout";
import { registerConversionPages } from "./pages/conversions";
import { registerDeliveryPages } from "./pages/deliveries";
import { registerInboundPages } from "./pages/inbound";
import { registerNetworkPages } from "./pages/networks";
import { registerOverview } from "./pages/overview";
import { registerPartnerPages } from "./pages/partners";
import { registerReconciliationPages } from "./pages/reconciliation";
import { registerReportPages } from "./pages/reports";
import {
  adminTokenUnchanged,
  CONSOLE_PATH,
  csrfTokenMatches,
  csrfTokenOf,
  newSession,
  openSession,
  SECURE_SESSION_COOKIE,
  SESSION_COOKIE,
  sealSession,
} from "./session";

const NONCE_BYTES = 16;

/** The console's policy: scripts only with this response's nonce, styles and images from the hub. */
export function consoleContentSecurityPolicy(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join("; ");
}

const LOGIN_MESSAGES: Record<string, string> = {
  expired: "Your session expired: sign in again.",
  ended: "Your session ended: its key was disabled, expired or rotated, or the ADMIN_TOKEN changed. Sign in again.",
  signin: "Sign in to open the console.",
  "signed-out": "Signed out.",
};

function isHttps(c: ConsoleContext): boolean {
  return new URL(c.req.url).protocol === "https:";
}

function cookieName(c: ConsoleContext): string {
  return isHttps(c) ? SECURE_SESSION_COOKIE : SESSION_COOKIE;
}

function toLogin(c: ConsoleContext, message: keyof typeof LOGIN_MESSAGES): Response {
  deleteCookie(c, cookieName(c), { path: CONSOLE_PATH, secure: isHttps(c) });
  return c.redirect(`${CONSOLE_PATH}/login?m=${message}`, 303);
}

const LoginPage: FC<{ nonce: string; message?: string | undefined; error?: string | undefined }> = (props) => (
  <Bare title="Sign in" nonce={props.nonce}>
    <h1>Sign in to the console</h1>
    {props.message ? <p role="status">{props.message}</p> : null}
    {props.error ? (
      <p role="alert" class="bad" id="login-error">
        {props.error}
      </p>
    ) : null}
    <form method="post" action="/console/login" class="login">
      <label for="key">API key</label>
      <input
        id="key"
        name="key"
        type="password"
        autocomplete="off"
        required
        aria-describedby={props.error ? "login-error key-help" : "key-help"}
      />
      <p id="key-help" class="muted">
        The ADMIN_TOKEN, or an API key (phk_…). It is checked and never stored: the session cookie holds only its id.
      </p>
      <button type="submit">Sign in</button>
    </form>
  </Bare>
);

export function createConsoleApp(): ConsoleApp {
  const app = new Hono<ConsoleEnv>();

  app.use("*", async (c, next) => {
    const nonce = toBase64(randomBytes(NONCE_BYTES));
    c.set("nonce", nonce);
    await next();
    c.header("content-security-policy", consoleContentSecurityPolicy(nonce));
    // A nonce is only worth something if every response has its own; and pages hold operators' data.
    c.header("cache-control", "no-store");
    c.header("x-content-type-options", "nosniff");
    // same-origin, not no-referrer: under no-referrer a browser posts the console's own forms with
    // `Origin: null`, which the Origin check below must refuse (a page elsewhere can send it too).
    // Other sites still get no referrer from the console.
    c.header("referrer-policy", "same-origin");
    c.header("x-frame-options", "DENY");
    // A console reached over https once is never asked for over plain http again, where a hostile
    // network could strip TLS and read the key typed into the sign-in form. Not over http (wrangler dev).
    if (isHttps(c)) c.header("strict-transport-security", "max-age=31536000");
  });

  // A form posted from another origin is refused before anything else, sign-in included.
  app.use("*", async (c, next) => {
    if (c.req.method === "POST") {
      const origin = c.req.header("origin");
      if (origin !== undefined && origin !== new URL(c.req.url).origin) {
        throw new ProblemError(
          "forbidden_origin",
          `A console form must be posted from this hub's own pages, not ${origin}.`,
        );
      }
    }
    await next();
  });

  app.get("/login", (c) =>
    render(c, <LoginPage nonce={c.get("nonce")} message={LOGIN_MESSAGES[c.req.query("m") ?? ""]} />),
  );

  app.post("/login", async (c) => {
    const form = await formOf(c);
    const key = typeof form.key === "string" ? form.key.trim() : "";
    const principal = key === "" ? null : await authenticateToken(c.env, key);
    if (!principal) {
      return render(
        c,
        <LoginPage nonce={c.get("nonce")} error="That key is wrong, disabled or expired. Nothing was stored." />,
        401,
      );
    }
    const session = await newSession(c.env, principal);
    setCookie(c, cookieName(c), await sealSession(c.env, session), {
      path: CONSOLE_PATH,
      httpOnly: true,
      sameSite: "Strict",
      secure: isHttps(c),
      expires: new Date(session.expires_ms),
    });
    return c.redirect(CONSOLE_PATH, 303);
  });

  // Everything below needs a session, re-resolved on every request.
  app.use("*", async (c, next) => {
    const opened = await openSession(c.env, getCookie(c, cookieName(c)));
    if (!opened.ok) return toLogin(c, opened.reason === "expired" ? "expired" : "signin");
    const { session } = opened;
    const principal = await principalForSession(c.env, session.key_id, session.signed_in_ms);
    if (!principal) return toLogin(c, "ended");
    if (session.key_id === ADMIN_TOKEN_KEY_ID && !(await adminTokenUnchanged(c.env, session)))
      return toLogin(c, "ended");
    c.set("session", session);
    c.set("principal", principal);
    c.set("csrf", await csrfTokenOf(c.env, session.id));
    if (c.req.method === "POST") {
      const form = await formOf(c);
      if (!(await csrfTokenMatches(c.env, session.id, form.csrf))) {
        throw new ProblemError(
          "csrf_failed",
          form.csrf === undefined
            ? "The form carried no CSRF token: nothing was done. Reload the page and submit it again."
            : "The form's CSRF token is not this session's: nothing was done. Reload the page and submit it again.",
        );
      }
    }
    await next();
  });

  app.post("/logout", (c) => toLogin(c, "signed-out"));

  registerOverview(app);
  registerConversionPages(app);
  registerDeliveryPages(app);
  registerNetworkPages(app);
  registerPartnerPages(app);
  registerInboundPages(app);
  registerReportPages(app);
  registerReconciliationPages(app);

  app.all("*", () => {
    throw new NotFoundPage("No such console page.");
  });

  app.onError((error, c) => {
    const principal = c.get("principal");
    const session = c.get("session");
    const csrf = c.get("csrf");
    const nonce = c.get("nonce");
    const page: PageContext | null =
      principal && session && csrf !== undefined ? { nonce, principal, csrf, path: c.req.path } : null;
    if (error instanceof NotAllowed) {
      return render(
        c,
        <Shell title="Not allowed" page={page} nonce={nonce}>
          <NotAllowedBody operation={error.operation} scope={principal?.scope ?? null} />
        </Shell>,
        403,
      );
    }
    if (error instanceof NotFoundPage) {
      return render(
        c,
        <Shell title="Not found" page={page} nonce={nonce}>
          <ProblemBody title="Not found" detail={error.message} code="not_found" status={404} />
        </Shell>,
        404,
      );
    }
    if (error instanceof ProblemError) {
      return render(
        c,
        <Shell title="Refused" page={page} nonce={nonce}>
          <ProblemBody
            title={error.code === "csrf_failed" ? "Form refused" : "Refused"}
            detail={error.message}
            code={error.code}
            status={error.status}
          />
        </Shell>,
        error.status as 403,
      );
    }
    logLine("error", {
      message: "unhandled console error",
      request_id: c.get("requestId"),
      path: c.req.path,
      error: String(error),
      stack: error.stack,
    });
    return render(
      c,
      <Shell title="Something went wrong" page={page} nonce={nonce}>
        <ProblemBody
          title="Something went wrong"
          detail={`Something went wrong on our side; quote request id ${c.get("requestId")} when you report it.`}
          code="internal_error"
          status={500}
        />
      </Shell>,
      500,
    );
  });

  return app;
}
