/**
 * The hub's log lines (docs/troubleshooting.md, "Logs"): one JSON object a line, so Workers Logs can
 * be searched by any field (`request_id` above all). Every string in a line is redacted on its way
 * out, whoever wrote it: credentials in URLs (query parameters that name a token, a key, a secret or
 * a signature; user:password@), bearer and basic authorization values, and anything shaped like a
 * credential the hub issues (whsec_…, pbt_…, phk_…). An error's message that quotes a partner's URL
 * is logged without the partner's token.
 */

export type LogLevel = "info" | "warn" | "error";

const REDACTED = "(redacted)";
/** A query parameter whose name says it carries a credential. */
const CREDENTIAL_NAME = /token|secret|sig|key|pass|auth|credential|session|hmac/i;
const URL_IN_TEXT = /\bhttps?:\/\/[^\s"'<>`]+/gi;
/** `name=value` outside a URL (a query string quoted on its own). */
const CREDENTIAL_PAIR =
  /\b([a-z0-9_.-]*(?:token|secret|sig|key|pass|auth|credential|session|hmac)[a-z0-9_.-]*)=([^&\s"'<>]+)/gi;
const AUTHORIZATION = /\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}/gi;
/** The shapes of the credentials the hub issues: signing secrets, network tokens, API keys. */
const ISSUED_CREDENTIAL = /\b(?:whsec_[A-Za-z0-9+/=]{16,}|pbt_[A-Za-z0-9_-]{16,}|phk_[A-Za-z0-9_-]{16,})/g;

function redactUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return text.replace(CREDENTIAL_PAIR, (_whole, name: string) => `${name}=${REDACTED}`);
  }
  if (url.username) url.username = REDACTED;
  if (url.password) url.password = REDACTED;
  for (const name of [...new Set(url.searchParams.keys())]) {
    if (CREDENTIAL_NAME.test(name)) url.searchParams.set(name, REDACTED);
  }
  return url.toString();
}

/** What every credential the patterns below find contains: text without any of it is left as it is. */
const SUSPECT = /https?:|=|bearer|basic|whsec_|pbt_|phk_/i;

/** `text` with every credential it carries replaced by "(redacted)". */
export function redact(text: string): string {
  if (!SUSPECT.test(text)) return text;
  return text
    .replace(ISSUED_CREDENTIAL, REDACTED)
    .replace(AUTHORIZATION, (_whole, scheme: string) => `${scheme} ${REDACTED}`)
    .replace(URL_IN_TEXT, redactUrl)
    .replace(CREDENTIAL_PAIR, (_whole, name: string) => `${name}=${REDACTED}`);
}

/** One log line: `{ level, message, …fields }` as JSON, every string in it redacted. */
export function logLine(level: LogLevel, fields: { message: string } & Record<string, unknown>): void {
  const text = JSON.stringify({ level, ...fields }, (_key, value: unknown) =>
    typeof value === "string" ? redact(value) : value,
  );
  if (level === "error") console.error(text);
  else if (level === "warn") console.warn(text);
  else console.log(text);
}
