/**
 * The ingest hot path: network (cached) → payload (JSON body, form fields or query) →
 * authentication → rate limit → JSON or parameter mapping → schema → one Durable Object call per
 * event.
 * Nothing else happens before the answer: no D1 query (steady state), no queue send, no fetch.
 * A network that hashes identifiers has them hashed here, before the object call: CPU only.
 */

import { conversionObjectName, type IngestAnswer, type RecordInput, type RecordResult } from "../domain/conversion";
import { type AuthMethod, type HashableIdentifier, NETWORK_ID_PATTERN } from "../domain/network";
import { type Postback, PostbackSchema } from "../domain/postback";
import { type FieldError, ProblemError, validationFailed, validationProblem, zodFieldErrors } from "../errors";
import { hashIdentifier } from "../lib/identifier-hash";
import type { NetworkAuth } from "../networks/network-cache";
import { type AuthResult, authenticate, type SignedQueryScope, TOKEN_HEADER, TOKEN_PARAM } from "./authenticate";
import { parseJson, readRawBody } from "./body";
import {
  type MappingResult,
  mapParams,
  NetworkMappingSchema,
  RESERVED_PARAMS,
  type ResolvedMapping,
  resolveMapping,
} from "./mapping";
import type { IdentifierProtection, InboundTrace } from "./request-log";

export const MAX_BATCH_EVENTS = 100;
export const TEST_HEADER = "x-postback-test";
export const TEST_PARAM = "pb_test";

export interface ConversionRecorder {
  record(input: RecordInput): Promise<RecordResult>;
}

export interface IngestDeps {
  nowMs: number;
  maxBodyBytes: number;
  toleranceSeconds: number;
  loadNetwork(id: string): Promise<NetworkAuth | null>;
  /** Fresh credentials after a failure against cached ones (a rotation elsewhere), or null. */
  refreshNetwork(id: string): Promise<NetworkAuth | null>;
  /** False when the network is over its rate limit. */
  withinRateLimit(id: string): Promise<boolean>;
  /** Rotation telemetry: which credential was used (recorded off the hot path). */
  noteCredentialUse(credentialId: string): void;
  /** The conversion's Durable Object, by `conversionObjectName` (test and live apart). */
  conversion(name: string): ConversionRecorder;
  /** The key of identifier hashes (lib/keys.ts "identifier-hash v1"), derived once per isolate. */
  identifierKey(): Promise<CryptoKey>;
  /** Filled as the request goes through, for the inbound log (written after the answer). */
  trace?: InboundTrace;
}

export interface Payload {
  kind: "json" | "form" | "query";
  body: Uint8Array;
  /** Query parameters, plus the fields of a form body. */
  params: [string, string][];
  /** The fields of a form body alone: all that a Standard Webhooks signature covers. */
  fields: [string, string][];
}

/** What the pipeline knows of one request before anything is recorded (also what explain shows). */
export interface Prepared {
  auth: NetworkAuth;
  payload: Payload;
  method: AuthMethod;
  test: boolean;
}

// --- steps -----------------------------------------------------------------------------------

export async function resolveNetwork(networkId: string, deps: IngestDeps): Promise<NetworkAuth> {
  const auth = NETWORK_ID_PATTERN.test(networkId) ? await deps.loadNetwork(networkId) : null;
  if (!auth) {
    throw new ProblemError("network_not_found", `No network "${networkId}" is registered with this hub.`, [
      { location: "path.network_id", message: "is not a registered network" },
    ]);
  }
  if (deps.trace) {
    deps.trace.known = true;
    deps.trace.identifiers = identifierProtection(auth, deps);
  }
  if (auth.network.status !== "active") {
    throw new ProblemError("network_disabled", `Network "${networkId}" is disabled; ask the hub's operator.`);
  }
  return auth;
}

export async function readPayload(request: Request, maxBodyBytes: number): Promise<Payload> {
  const query = [...new URL(request.url).searchParams];
  if (request.method === "GET" || request.method === "HEAD") {
    return { kind: "query", body: new Uint8Array(0), params: query, fields: [] };
  }
  const mediaType = request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (mediaType === "application/json") {
    return { kind: "json", body: await readRawBody(request, maxBodyBytes), params: query, fields: [] };
  }
  if (mediaType === "application/x-www-form-urlencoded") {
    const body = await readRawBody(request, maxBodyBytes);
    const fields = [...new URLSearchParams(new TextDecoder().decode(body))];
    return { kind: "form", body, params: [...query, ...fields], fields };
  }
  throw new ProblemError(
    "unsupported_media_type",
    `Send the postback as application/json or application/x-www-form-urlencoded, or as a GET (got ${mediaType ? `"${mediaType}"` : "no content type"}).`,
    [{ location: "header.content-type", message: "must be application/json or application/x-www-form-urlencoded" }],
  );
}

/** Authenticates, re-reading the network once when cached credentials fail (a rotation elsewhere). */
export async function authenticateRequest(
  networkId: string,
  auth: NetworkAuth,
  request: Request,
  payload: Payload,
  deps: IngestDeps,
  scope: SignedQueryScope = "postback",
): Promise<{ auth: NetworkAuth; result: AuthResult }> {
  const input = {
    request,
    kind: payload.kind,
    body: payload.body,
    params: payload.params,
    nowMs: deps.nowMs,
    toleranceSeconds: deps.toleranceSeconds,
    scope,
  };
  const first = await authenticate(auth, input);
  if (first.ok || !first.mismatch) return { auth, result: first };
  const fresh = await deps.refreshNetwork(networkId);
  if (fresh?.network.status !== "active") return { auth, result: first };
  return { auth: fresh, result: await authenticate(fresh, input) };
}

/** One challenge per method the network accepts, so a sender sees what it should have sent. */
const CHALLENGES: Record<AuthMethod, string> = {
  standard_webhooks: 'Standard-Webhooks realm="postback-hub"',
  token: `Postback-Token realm="postback-hub", header="${TOKEN_HEADER}", param="${TOKEN_PARAM}"`,
  signed_query: 'Signed-Query realm="postback-hub"',
};

export function authProblem(result: Extract<AuthResult, { ok: false }>, methods: readonly AuthMethod[]): ProblemError {
  if (result.code === "ip_not_allowed") {
    return new ProblemError("ip_not_allowed", `Forbidden: ${result.message}.`, [
      { location: result.location, message: result.message },
    ]);
  }
  return new ProblemError(
    "unauthorized",
    `Authentication failed: ${result.message}.`,
    [{ location: result.location, message: result.message }],
    { "www-authenticate": methods.map((method) => CHALLENGES[method]).join(", ") },
  );
}

export type TestMarker = { ok: true; test: boolean } | { ok: false; location: string; message: string };

/**
 * Whether the request marks its postbacks as tests (a JSON body may also mark each one with
 * `"test": true`). A marker changes how a postback is handled, so for the signature methods it
 * counts only inside what was signed: a signed query covers every parameter, Standard Webhooks
 * only a form body's fields, and neither covers a header. A marker outside the signature is
 * refused, never ignored: a test recorded as live would be worse than a clear 401. A token
 * vouches for the whole request, so with a token (or no verified method, as explain may show)
 * every marker counts.
 */
export function testMarker(
  auth: NetworkAuth,
  request: Request,
  payload: Payload,
  method: AuthMethod | null,
): TestMarker {
  const flag = (value: string | null | undefined) => value === "1" || value?.toLowerCase() === "true";
  const inParams = (pairs: readonly [string, string][]) => flag(pairs.find(([key]) => key === TEST_PARAM)?.[1]);
  const header = flag(request.headers.get(TEST_HEADER));
  const anyParam = inParams(payload.params);
  if (auth.network.test_mode) return { ok: true, test: true };
  if (method === null || method === "token") return { ok: true, test: header || anyParam };
  const howToMark =
    payload.kind === "json"
      ? '"test": true in the signed JSON body'
      : `${TEST_PARAM}=1 among the signed ${method === "signed_query" ? "parameters" : "form fields"}`;
  if (header) {
    return {
      ok: false,
      location: `header.${TEST_HEADER}`,
      message: `the ${TEST_HEADER} header is not covered by the signature, so it cannot mark a signed postback as a test; put ${howToMark}`,
    };
  }
  const signed = method === "standard_webhooks" ? inParams(payload.fields) : anyParam;
  if (anyParam && !signed) {
    return {
      ok: false,
      location: `query.${TEST_PARAM}`,
      message: `the ${TEST_PARAM} query parameter is not covered by the signature (Standard Webhooks signs the body, not the query string); put ${howToMark}`,
    };
  }
  return { ok: true, test: signed };
}

/**
 * The candidate postback: the JSON body, or the parameters through the network's mapping. Only
 * authenticated data is mapped: a Standard Webhooks signature covers a form body, not the query
 * string, so an unsigned query parameter can never override a signed field.
 */
export function candidateOf(
  auth: NetworkAuth,
  payload: Payload,
  method: AuthMethod | null,
): { value: unknown; mapping: MappingResult | null } {
  if (payload.kind === "json") return { value: parseJson(payload.body), mapping: null };
  const reserved = new Set<string>([...RESERVED_PARAMS, TEST_PARAM]);
  const source = method === "standard_webhooks" ? payload.fields : payload.params;
  const params = source.filter(([key]) => !reserved.has(key));
  const mapping = mapParams(params, mappingOf(auth));
  return { value: mapping.body, mapping };
}

const resolvedMappings = new WeakMap<object, ResolvedMapping>();

/** The network's mapping, resolved once per cached network (it was validated when saved). */
function mappingOf(auth: NetworkAuth): ResolvedMapping {
  let resolved = resolvedMappings.get(auth);
  if (!resolved) {
    resolved = resolveMapping(NetworkMappingSchema.parse(auth.network.mapping ?? { preset: "generic" }));
    resolvedMappings.set(auth, resolved);
  }
  return resolved;
}

/**
 * For the inbound log of a network that hashes identifiers: which fields, and which parameters of
 * a GET or form postback carry them (the names its mapping reads), so that the record's excerpt
 * holds their hashes, never the values. Set as soon as the network is known: a request that fails
 * authentication or validation is logged too.
 */
function identifierProtection(auth: NetworkAuth, deps: Pick<IngestDeps, "identifierKey">): IdentifierProtection | null {
  const fields = auth.network.hash_identifiers;
  if (fields.length === 0) return null;
  const mapping = mappingOf(auth);
  const params: Record<string, HashableIdentifier> = {};
  for (const field of fields) for (const name of [field, ...mapping.fields[field]]) params[name] ??= field;
  return { fields, params, key: () => deps.identifierKey() };
}

/**
 * The postback as the hub may store it: a network's hashed identifiers replaced by their keyed
 * hashes (docs/privacy.md). Before the object call, so the raw value reaches no store; CPU only
 * (the key is derived once per isolate), so the hot path keeps its one call. Dedupe still works:
 * the same value always hashes the same.
 */
export async function protectIdentifiers(
  auth: NetworkAuth,
  postback: Postback,
  deps: Pick<IngestDeps, "identifierKey">,
): Promise<Postback> {
  let stored = postback;
  for (const field of auth.network.hash_identifiers) {
    const value = postback[field];
    if (value === undefined) continue;
    stored = { ...stored, [field]: await hashIdentifier(await deps.identifierKey(), field, value) };
  }
  return stored;
}

export function validatePostback(candidate: unknown): Postback {
  const parsed = PostbackSchema.safeParse(candidate);
  if (!parsed.success) throw validationProblem("body", parsed.error);
  return parsed.data;
}

/**
 * Validates a postback as built by `candidateOf`. A mapped (GET or form) postback's errors are found
 * on the canonical body (`body.amount`) but the sender sent `?payout=`: they are named after the
 * parameter each value came from, where there was one.
 */
export function checkCandidate(
  candidate: { value: unknown; mapping: MappingResult | null },
  payload: Payload,
): { ok: true; postback: Postback } | { ok: false; errors: FieldError[] } {
  const parsed = PostbackSchema.safeParse(candidate.value);
  if (parsed.success) return { ok: true, postback: parsed.data };
  const errors = zodFieldErrors("body", parsed.error);
  return { ok: false, errors: candidate.mapping ? locateMappedErrors(errors, candidate.mapping, payload) : errors };
}

function locateMappedErrors(errors: FieldError[], mapping: MappingResult, payload: Payload): FieldError[] {
  const inBody = new Set(payload.fields.map(([name]) => name));
  const where = (param: string) => `${inBody.has(param) ? "body" : "query"}.${param}`;
  return errors.map((error) => {
    const [, field, key] = /^body\.([^.[]+)(?:\.([^.[]+))?/.exec(error.location) ?? [];
    if (field === undefined) return error;
    if (field === "meta" && key !== undefined && mapping.meta_keys.includes(key)) {
      return { ...error, location: where(key) };
    }
    const param = mapping.used[field];
    return param === undefined ? error : { ...error, location: where(param) };
  });
}

/** One postback to its conversion's Durable Object: the hot path's one call. */
export async function recordPostback(
  networkId: string,
  postback: Postback,
  test: boolean,
  deps: IngestDeps,
): Promise<IngestAnswer> {
  const result = await deps.conversion(conversionObjectName(networkId, postback.transaction_id, test)).record({
    network_id: networkId,
    transaction_id: postback.transaction_id,
    postback,
    test,
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

/** Everything up to (not including) the body: network, payload, authentication, test marker. */
export async function prepare(
  networkId: string,
  request: Request,
  deps: IngestDeps,
  scope: SignedQueryScope = "postback",
): Promise<Prepared> {
  const resolved = await resolveNetwork(networkId, deps);
  const payload = await readPayload(request, deps.maxBodyBytes);
  const trace = deps.trace;
  if (trace) trace.body = payload.body;
  const { auth, result } = await authenticateRequest(networkId, resolved, request, payload, deps, scope);
  if (!result.ok) throw authProblem(result, auth.network.auth.methods);
  if (trace) {
    trace.authMethod = result.method;
    trace.credentialId = result.credentialId;
  }
  const marker = testMarker(auth, request, payload, result.method);
  if (!marker.ok) {
    const failure = { ok: false, code: "unauthorized", location: marker.location, message: marker.message } as const;
    throw authProblem(failure, auth.network.auth.methods);
  }
  deps.noteCredentialUse(result.credentialId);
  if (trace) trace.test = marker.test;
  return { auth, payload, method: result.method, test: marker.test };
}

/**
 * Spends `postbacks` units of the network's rate limit: a batch pays per event, as if each were
 * sent alone. Counted after authentication, so nobody who merely knows a network's id can spend
 * its budget.
 */
export async function spendRateLimit(networkId: string, postbacks: number, deps: IngestDeps): Promise<void> {
  const verdicts = await Promise.all(Array.from({ length: postbacks }, () => deps.withinRateLimit(networkId)));
  if (verdicts.every(Boolean)) return;
  const what = postbacks === 1 ? "" : ` (this batch counts as ${postbacks} postbacks)`;
  throw new ProblemError(
    "rate_limited",
    `Network "${networkId}" is over its rate limit${what}; slow down and retry after the Retry-After delay.`,
    [],
    { "retry-after": "60" },
  );
}

// --- entry points ----------------------------------------------------------------------------

export async function ingestPostback(
  networkId: string,
  request: Request,
  deps: IngestDeps,
): Promise<{ answer: IngestAnswer; auth: NetworkAuth }> {
  const prepared = await prepare(networkId, request, deps);
  await spendRateLimit(networkId, 1, deps);
  const checked = checkCandidate(candidateOf(prepared.auth, prepared.payload, prepared.method), prepared.payload);
  if (!checked.ok) throw validationFailed(checked.errors);
  const postback = await protectIdentifiers(prepared.auth, checked.postback, deps);
  const test = prepared.test || postback.test === true;
  if (deps.trace) Object.assign(deps.trace, { transactionId: postback.transaction_id, test });
  const answer = await recordPostback(networkId, postback, test, deps);
  if (deps.trace) deps.trace.verdict = answer.status;
  return { answer, auth: prepared.auth };
}

export type BatchItemResult =
  | { index: number; status: 200; answer: IngestAnswer }
  | { index: number; status: 409 | 422; code: string; detail: string; errors: FieldError[] };

/**
 * Up to MAX_BATCH_EVENTS events in one authenticated JSON request, each decided on its own: one
 * bad item does not reject the others. The events of one transaction are decided one after
 * another, in array order (`[pending, approved]` must reach its object in that order); different
 * transactions go to their objects in parallel.
 */
export async function ingestBatch(networkId: string, request: Request, deps: IngestDeps): Promise<BatchItemResult[]> {
  const prepared = await prepare(networkId, request, deps);
  if (prepared.payload.kind !== "json") {
    throw new ProblemError("unsupported_media_type", 'A batch is a JSON body: { "events": [ … ] }.', [
      { location: "header.content-type", message: "must be application/json" },
    ]);
  }
  const events = batchEvents(parseJson(prepared.payload.body));
  if (deps.trace) deps.trace.items = events.length;
  await spendRateLimit(networkId, events.length, deps);

  const results: BatchItemResult[] = [];
  const inOrder = new Map<string, { index: number; postback: Postback; test: boolean }[]>();
  for (const [index, event] of events.entries()) {
    const parsed = PostbackSchema.safeParse(event);
    if (!parsed.success) {
      results[index] = itemProblem(index, validationProblem("body", parsed.error));
      continue;
    }
    const test = prepared.test || parsed.data.test === true;
    const key = JSON.stringify([test, parsed.data.transaction_id]);
    const queue = inOrder.get(key) ?? [];
    queue.push({ index, postback: await protectIdentifiers(prepared.auth, parsed.data, deps), test });
    inOrder.set(key, queue);
  }
  await Promise.all(
    [...inOrder.values()].map(async (queue) => {
      for (const { index, postback, test } of queue) {
        try {
          results[index] = { index, status: 200, answer: await recordPostback(networkId, postback, test, deps) };
        } catch (error) {
          if (!(error instanceof ProblemError) || error.status !== 409) throw error;
          results[index] = itemProblem(index, error);
        }
      }
    }),
  );
  if (deps.trace) {
    deps.trace.verdict = "batch";
    deps.trace.itemErrors = results.flatMap((result) => (result.status === 200 ? [] : result.errors));
  }
  return results;
}

function itemProblem(index: number, error: ProblemError): BatchItemResult {
  const errors = error.errors.map((e) => ({ ...e, location: e.location.replace(/^body/, `body.events[${index}]`) }));
  return { index, status: error.status as 409 | 422, code: error.code, detail: error.message, errors };
}

function batchEvents(value: unknown): unknown[] {
  const events =
    value !== null && typeof value === "object" && !Array.isArray(value)
      ? (value as Record<string, unknown>).events
      : undefined;
  const errors: FieldError[] = [];
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    errors.push({ location: "body", message: 'must be an object like { "events": [ … ] }' });
  } else {
    const extra = Object.keys(value).filter((key) => key !== "events");
    for (const key of extra) errors.push({ location: `body.${key}`, message: "is not a known field" });
    if (!Array.isArray(events)) errors.push({ location: "body.events", message: "must be an array of postbacks" });
    else if (events.length === 0 || events.length > MAX_BATCH_EVENTS) {
      errors.push({ location: "body.events", message: `must hold 1 to ${MAX_BATCH_EVENTS} postbacks` });
    }
  }
  if (errors.length > 0 || !Array.isArray(events)) {
    throw new ProblemError("validation_failed", `Fix the batch: ${errors.map((e) => e.location).join(", ")}.`, errors);
  }
  return events;
}
