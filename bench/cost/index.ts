/**
 * `npm run bench:cost`'s Worker: the hub itself (src/index.ts, unchanged), wrapped from the outside
 * so that every billed operation is counted where the runtime reports it. Nothing in src/ knows.
 *
 * - Worker invocations: the fetch, queue and scheduled handlers below, one count each, timed.
 * - D1: every statement's `meta.rows_read` / `rows_written` (batch results too, sessions too);
 *   `first()` runs as `all()` so that its meta is seen (D1 runs the whole query for both).
 * - Queues: messages sent (`send`, `sendBatch`, with their size in 64 KB units) and, in the
 *   consumer, messages delivered, retried and acknowledged.
 * - Durable Objects: RPC calls counted at the stub (each call is one billed request), alarms in
 *   the subclasses exported under the hub's class names; SQLite rows from every cursor that
 *   `ctx.storage.sql.exec` returned (`rowsRead` / `rowsWritten`, read once the run is over), the
 *   time each object was active, `setAlarm` calls, and each object's `databaseSize`.
 * - Outbound `fetch` (the partners): counted in a wrapper around the global `fetch`.
 *
 * Every count is kept per stage: the handler's own (by path or queue), or, inside a Durable Object,
 * by the method that runs (AsyncLocalStorage carries it through awaits and `waitUntil`). Worker CPU
 * is estimated in-runtime as each invocation's wall time less its waits on bindings and fetches. The bench
 * reads the counts at `GET /__cost/counts` and clears them at `POST /__cost/reset`. Not deployed.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { ConversionObject } from "../../src/conversions/conversion-object";
import { PartnerCoordinator } from "../../src/coordinator/partner-coordinator";
import hub from "../../src/index";
import { ReplayJobObject } from "../../src/operations/replay-object";
import { ReconciliationJobObject } from "../../src/reports/reconciliation-object";

type Counts = Record<string, Record<string, number>>;

/** The invocation an operation belongs to: its stage, and how long it has waited on bindings so far. */
interface Invocation {
  stage: string;
  /** Time with at least one binding call outstanding (a union: calls in parallel wait once). */
  waitMs: number;
  pending: number;
  waitingSince: number;
}
const invocation = new AsyncLocalStorage<Invocation>();
const stageOf = { getStore: () => invocation.getStore()?.stage };
let counts: Counts = {};
/** Every cursor the objects' SQL returned, with the stage it ran in; summed when counts are read. */
let cursors: {
  cursor: SqlStorageCursor<Record<string, SqlStorageValue>>;
  stage: string;
  object: string;
  sql: string;
}[] = [];
/** The last `databaseSize` seen per object, by class. */
let objectBytes = new Map<string, { className: string; bytes: number }>();
let d1SizeAfter = 0;

/** The metrics of `stage` in `into`, created when missing. */
function stageIn(into: Counts, stage: string): Record<string, number> {
  const existing = into[stage];
  if (existing) return existing;
  const created: Record<string, number> = {};
  into[stage] = created;
  return created;
}

function bump(metric: string, by = 1, stage = stageOf.getStore() ?? "other"): void {
  const forStage = stageIn(counts, stage);
  forStage[metric] = (forStage[metric] ?? 0) + by;
}

function snapshot() {
  const out: Counts = structuredClone(counts);
  const byStatement = new Map(rowsByStatement);
  for (const { cursor, stage, object, sql } of cursors) {
    const text = sql.replace(/\s+/g, " ").trim();
    const key = `${object}\u0000${stage}\u0000${text}`;
    const entry = byStatement.get(key) ?? { store: object, stage, sql: text, calls: 0, read: 0, written: 0 };
    byStatement.set(key, {
      ...entry,
      calls: entry.calls + 1,
      read: entry.read + cursor.rowsRead,
      written: entry.written + cursor.rowsWritten,
    });
    const forStage = stageIn(out, stage);
    forStage[`do.rows_read.${object}`] = (forStage[`do.rows_read.${object}`] ?? 0) + cursor.rowsRead;
    forStage[`do.rows_written.${object}`] = (forStage[`do.rows_written.${object}`] ?? 0) + cursor.rowsWritten;
  }
  const byClass: Record<string, { objects: number; bytes: number }> = {};
  for (const { className, bytes } of objectBytes.values()) {
    const entry = byClass[className] ?? { objects: 0, bytes: 0 };
    entry.objects += 1;
    entry.bytes += bytes;
    byClass[className] = entry;
  }
  return { counts: out, statements: [...byStatement.values()], do_storage: byClass, d1_size_after: d1SizeAfter };
}

function reset(): void {
  counts = {};
  rowsByStatement = new Map();
  cursors = [];
  objectBytes = new Map();
}

/**
 * Runs one Worker invocation of `stage`, adding its wall time to `worker.wall_ms` and its own time
 * (wall time less the time spent waiting on a binding or a fetch: the CPU estimate) to
 * `worker.cpu_ms`. Locally the clock moves while JavaScript runs, at 1 ms steps (unbiased over
 * thousands of invocations). Work left to `waitUntil` after the answer is counted, not timed.
 */
async function invoke<T>(stage: string, counter: string, fn: () => Promise<T>): Promise<T> {
  const current: Invocation = { stage, waitMs: 0, pending: 0, waitingSince: 0 };
  return invocation.run(current, async () => {
    bump(counter);
    const start = performance.now();
    try {
      return await fn();
    } finally {
      const wall = performance.now() - start;
      bump("worker.wall_ms", wall);
      bump("worker.wait_ms", current.waitMs);
      bump("worker.cpu_ms", Math.max(0, wall - current.waitMs));
    }
  });
}

/** Awaits a binding's answer, the time counted as the invocation's waiting. */
async function waited<T>(answer: Promise<T>): Promise<T> {
  const current = invocation.getStore();
  if (current && current.pending++ === 0) current.waitingSince = performance.now();
  try {
    return await answer;
  } finally {
    if (current && --current.pending === 0) current.waitMs += performance.now() - current.waitingSince;
  }
}

// ---- D1 --------------------------------------------------------------------------------------

interface D1Meta {
  rows_read?: number;
  rows_written?: number;
  size_after?: number;
}

/** Rows by statement (its SQL, whitespace folded) and stage: where the rows go, for the cost cut. */
let rowsByStatement = new Map<
  string,
  { store: string; stage: string; sql: string; calls: number; read: number; written: number }
>();

function noteStatement(
  store: string,
  sql: string,
  read: number,
  written: number,
  stage = stageOf.getStore() ?? "other",
) {
  const text = sql.replace(/\s+/g, " ").trim();
  const key = `${store}\u0000${stage}\u0000${text}`;
  const entry = rowsByStatement.get(key) ?? { store, stage, sql: text, calls: 0, read: 0, written: 0 };
  entry.calls += 1;
  entry.read += read;
  entry.written += written;
  rowsByStatement.set(key, entry);
}

function noteD1(meta: D1Meta | undefined, sql: string | undefined): void {
  noteStatement("d1", sql ?? "(unknown)", meta?.rows_read ?? 0, meta?.rows_written ?? 0);
  bump("d1.statements");
  bump("d1.rows_read", meta?.rows_read ?? 0);
  bump("d1.rows_written", meta?.rows_written ?? 0);
  if (typeof meta?.size_after === "number") d1SizeAfter = meta.size_after;
}

const realStatement = new WeakMap<object, D1PreparedStatement>();
const statementSql = new WeakMap<object, string>();

function countedStatement(statement: D1PreparedStatement, sql: string): D1PreparedStatement {
  const counted = new Proxy(statement, {
    get(target, prop) {
      switch (prop) {
        case "bind":
          return (...values: unknown[]) => countedStatement(target.bind(...values), sql);
        case "all":
        case "run":
          return async () => {
            const result = await waited(target.all());
            noteD1(result.meta, sql);
            return result;
          };
        case "first":
          return async (column?: string) => {
            const result = await waited(target.all<Record<string, unknown>>());
            noteD1(result.meta, sql);
            const row = result.results[0];
            if (row === undefined) return null;
            return column === undefined ? row : (row[column] ?? null);
          };
        case "raw":
          throw new Error("bench:cost counts D1 through meta; raw() has none (the hub does not use it)");
        default: {
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
      }
    },
  });
  realStatement.set(counted, statement);
  statementSql.set(counted, sql);
  return counted;
}

function countedD1<T extends D1Database | D1DatabaseSession>(db: T): T {
  return new Proxy(db, {
    get(target, prop) {
      switch (prop) {
        case "prepare":
          return (query: string) => countedStatement(target.prepare(query), query);
        case "batch":
          return async (statements: D1PreparedStatement[]) => {
            const results = await waited(target.batch(statements.map((s) => realStatement.get(s) ?? s)));
            results.forEach((result, i) => {
              const statement = statements[i];
              noteD1(result.meta, statement && statementSql.get(statement));
            });
            return results;
          };
        case "withSession":
          return (constraint?: string) => countedD1((target as D1Database).withSession(constraint));
        case "exec":
          throw new Error("bench:cost counts D1 through meta; exec() has none (the hub does not use it)");
        default: {
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        }
      }
    },
  });
}

// ---- Queues ----------------------------------------------------------------------------------

const QUEUE_OP_BYTES = 64 * 1024;

/** Billed 64 KB units of one message body (at least one). */
function queueUnits(body: unknown): number {
  const bytes = new TextEncoder().encode(typeof body === "string" ? body : JSON.stringify(body)).byteLength;
  return Math.max(1, Math.ceil(bytes / QUEUE_OP_BYTES));
}

function countedQueue(binding: string, queue: Queue): Queue {
  return new Proxy(queue, {
    get(target, prop) {
      if (prop === "send") {
        return (body: unknown, options?: QueueSendOptions) => {
          bump(`queue.sent.${binding}`);
          bump("queue.write_ops", queueUnits(body));
          return waited(target.send(body, options));
        };
      }
      if (prop === "sendBatch") {
        return (messages: Iterable<MessageSendRequest>, options?: QueueSendBatchOptions) => {
          const list = [...messages];
          bump(`queue.sent.${binding}`, list.length);
          bump("queue.send_calls");
          for (const message of list) bump("queue.write_ops", queueUnits(message.body));
          return waited(target.sendBatch(list, options));
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/**
 * The batch the consumer sees, each message watched: a message is read once per delivery and
 * deleted once, when acknowledged (explicitly, or by a handler that returns); a retry reads it again later.
 */
async function consumeCounted(batch: MessageBatch, run: (batch: MessageBatch) => Promise<void>): Promise<void> {
  const fate = new Map<Message, "ack" | "retry">();
  let all: "ack" | "retry" | null = null;
  const messages = batch.messages.map(
    (message) =>
      new Proxy(message, {
        get(target, prop) {
          if (prop === "ack") {
            return () => {
              fate.set(target, "ack");
              target.ack();
            };
          }
          if (prop === "retry") {
            return (options?: QueueRetryOptions) => {
              fate.set(target, "retry");
              target.retry(options);
            };
          }
          const value = Reflect.get(target, prop, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }),
  );
  const watched: MessageBatch = {
    queue: batch.queue,
    metadata: batch.metadata,
    messages,
    ackAll: () => {
      all = "ack";
      batch.ackAll();
    },
    retryAll: (options?: QueueRetryOptions) => {
      all = "retry";
      batch.retryAll(options);
    },
  };
  bump("queue.delivered", batch.messages.length);
  for (const message of batch.messages) bump("queue.read_ops", queueUnits(message.body));
  let failed = false;
  try {
    await run(watched);
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    for (const message of batch.messages) {
      const end = fate.get(message) ?? all ?? (failed ? "retry" : "ack");
      if (end === "ack") bump("queue.delete_ops", queueUnits(message.body));
      else bump("queue.retried");
    }
  }
}

// ---- Durable Objects -------------------------------------------------------------------------

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof Reflect.get(value, "then") === "function"
  );
}

function countedNamespace(className: string, namespace: DurableObjectNamespace): DurableObjectNamespace {
  const stub = (real: DurableObjectStub) =>
    new Proxy(real, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (typeof value !== "function" || typeof prop !== "string") return value;
        return (...args: unknown[]) => {
          bump(`do.requests.${className}.${prop}`);
          // Reflect.apply: on an RPC stub, `.apply` would itself be a remote method.
          // An RPC call answers an RpcPromise: a thenable, not a Promise (the hub awaits it; no pipelining).
          const answer: unknown = Reflect.apply(value, target, args);
          return isThenable(answer) ? waited(Promise.resolve(answer)) : answer;
        };
      },
    });
  return new Proxy(namespace, {
    get(target, prop) {
      if (prop === "get" || prop === "getByName") {
        return (...args: unknown[]) =>
          stub(
            Reflect.apply(Reflect.get(target, prop, target) as (...a: unknown[]) => DurableObjectStub, target, args),
          );
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A rate limiter whose answer is waited for like any binding's (not billed: rate limiting is free on Workers). */
function waitedLimiter(limiter: RateLimit): RateLimit {
  return { limit: (options) => waited(limiter.limit(options)) };
}

const countedEnvs = new WeakMap<Env, Env>();

/** The hub's bindings, counted: D1, the queues, the Durable Object namespaces. */
function countedEnv(env: Env): Env {
  const known = countedEnvs.get(env);
  if (known) return known;
  const counted: Env = {
    ...env,
    DB: countedD1(env.DB),
    EVENTS: countedQueue("EVENTS", env.EVENTS),
    DELIVERIES: countedQueue("DELIVERIES", env.DELIVERIES),
    REQUEST_LOG: countedQueue("REQUEST_LOG", env.REQUEST_LOG),
    CLICKS: countedQueue("CLICKS", env.CLICKS),
    INGEST_RATE_LIMITER: waitedLimiter(env.INGEST_RATE_LIMITER),
    INBOUND_LOG_LIMITER: waitedLimiter(env.INBOUND_LOG_LIMITER),
    CLICK_RECORD_LIMITER: waitedLimiter(env.CLICK_RECORD_LIMITER),
    CONVERSIONS: countedNamespace("ConversionObject", env.CONVERSIONS),
    COORDINATORS: countedNamespace("PartnerCoordinator", env.COORDINATORS),
    REPLAY_JOBS: countedNamespace("ReplayJobObject", env.REPLAY_JOBS),
    RECONCILIATION_JOBS: countedNamespace("ReconciliationJobObject", env.RECONCILIATION_JOBS),
  } as Env;
  countedEnvs.set(env, counted);
  return counted;
}

/**
 * Keeps the object's SQL cursors and counts its alarms, on the runtime's own objects: the base
 * class accepts only a real DurableObjectState, so `exec` and `setAlarm` are replaced on the
 * instances (the same ones for the object's whole life: checked) before the hub's constructor runs.
 */
function countState(ctx: DurableObjectState, className: string): void {
  const storage = ctx.storage;
  const sql = storage.sql;
  const exec = sql.exec.bind(sql);
  const countedExec: SqlStorage["exec"] = <T extends Record<string, SqlStorageValue>>(
    query: string,
    ...bindings: unknown[]
  ) => {
    const cursor = exec<T>(query, ...bindings);
    // Miniflare names each local object in a table of its own: not the hub's, and not in production.
    if (query.includes("__miniflare")) return cursor;
    // Outside a method: the constructor (the coordinator creates its tables there).
    const stage = stageOf.getStore() ?? objectStage(className, "constructor");
    cursors.push({
      cursor: cursor as SqlStorageCursor<Record<string, SqlStorageValue>>,
      stage,
      object: className,
      sql: query,
    });
    return cursor;
  };
  Object.defineProperty(sql, "exec", { value: countedExec, configurable: true });
  const setAlarm = storage.setAlarm.bind(storage);
  const countedSetAlarm: DurableObjectStorage["setAlarm"] = (...args) => {
    bump(`do.set_alarm.${className}`);
    return setAlarm(...args);
  };
  Object.defineProperty(storage, "setAlarm", { value: countedSetAlarm, configurable: true });
  if (ctx.storage.sql.exec !== countedExec || ctx.storage.setAlarm !== countedSetAlarm) {
    throw new Error("bench:cost: the runtime hands out a new storage object each time; SQL rows cannot be counted");
  }
}

/** The stage an object's method works for, when it is not the caller's (a Durable Object has its own context). */
const OBJECT_STAGES: Record<string, Record<string, string>> = {
  ConversionObject: { record: "ingest", peek: "ingest", alarm: "outbox alarm", confirm: "events consumer" },
  PartnerCoordinator: { default: "delivery" },
};

function objectStage(className: string, method: string): string {
  const stages = OBJECT_STAGES[className];
  if (stages === undefined) return "cron";
  return (Object.hasOwn(stages, method) ? stages[method] : stages.default) ?? "cron";
}

interface Instrumented {
  ctx: DurableObjectState;
}

/**
 * Runs each public method of `base` (RPC methods and `alarm`) in its stage, and adds the time the
 * object was active (from the first invocation in to the last out: concurrent calls overlap, and
 * duration is billed by wall time) to `do.active_ms`. Alarms are counted here: they are requests.
 */
function instrumentMethods(prototype: object, base: object, className: string): void {
  const active = new WeakMap<object, { calls: number; since: number; stage: string }>();
  for (const name of Object.getOwnPropertyNames(base)) {
    const original = Reflect.get(base, name);
    if (name === "constructor" || typeof original !== "function") continue;
    Object.defineProperty(prototype, name, {
      configurable: true,
      writable: true,
      value: function (this: Instrumented, ...args: unknown[]) {
        const outer = invocation.getStore();
        const stage = outer?.stage ?? objectStage(className, name);
        return invocation.run(outer ?? { stage, waitMs: 0, pending: 0, waitingSince: 0 }, () => {
          if (name === "alarm") bump(`do.alarms.${className}`);
          const state = active.get(this) ?? { calls: 0, since: 0, stage };
          if (state.calls++ === 0) Object.assign(state, { since: performance.now(), stage });
          active.set(this, state);
          const leave = () => {
            if (--state.calls === 0) bump(`do.active_ms.${className}`, performance.now() - state.since, state.stage);
            objectBytes.set(`${className}:${this.ctx.id.toString()}`, {
              className,
              bytes: this.ctx.storage.sql.databaseSize,
            });
          };
          // Synchronous methods stay synchronous (the hub calls some inside transactionSync).
          let result: unknown;
          try {
            result = Reflect.apply(original, this, args);
          } catch (error) {
            leave();
            throw error;
          }
          if (result instanceof Promise) return result.finally(leave);
          leave();
          return result;
        });
      },
    });
  }
}

class CountedConversionObject extends ConversionObject {
  constructor(ctx: DurableObjectState, env: Env) {
    countState(ctx, "ConversionObject");
    super(ctx, countedEnv(env));
  }
}
instrumentMethods(CountedConversionObject.prototype, ConversionObject.prototype, "ConversionObject");

class CountedPartnerCoordinator extends PartnerCoordinator {
  constructor(ctx: DurableObjectState, env: Env) {
    countState(ctx, "PartnerCoordinator");
    super(ctx, countedEnv(env));
  }
}
instrumentMethods(CountedPartnerCoordinator.prototype, PartnerCoordinator.prototype, "PartnerCoordinator");

class CountedReplayJobObject extends ReplayJobObject {
  constructor(ctx: DurableObjectState, env: Env) {
    countState(ctx, "ReplayJobObject");
    super(ctx, countedEnv(env));
  }
}
instrumentMethods(CountedReplayJobObject.prototype, ReplayJobObject.prototype, "ReplayJobObject");

class CountedReconciliationJobObject extends ReconciliationJobObject {
  constructor(ctx: DurableObjectState, env: Env) {
    countState(ctx, "ReconciliationJobObject");
    super(ctx, countedEnv(env));
  }
}
instrumentMethods(
  CountedReconciliationJobObject.prototype,
  ReconciliationJobObject.prototype,
  "ReconciliationJobObject",
);

export {
  CountedConversionObject as ConversionObject,
  CountedPartnerCoordinator as PartnerCoordinator,
  CountedReconciliationJobObject as ReconciliationJobObject,
  CountedReplayJobObject as ReplayJobObject,
};

// ---- Outbound fetch --------------------------------------------------------------------------

const realFetch = globalThis.fetch;
globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit) => {
  bump("subrequests.fetch");
  return waited(realFetch(input, init));
};

// ---- The handlers ----------------------------------------------------------------------------

function fetchStage(pathname: string): string {
  if (pathname.startsWith("/v1/postbacks/") || pathname.startsWith("/p/")) return "ingest";
  if (pathname.startsWith("/c/")) return "clicks";
  return "setup";
}

const QUEUE_STAGES: Record<string, string> = {
  "postback-events": "events consumer",
  "postback-deliveries": "delivery",
  "postback-requests": "inbound log",
  "postback-clicks": "clicks",
};

const hubFetch = hub.fetch as (request: Request, env: Env, ctx: ExecutionContext) => Promise<Response>;
const hubQueue = hub.queue as (batch: MessageBatch, env: Env) => Promise<void>;
const hubScheduled = hub.scheduled as (controller: ScheduledController, env: Env) => Promise<void>;

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__cost/counts") return Response.json(snapshot());
    if (url.pathname === "/__cost/reset" && request.method === "POST") {
      reset();
      return new Response(null, { status: 204 });
    }
    // The body is read before the clock starts: waiting for the client's bytes is not CPU.
    const body = request.body === null ? null : await request.arrayBuffer();
    const buffered = body === null ? request : new Request(request, { body });
    return invoke(fetchStage(url.pathname), "worker.fetch", () => hubFetch(buffered, countedEnv(env), ctx));
  },

  async queue(batch, env) {
    const stage = QUEUE_STAGES[batch.queue] ?? "dead letters";
    await invoke(stage, "worker.queue", () => {
      bump("queue.batches");
      return consumeCounted(batch, (watched) => hubQueue(watched, countedEnv(env)));
    });
  },

  async scheduled(controller, env) {
    await invoke(`cron ${controller.cron}`, "worker.cron", () => hubScheduled(controller, countedEnv(env)));
  },
} satisfies ExportedHandler<Env>;
