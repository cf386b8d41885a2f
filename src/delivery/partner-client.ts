/**
 * Sends one rendered request to a partner and reports what happened, never throwing: a partner's
 * failure is data for the retry policy and the delivery log. Everything the partner controls is
 * bounded: one deadline covers the response headers and the excerpt, redirects are not followed,
 * and at most `excerptBytes` of the answer are read. `fetch` is injected so that the consumer and
 * the tests decide where requests go.
 */

import { utf8 } from "../lib/bytes";
import { sign } from "../lib/standard-webhooks";
import type { AttemptOutcome } from "./retry-policy";

export interface PartnerRequest {
  method: "GET" | "POST";
  url: string;
  headers: Record<string, string>;
  body: string | null;
}

export interface SendResult {
  outcome: AttemptOutcome;
  /** From sending to the end of the excerpt: how long the partner held the consumer. */
  latencyMs: number;
  /** The start of the answer as text; null when there was no answer or no body. */
  excerpt: string | null;
}

export interface SendOptions {
  timeoutMs: number;
  fetch: typeof fetch;
  excerptBytes?: number;
  now?: () => number;
}

export const DEFAULT_EXCERPT_BYTES = 1024;
export const USER_AGENT = "postback-hub/1.0";
const MAX_ERROR_CHARS = 200;

export async function sendPartnerRequest(request: PartnerRequest, options: SendOptions): Promise<SendResult> {
  const now = options.now ?? Date.now;
  const controller = new AbortController();
  // Raced against every await too, so a fetch or a body that ignores the signal cannot hold us.
  const aborted = whenAborted(controller.signal);
  const timer = setTimeout(() => controller.abort(), options.timeoutMs);
  const started = now();
  try {
    const response = await Promise.race([
      options.fetch(request.url, {
        method: request.method,
        headers: requestHeaders(request),
        body: request.body,
        redirect: "manual",
        signal: controller.signal,
      }),
      aborted,
    ]);
    const excerpt = await readExcerpt(response.body, options.excerptBytes ?? DEFAULT_EXCERPT_BYTES, aborted);
    const retryAfter = response.headers.get("retry-after");
    return { outcome: { kind: "response", status: response.status, retryAfter }, latencyMs: now() - started, excerpt };
  } catch (error) {
    const outcome: AttemptOutcome = controller.signal.aborted
      ? { kind: "timeout" }
      : { kind: "network", error: shortMessage(error) };
    return { outcome, latencyMs: now() - started, excerpt: null };
  } finally {
    clearTimeout(timer);
  }
}

function requestHeaders(request: PartnerRequest): Headers {
  const headers = new Headers(request.headers);
  if (!headers.has("user-agent")) headers.set("user-agent", USER_AGENT);
  if (request.method === "POST" && !headers.has("content-type")) headers.set("content-type", "application/json");
  return headers;
}

function whenAborted(signal: AbortSignal): Promise<never> {
  const promise = new Promise<never>((_, reject) => {
    signal.addEventListener("abort", () => reject(new Error("the partner did not answer in time")), { once: true });
  });
  // Nobody may be racing it when the deadline passes; that is not an unhandled rejection.
  promise.catch(() => undefined);
  return promise;
}

/**
 * A status has arrived by now, so the partner has acted on the request: a body that errors or
 * stalls past the deadline shortens the excerpt, it does not turn the attempt into a failure.
 */
async function readExcerpt(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  aborted: Promise<never>,
): Promise<string | null> {
  if (!body) return null;
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  try {
    while (length < maxBytes) {
      const { done, value } = await Promise.race([reader.read(), aborted]);
      if (done) break;
      const chunk = value.subarray(0, maxBytes - length);
      chunks.push(chunk);
      length += chunk.length;
    }
  } catch {
    // Keep what arrived.
  } finally {
    // Not awaited: a stalled body may never acknowledge the cancel.
    reader.cancel().catch(() => undefined);
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  // `stream: true` drops a character cut in half by the byte cap instead of showing U+FFFD.
  return new TextDecoder().decode(bytes, { stream: true });
}

function shortMessage(error: unknown): string {
  const message = error instanceof Error ? error.message || error.name : String(error);
  return (message.split("\n")[0] ?? "").slice(0, MAX_ERROR_CHARS);
}

/**
 * What a delivery's signature covers. A POST signs its raw body, as Standard Webhooks has it. A GET
 * has no body, so it signs its request line without the HTTP version, `GET /pb?tx=1&status=approved`:
 * the method, then path and query exactly as they go out, so that a signature seen once vouches for
 * nothing but that request. `url` is the parsed URL that is fetched (from `checkOutboundUrl`: no
 * fragment, no bare `?`), so its path and search are the bytes of the partner's request line.
 */
export function signedContent(method: PartnerRequest["method"], url: URL, body: string | null): string {
  return method === "GET" ? `GET ${url.pathname}${url.search}` : (body ?? "");
}

/**
 * Standard Webhooks headers for one attempt over `content` (see `signedContent`). Every active key
 * signs, so a partner can verify with either secret while one is being rotated.
 */
export async function signatureHeaders(
  keys: readonly CryptoKey[],
  deliveryId: string,
  timestampSeconds: number,
  content: string,
): Promise<Record<string, string>> {
  if (keys.length === 0) throw new Error("signing a delivery needs at least one key");
  const timestamp = String(timestampSeconds);
  const payload = utf8(content);
  const signatures = await Promise.all(keys.map((key) => sign(key, deliveryId, timestamp, payload)));
  return { "webhook-id": deliveryId, "webhook-timestamp": timestamp, "webhook-signature": signatures.join(" ") };
}
