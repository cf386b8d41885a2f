/**
 * The ingest hot path for one JSON postback: network (cached) → content type → raw body →
 * signature → JSON → schema → one Durable Object call. Nothing else happens before the answer:
 * no D1 query (steady state), no queue send, no outbound fetch.
 */
import type { IngestAnswer, RecordInput, RecordResult } from "../conversions/conversion-object";
import { ProblemError, validationProblem } from "../errors";
import { liveKeys, type NetworkAuth } from "../networks/network-cache";
import { parseJson, readRawBody, requireJsonContentType } from "./body";
import { PostbackSchema } from "./postback-schema";
import { verify } from "./standard-webhooks";

export const NETWORK_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{1,62}$/;

export interface ConversionRecorder {
  record(input: RecordInput): Promise<RecordResult>;
}

export interface IngestDeps {
  nowMs: number;
  maxBodyBytes: number;
  toleranceSeconds: number;
  loadNetwork(id: string): Promise<NetworkAuth | null>;
  /** Fresh keys after a signature failure (a rotation elsewhere), or null when not worth a read. */
  refreshNetwork(id: string): Promise<NetworkAuth | null>;
  /** The conversion's Durable Object, by `network_id:transaction_id`. */
  conversion(name: string): ConversionRecorder;
}

export function conversionObjectName(networkId: string, transactionId: string): string {
  // Network ids never contain ':', so the name splits back unambiguously.
  return `${networkId}:${transactionId}`;
}

export async function ingestPostback(networkId: string, request: Request, deps: IngestDeps): Promise<IngestAnswer> {
  const auth = NETWORK_ID_PATTERN.test(networkId) ? await deps.loadNetwork(networkId) : null;
  if (!auth) {
    throw new ProblemError("network_not_found", `No network "${networkId}" is registered with this hub.`, [
      { location: "path.network_id", message: "is not a registered network" },
    ]);
  }
  if (auth.network.status !== "active") {
    throw new ProblemError("network_disabled", `Network "${networkId}" is disabled; ask the hub's operator.`);
  }
  requireJsonContentType(request.headers.get("content-type"));
  const body = await readRawBody(request, deps.maxBodyBytes);

  const headers = {
    id: request.headers.get("webhook-id"),
    timestamp: request.headers.get("webhook-timestamp"),
    signature: request.headers.get("webhook-signature"),
  };
  const check = (keysOf: NetworkAuth) =>
    verify(
      headers,
      body,
      liveKeys(keysOf, deps.nowMs).map((k) => k.key),
      Math.floor(deps.nowMs / 1000),
      deps.toleranceSeconds,
    );
  let verdict = await check(auth);
  if (!verdict.ok && verdict.location === "header.webhook-signature") {
    const fresh = await deps.refreshNetwork(networkId);
    if (fresh?.network.status === "active") verdict = await check(fresh);
  }
  if (!verdict.ok) {
    throw new ProblemError(
      "unauthorized",
      `Signature check failed: ${verdict.message}.`,
      [{ location: verdict.location, message: verdict.message }],
      { "www-authenticate": 'Standard-Webhooks realm="postback-hub"' },
    );
  }

  const parsed = PostbackSchema.safeParse(parseJson(body));
  if (!parsed.success) throw validationProblem("body", parsed.error);
  const postback = parsed.data;

  const result = await deps.conversion(conversionObjectName(networkId, postback.transaction_id)).record({
    network_id: networkId,
    transaction_id: postback.transaction_id,
    postback,
    received_at: new Date(deps.nowMs).toISOString(),
  });
  if (!result.ok) {
    throw new ProblemError(
      "conversion_conflict",
      `Transaction "${postback.transaction_id}" is ${result.conversion_status}; this postback contradicts it (${result.errors
        .map((e) => e.location)
        .join(", ")}). Send a status the lifecycle allows, or the same fields to repeat a postback.`,
      result.errors,
    );
  }
  return result.answer;
}
