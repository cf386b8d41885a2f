/**
 * The inbound request log: every request to a postback route of a known network gets a record
 * (rejections included) with its verdict, so that a network can ask "why was my postback
 * rejected?" and an operator can see what arrived. It never touches the hot path: the trace is
 * filled as the request goes through ingest, and the record is built and sent to the REQUEST_LOG
 * queue after the answer (waitUntil).
 *
 * Flood control. A request that did not authenticate could come from anyone who knows the
 * network's id, so it gets a budget of its own, small and apart from the network's: a stranger's
 * flood can neither fill D1 nor crowd out the network's own records. Per isolate, at most
 * `caps.authenticated` records of authenticated requests and `caps.unauthenticated` of the others
 * per network and minute; the latter also pass a per-location limiter and are kept short (no body
 * excerpt). Beyond the budgets, and for requests to networks the hub does not know (their ids are
 * the sender's to choose), only a count is kept, reported as a running total per isolate and
 * minute so that the consumer can keep the largest report (exact under duplicate and reordered
 * messages). Records leave the isolate together, at most every FLUSH_EVERY_MS, packed many to a
 * message by their UTF-8 size.
 */

import type { InboundRecord, RequestLogMessage, UnloggedCount } from "../domain/messages";
import type { HashableIdentifier } from "../domain/network";
import type { FieldError } from "../errors";
import { sha256Hex } from "../lib/bytes";
import { chunksBySize, jsonByteSize } from "../lib/chunks";
import { hashIdentifier } from "../lib/identifier-hash";
import { logLine } from "../lib/log";
import { type HashValue, hashJsonMembers, hashParams } from "./log-identifiers";

/** A network that hashes identifiers: its record's excerpts hold their hashes (see log-identifiers.ts). */
export interface IdentifierProtection {
  fields: readonly HashableIdentifier[];
  /** Parameter name → the field it carries (the field's own name, and those the network's mapping reads). */
  params: Readonly<Record<string, HashableIdentifier>>;
  key(): Promise<CryptoKey>;
}

/** What a request revealed on its way through ingest; the route fills in the rest. */
export interface InboundTrace {
  /** The network exists (active or disabled): only then is the request logged one by one. */
  known: boolean;
  /** The network, when the route learns it from the body (Apple's well-known paths), not the path. */
  networkId: string | null;
  /** Not a network's request at all (an operator's explain with the admin token): not logged. */
  skip: boolean;
  authMethod: string | null;
  credentialId: string | null;
  transactionId: string | null;
  test: boolean | null;
  body: Uint8Array | null;
  /** The decision, set by the route on a 2xx (a problem's code is taken from the error). */
  verdict: string | null;
  /** Events in a batch. */
  items: number | null;
  /** A batch's per-item problems, as the answer named them. */
  itemErrors: FieldError[];
  /** Set once the network is known, when it hashes identifiers. */
  identifiers: IdentifierProtection | null;
}

export function newTrace(): InboundTrace {
  return {
    known: false,
    networkId: null,
    skip: false,
    authMethod: null,
    credentialId: null,
    transactionId: null,
    test: null,
    body: null,
    verdict: null,
    items: null,
    itemErrors: [],
    identifiers: null,
  };
}

export const MAX_LOGGED_ERRORS = 5;
const EXCERPT_CHARS = 512;
/** A query excerpt of a request that did not authenticate: anyone can send one. */
const STRANGER_CHARS = 256;
const REDACTED = "(redacted)";
const WITHHELD =
  "(withheld: this network's identifiers are hashed, and they could not be told apart in this body to hash them)";
/** Parameters that carry a credential: their values never reach the log. */
const SECRET_PARAMS = new Set(["token", "pb_sig"]);
/** Headers kept in the excerpt; the credential-bearing ones only as present. */
const KEPT_HEADERS = [
  "content-type",
  "content-length",
  "user-agent",
  "webhook-id",
  "webhook-timestamp",
  "svix-id",
  "svix-timestamp",
  "x-postback-test",
];
const SECRET_HEADERS = ["authorization", "webhook-signature", "svix-signature", "x-postback-token"];

export interface RequestFacts {
  requestId: string;
  networkId: string;
  route: InboundRecord["route"];
  receivedAtMs: number;
  request: Request;
  status: number;
  /** The problem the answer carried, if any. */
  problem: { code: string; errors: readonly FieldError[] } | null;
  trace: InboundTrace;
}

/** A request that passed authentication: the network's own, as far as the hub can tell. */
export function authenticated(trace: InboundTrace): boolean {
  return trace.authMethod !== null;
}

/**
 * Builds the record (the body's digest included): after the answer, never before. A request that
 * did not authenticate keeps no body excerpt and shorter headers: anyone can send it.
 */
export async function buildRecord(facts: RequestFacts): Promise<InboundRecord> {
  const { trace, request } = facts;
  const body = trace.body ?? new Uint8Array(0);
  const url = new URL(request.url);
  const errors = facts.problem ? facts.problem.errors : trace.itemErrors;
  const own = authenticated(trace);
  const protection = trace.identifiers;
  const hash: HashValue | null = protection
    ? async (field, value) => hashIdentifier(await protection.key(), field, value)
    : null;
  const params = protection && hash ? await hashParams(url.searchParams, protection.params, hash) : url.searchParams;
  return {
    request_id: facts.requestId,
    network_id: facts.networkId,
    received_at: new Date(facts.receivedAtMs).toISOString(),
    route: facts.route,
    method: request.method,
    auth_method: trace.authMethod,
    credential_id: trace.credentialId,
    client_ip: cutOrNull(request.headers.get("cf-connecting-ip"), 64),
    transaction_id: trace.transactionId,
    test: trace.test,
    status: facts.status,
    verdict: facts.problem?.code ?? trace.verdict ?? (facts.status < 400 ? "answered" : "rejected"),
    errors: errors
      .slice(0, MAX_LOGGED_ERRORS)
      .map((e) => ({ location: cut(e.location, 256), message: cut(e.message) })),
    items: trace.items,
    body_bytes: body.byteLength,
    body_sha256: body.byteLength > 0 ? await sha256Hex(body) : null,
    excerpt: {
      query: url.search ? cut(redactedParams(params), own ? EXCERPT_CHARS : STRANGER_CHARS) : null,
      headers: excerptHeaders(request.headers, own ? 256 : 64),
      body:
        own && body.byteLength > 0
          ? await excerptBody(
              body,
              request.headers.get("content-type"),
              protection && hash ? { protection, hash } : null,
            )
          : null,
    },
  };
}

function redactedParams(params: URLSearchParams): string {
  const kept = new URLSearchParams();
  for (const [name, value] of params) kept.append(name, SECRET_PARAMS.has(name) ? REDACTED : value);
  return kept.toString();
}

function excerptHeaders(headers: Headers, chars: number): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of KEPT_HEADERS) {
    const value = headers.get(name);
    if (value !== null) kept[name] = cut(value, chars);
  }
  for (const name of SECRET_HEADERS) if (headers.has(name)) kept[name] = REDACTED;
  return kept;
}

async function excerptBody(
  body: Uint8Array,
  contentType: string | null,
  hashing: { protection: IdentifierProtection; hash: HashValue } | null,
): Promise<string> {
  // Decoding a cut is lossy at its end only: the excerpt is for reading, the digest is exact. With
  // identifiers to hash, the whole body is read first, so that no value is cut before it is hashed.
  const text = new TextDecoder().decode(hashing ? body : body.subarray(0, EXCERPT_CHARS * 4));
  const form = contentType?.split(";")[0]?.trim().toLowerCase() === "application/x-www-form-urlencoded";
  if (form) {
    const fields = new URLSearchParams(text);
    return cut(redactedParams(hashing ? await hashParams(fields, hashing.protection.params, hashing.hash) : fields));
  }
  if (!hashing) return cut(text);
  return cut((await hashJsonMembers(text, hashing.protection.fields, hashing.hash)) ?? WITHHELD);
}

function cutOrNull(text: string | null, chars: number): string | null {
  return text === null ? null : cut(text, chars);
}

function cut(text: string, chars = EXCERPT_CHARS): string {
  const points = [...text];
  return points.length <= chars ? text : `${points.slice(0, chars).join("")}…`;
}

// --- the per-isolate buffer ---------------------------------------------------------------------

/** The queue seam: all the log needs is to send a batch. */
export interface RequestLogQueue {
  sendBatch(messages: Iterable<MessageSendRequest<RequestLogMessage>>): Promise<unknown>;
}

const MINUTE_MS = 60_000;
/**
 * An isolate sends what its requests logged at most this often: one send carries every record
 * (and changed count) that arrived meanwhile, so a busy isolate makes a few sends a second, not
 * one per request, and a flood of dropped requests makes no more.
 */
export const FLUSH_EVERY_MS = 250;
/** Records per message, and the UTF-8 size a message stays under (the queue takes 128 KB a message). */
const RECORDS_PER_MESSAGE = 50;
const MESSAGE_BYTES = 100_000;
/** The UTF-8 size one sendBatch stays under (the queue takes 256 KB a batch). */
const SEND_BYTES = 200_000;
/** Records kept for a later flush when the queue refuses them; beyond that they are counted. */
const MAX_WAITING_RECORDS = 1_000;
const UNKNOWN_NETWORK = "";

interface Bucket {
  networkId: string;
  minute: string;
  /** Records admitted this minute: of authenticated requests, and of the others. */
  logged: number;
  loggedUnauthenticated: number;
  unlogged: number;
  reported: number;
}

/** Records per network, minute and isolate: the network's own, and those of requests that did not authenticate. */
export interface LogCaps {
  authenticated: number;
  unauthenticated: number;
}

export class InboundLog {
  private id: string | null;
  private waiting: InboundRecord[] = [];
  private readonly buckets = new Map<string, Bucket>();
  private scheduled: Promise<void> | null = null;
  private readonly flushEveryMs: number;

  constructor(options: { isolateId?: string; flushEveryMs?: number } = {}) {
    this.id = options.isolateId ?? null;
    this.flushEveryMs = options.flushEveryMs ?? FLUSH_EVERY_MS;
  }

  /** Drawn on first use: Workers refuse random values at module load. */
  get isolateId(): string {
    this.id ??= crypto.randomUUID();
    return this.id;
  }

  /**
   * Whether a request of a known network may be logged one by one this minute; when not, it is
   * counted instead. Decided before the record is built, so a flood costs no digests.
   */
  admit(networkId: string, own: boolean, nowMs: number, caps: LogCaps): boolean {
    const bucket = this.bucket(networkId, nowMs);
    if (own ? bucket.logged < caps.authenticated : bucket.loggedUnauthenticated < caps.unauthenticated) {
      if (own) bucket.logged++;
      else bucket.loggedUnauthenticated++;
      return true;
    }
    bucket.unlogged++;
    return false;
  }

  /** A request admitted by this isolate that a later check (the per-location limiter) turned away. */
  countUnlogged(networkId: string, nowMs: number): void {
    this.bucket(networkId, nowMs).unlogged++;
  }

  /** A request to a network the hub does not know: counted, never stored one by one. */
  countUnknown(nowMs: number): void {
    this.bucket(UNKNOWN_NETWORK, nowMs).unlogged++;
  }

  add(record: InboundRecord): void {
    this.waiting.push(record);
  }

  /**
   * Sends what is waiting within FLUSH_EVERY_MS, one flush at a time per isolate: the request
   * that finds none scheduled runs it (in its waitUntil, until nothing is left to send); the
   * others only add to what it will send.
   */
  async scheduleFlush(queue: RequestLogQueue): Promise<void> {
    if (this.scheduled) return;
    this.scheduled = (async () => {
      while (this.hasWork()) {
        await new Promise((resolve) => setTimeout(resolve, this.flushEveryMs));
        if (!(await this.flush(queue))) break;
      }
    })().finally(() => {
      this.scheduled = null;
    });
    await this.scheduled;
  }

  /**
   * Sends every waiting record and the counts that changed. A refused send keeps its records
   * for the next flush, up to a bound; answers whether the send went through.
   */
  async flush(queue: RequestLogQueue, nowMs: number = Date.now()): Promise<boolean> {
    const records = this.waiting;
    this.waiting = [];
    const counts = this.changedCounts();
    if (records.length === 0 && counts.length === 0) return true;
    try {
      for (const batch of sendBatches(pack(records, counts))) {
        await queue.sendBatch(batch.map((body) => ({ body, contentType: "json" as const })));
      }
    } catch (error) {
      this.keep(records);
      logLine("warn", { message: "inbound log send failed; kept for the next flush", error: String(error) });
      return false;
    }
    for (const count of counts) {
      const bucket = this.buckets.get(bucketKey(count.network_id, count.minute));
      if (bucket) bucket.reported = Math.max(bucket.reported, count.unlogged);
    }
    this.forgetOldBuckets(nowMs);
    return true;
  }

  private hasWork(): boolean {
    return this.waiting.length > 0 || this.hasUnreported();
  }

  private bucket(networkId: string, nowMs: number): Bucket {
    const minute = minuteOf(nowMs);
    const key = bucketKey(networkId, minute);
    let bucket = this.buckets.get(key);
    if (!bucket) {
      bucket = { networkId, minute, logged: 0, loggedUnauthenticated: 0, unlogged: 0, reported: 0 };
      this.buckets.set(key, bucket);
    }
    return bucket;
  }

  private changedCounts(): UnloggedCount[] {
    const counts: UnloggedCount[] = [];
    for (const bucket of this.buckets.values()) {
      if (bucket.unlogged > bucket.reported) {
        counts.push({
          network_id: bucket.networkId,
          minute: bucket.minute,
          isolate_id: this.isolateId,
          unlogged: bucket.unlogged,
        });
      }
    }
    return counts;
  }

  private hasUnreported(): boolean {
    for (const bucket of this.buckets.values()) if (bucket.unlogged > bucket.reported) return true;
    return false;
  }

  /** Buckets of past minutes go once everything in them was reported. */
  private forgetOldBuckets(nowMs: number): void {
    const current = minuteOf(nowMs);
    for (const [key, bucket] of this.buckets) {
      if (bucket.minute < current && bucket.unlogged <= bucket.reported) this.buckets.delete(key);
    }
  }

  private keep(records: InboundRecord[]): void {
    const room = MAX_WAITING_RECORDS - this.waiting.length;
    const kept = records.slice(0, Math.max(0, room));
    this.waiting = [...kept, ...this.waiting];
    for (const lost of records.slice(kept.length)) {
      this.bucket(lost.network_id, Date.parse(lost.received_at)).unlogged++;
    }
  }
}

/** Packs records many to a message, under the queue's message size; the counts ride on the first. */
function pack(records: readonly InboundRecord[], counts: UnloggedCount[]): RequestLogMessage[] {
  const messages: RequestLogMessage[] = chunksBySize(records, RECORDS_PER_MESSAGE, MESSAGE_BYTES).map((chunk) => ({
    v: 1,
    records: chunk,
    counts: [],
  }));
  // The counts ride with the first records when they fit, else in a message of their own.
  const first = messages[0];
  if (first && jsonByteSize(first) + jsonByteSize(counts) <= MESSAGE_BYTES) first.counts = counts;
  else if (counts.length > 0 || !first) messages.unshift({ v: 1, records: [], counts });
  return messages;
}

/** Messages grouped into sendBatch calls under the queue's batch size. */
function sendBatches(messages: RequestLogMessage[]): RequestLogMessage[][] {
  return chunksBySize(messages, Number.POSITIVE_INFINITY, SEND_BYTES);
}

function minuteOf(ms: number): string {
  return new Date(Math.floor(ms / MINUTE_MS) * MINUTE_MS).toISOString();
}

function bucketKey(networkId: string, minute: string): string {
  return `${networkId}|${minute}`;
}

/** This isolate's log: one per isolate, shared by its requests. */
export const inboundLog = new InboundLog();

export interface LogSinks {
  queue: RequestLogQueue;
  /**
   * Per Cloudflare location, for requests that did not authenticate (an isolate's cap alone
   * multiplies with the isolates a flood reaches): false when the network's budget is spent.
   */
  strangers(networkId: string): Promise<boolean>;
}

/**
 * After the answer: counts a request to an unknown network, or logs a known network's request
 * (within its budget), then flushes. Never throws: the log is a trace, not the record.
 */
export async function logRequest(
  facts: RequestFacts,
  sinks: LogSinks,
  caps: LogCaps,
  log: InboundLog = inboundLog,
): Promise<void> {
  if (facts.trace.skip) return;
  try {
    const { trace, networkId, receivedAtMs } = facts;
    const own = authenticated(trace);
    if (!trace.known) log.countUnknown(receivedAtMs);
    else if (log.admit(networkId, own, receivedAtMs, caps)) {
      if (own || (await sinks.strangers(networkId))) log.add(await buildRecord(facts));
      else log.countUnlogged(networkId, receivedAtMs);
    }
    await log.scheduleFlush(sinks.queue);
  } catch (error) {
    logLine("warn", { message: "inbound log failed", request_id: facts.requestId, error: String(error) });
  }
}
