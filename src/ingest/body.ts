/**
 * Reading a postback body: the raw bytes first (the signature covers them), with a hard size cap
 * that holds even when Content-Length lies, then JSON that keeps money exact.
 */
import { ProblemError } from "../errors";

export function requireJsonContentType(contentType: string | null): void {
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json") {
    throw new ProblemError(
      "unsupported_media_type",
      `Send the postback as Content-Type: application/json (got ${mediaType ? `"${mediaType}"` : "none"}).`,
      [{ location: "header.content-type", message: "must be application/json" }],
    );
  }
}

export async function readRawBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(maxBytes);
  if (!request.body) return new Uint8Array(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  if (chunks.length === 1 && chunks[0]) return chunks[0];
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

function tooLarge(maxBytes: number): ProblemError {
  return new ProblemError("payload_too_large", `The body must be at most ${maxBytes} bytes.`, [
    { location: "body", message: `must be at most ${maxBytes} bytes` },
  ]);
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/**
 * Parses JSON, turning a top-level numeric `amount` into the decimal string it was written as
 * (`29.90` stays `"29.90"`), so money never passes through a binary float. The reviver sees the
 * source text of every number; only the root object's `amount` is swapped for it.
 */
export function parseJson(body: Uint8Array): unknown {
  let text: string;
  try {
    text = utf8Decoder.decode(body);
  } catch {
    throw malformed("The body is not valid UTF-8.");
  }
  const amountSources = new WeakMap<object, string>();
  const keepAmountSource = function (this: unknown, key: string, value: unknown, context?: { source?: string }) {
    if (key === "amount" && typeof value === "number" && context?.source && typeof this === "object" && this) {
      amountSources.set(this, context.source);
    }
    return value;
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, keepAmountSource as (this: unknown, key: string, value: unknown) => unknown);
  } catch (error) {
    const reason = error instanceof SyntaxError ? error.message : "it is nested too deeply";
    throw malformed(`The body is not valid JSON: ${reason}.`);
  }
  if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
    const source = amountSources.get(parsed);
    if (source !== undefined) (parsed as Record<string, unknown>).amount = source;
  }
  return parsed;
}

function malformed(detail: string): ProblemError {
  return new ProblemError("malformed_json", detail, [{ location: "body", message: "must be a JSON object" }]);
}
