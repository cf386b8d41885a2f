/**
 * PartnerCoordinator: one per partner. It owns what only one place can know for a partner: the
 * order of each conversion's deliveries (the delivery of a conversion's next event waits until the
 * previous one is finished), how many may be in flight at once (its pace, delivery/pace.ts), and
 * whether deliveries should wait at all (its breaker, delivery/breaker.ts). It makes the attempts
 * itself (delivery/attempt.ts, the same function the DELIVERIES consumer uses), so a slow or failing
 * partner only ever slows its own object. D1 stays the record of every delivery and attempt; the
 * object keeps its work list, the pace, the breaker and the window of recent outcomes in SQLite,
 * and its alarm runs the work: an object that restarts picks up where it was.
 *
 * Nothing of it is on the ingest path: deliveries reach it from the DELIVERIES queue's consumer.
 */
import { DurableObject } from "cloudflare:workers";
import { configOf } from "../config";
import { type AttemptDeps, type AttemptReport, attemptDelivery } from "../delivery/attempt";
import {
  type BreakerSettings,
  type BreakerState,
  afterAttempt as breakerAfterAttempt,
  breakerAllows,
  closedBreaker,
  DEFAULT_BREAKER,
  type Transition,
  withTime,
} from "../delivery/breaker";
import {
  afterSignal,
  capacity,
  DEFAULT_PACE,
  initialPace,
  type PaceSettings,
  type PaceState,
  signalOf,
} from "../delivery/pace";

/** One delivery for the coordinator to make: its conversion and its place in that conversion's events. */
// A type, not an interface: SQL rows are read into it, and only a type satisfies their index signature.
export type WorkItem = {
  delivery_id: string;
  /** The conversion it belongs to (network, transaction, test or live): its deliveries go in order. */
  conversion: string;
  /** The conversion's version after the delivery's event: the order within the conversion. */
  position: number;
  /** When it may be attempted (epoch ms). */
  due_ms: number;
};

export interface CoordinatorSettings {
  pace: PaceSettings;
  breaker: BreakerSettings;
}

export interface CoordinatorStatus {
  pace: { in_flight_limit: number; max_in_flight: number; paused_until: string | null; changes: PaceState["changes"] };
  breaker: { position: BreakerState["position"]; reason: string | null; probe_at: string | null };
  waiting: number;
  transitions: Transition[];
}

/** How long one alarm keeps running attempts before it yields (and sets the next alarm). */
const PUMP_BUDGET_MS = 25_000;
/** An attempt that throws (D1 trouble, a bug) is taken again after this long. */
const ERROR_RETRY_MS = 30_000;
const KEPT_TRANSITIONS = 20;

export interface CoordinatorDeps {
  attempt(deliveryId: string): Promise<AttemptReport>;
  /** Told of every breaker transition (recorded and alerted by the caller). */
  transition(partnerId: string, transition: Transition): Promise<void>;
  settings(partnerId: string): Promise<CoordinatorSettings | null>;
  now(): number;
}

export class PartnerCoordinator extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Replaced in tests; by default the real attempt, D1 and the partner's settings. */
  deps: CoordinatorDeps;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS work (
        delivery_id TEXT PRIMARY KEY,
        conversion TEXT NOT NULL,
        position INTEGER NOT NULL,
        due_ms INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS work_by_conversion ON work (conversion, position);
      CREATE TABLE IF NOT EXISTS outcomes (at_ms INTEGER NOT NULL, ok INTEGER NOT NULL);
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    `);
    this.deps = defaultDeps(env);
  }

  /** Takes deliveries to make (a delivery already waiting keeps its place; an earlier due time wins). */
  async submit(partnerId: string, items: readonly WorkItem[]): Promise<void> {
    this.setMeta("partner_id", partnerId);
    for (const item of items) {
      this.sql.exec(
        `INSERT INTO work (delivery_id, conversion, position, due_ms) VALUES (?, ?, ?, ?)
         ON CONFLICT (delivery_id) DO UPDATE SET due_ms = min(due_ms, excluded.due_ms)`,
        item.delivery_id,
        item.conversion,
        item.position,
        item.due_ms,
      );
    }
    await this.wake(this.deps.now());
  }

  async status(): Promise<CoordinatorStatus> {
    const settings = await this.currentSettings();
    const pace = this.pace(settings?.pace ?? DEFAULT_PACE);
    const breaker = this.breaker(settings?.breaker ?? DEFAULT_BREAKER);
    const waiting = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM work").one().n;
    return {
      pace: {
        in_flight_limit: Math.floor(pace.limit),
        max_in_flight: settings?.pace.max_in_flight ?? DEFAULT_PACE.max_in_flight,
        paused_until: pace.paused_until_ms === null ? null : new Date(pace.paused_until_ms).toISOString(),
        changes: pace.changes,
      },
      breaker: {
        position: breaker.position,
        reason: breaker.reason,
        probe_at: breaker.probe_at_ms === null ? null : new Date(breaker.probe_at_ms).toISOString(),
      },
      waiting,
      transitions: this.getMeta<Transition[]>("transitions") ?? [],
    };
  }

  override async alarm(): Promise<void> {
    await this.pump();
  }

  private pumping: Promise<void> | null = null;

  /**
   * Runs what may run now, refilling as attempts finish, for up to PUMP_BUDGET_MS; then sets the
   * next alarm. One pump at a time per object: a second call waits for the running one.
   */
  async pump(): Promise<void> {
    if (this.pumping) return this.pumping;
    this.pumping = this.pumpOnce().finally(() => {
      this.pumping = null;
    });
    return this.pumping;
  }

  private async pumpOnce(): Promise<void> {
    const partnerId = this.getMeta<string>("partner_id");
    if (!partnerId) return;
    const settings = await this.currentSettings();
    if (!settings) {
      // The partner is gone: D1 has already failed its unfinished deliveries.
      this.sql.exec("DELETE FROM work");
      return;
    }
    const started = this.deps.now();
    const running = new Map<string, Promise<void>>();
    for (;;) {
      const now = this.deps.now();
      await this.advanceBreaker(partnerId, settings, now);
      const breaker = this.breaker(settings.breaker);
      if (breaker.position === "disabled") break;
      const room = Math.min(
        capacity(this.pace(settings.pace), settings.pace, running.size, now),
        breakerAllows(breaker, running.size),
      );
      if (room > 0 && now - started < PUMP_BUDGET_MS) {
        for (const item of this.heads(now, room, [...running.keys()])) {
          running.set(
            item.delivery_id,
            this.run(partnerId, item, settings).finally(() => running.delete(item.delivery_id)),
          );
        }
      }
      if (running.size === 0) break;
      await Promise.race(running.values());
    }
    await this.scheduleNext(settings);
  }

  /** The first unfinished delivery of each conversion that is due, soonest first. */
  private heads(nowMs: number, limit: number, running: readonly string[]): WorkItem[] {
    return this.sql
      .exec<WorkItem>(
        `SELECT w.delivery_id, w.conversion, w.position, w.due_ms FROM work w
         WHERE w.position = (SELECT min(x.position) FROM work x WHERE x.conversion = w.conversion)
           AND w.due_ms <= ? AND w.delivery_id NOT IN (SELECT value FROM json_each(?))
         ORDER BY w.due_ms LIMIT ?`,
        nowMs,
        JSON.stringify(running),
        limit,
      )
      .toArray();
  }

  private async run(partnerId: string, item: WorkItem, settings: CoordinatorSettings): Promise<void> {
    let report: AttemptReport;
    try {
      report = await this.deps.attempt(item.delivery_id);
    } catch (error) {
      console.error(
        JSON.stringify({
          message: "coordinator attempt failed; retrying",
          delivery_id: item.delivery_id,
          error: String(error),
        }),
      );
      this.sql.exec(
        "UPDATE work SET due_ms = ? WHERE delivery_id = ?",
        this.deps.now() + ERROR_RETRY_MS,
        item.delivery_id,
      );
      return;
    }
    const now = this.deps.now();
    if (report.sent) await this.learn(partnerId, settings, report.sent, now);
    if (report.retryInSeconds === null) {
      this.sql.exec("DELETE FROM work WHERE delivery_id = ?", item.delivery_id);
    } else {
      this.sql.exec(
        "UPDATE work SET due_ms = ? WHERE delivery_id = ?",
        now + report.retryInSeconds * 1000,
        item.delivery_id,
      );
    }
  }

  /** What an answer teaches: the pace adapts, the breaker's window counts it. */
  private async learn(
    partnerId: string,
    settings: CoordinatorSettings,
    sent: NonNullable<AttemptReport["sent"]>,
    nowMs: number,
  ): Promise<void> {
    const outcome =
      sent.outcome.kind === "response"
        ? {
            kind: "response" as const,
            status: sent.outcome.status,
            retry_after_seconds: sent.retryAfterSeconds,
            latency_ms: sent.latencyMs,
          }
        : { kind: sent.outcome.kind };
    this.setMeta("pace", afterSignal(this.pace(settings.pace), settings.pace, signalOf(outcome), nowMs));
    const ok = sent.outcome.kind === "response" && sent.outcome.status >= 200 && sent.outcome.status <= 299;
    this.sql.exec("INSERT INTO outcomes (at_ms, ok) VALUES (?, ?)", nowMs, ok ? 1 : 0);
    this.sql.exec("DELETE FROM outcomes WHERE at_ms < ?", nowMs - settings.breaker.window_seconds * 1000);
    const counts = this.sql
      .exec<{ attempts: number; failures: number }>(
        "SELECT count(*) AS attempts, coalesce(sum(1 - ok), 0) AS failures FROM outcomes",
      )
      .one();
    const { state, transition } = breakerAfterAttempt(
      this.breaker(settings.breaker),
      settings.breaker,
      ok,
      counts,
      nowMs,
    );
    this.setMeta("breaker", state);
    if (transition) {
      // A closed breaker starts its window afresh: the failures that opened it are history.
      if (transition.to === "closed") this.sql.exec("DELETE FROM outcomes");
      await this.record(partnerId, transition);
    }
  }

  private async advanceBreaker(partnerId: string, settings: CoordinatorSettings, nowMs: number): Promise<void> {
    const { state, transition } = withTime(this.breaker(settings.breaker), settings.breaker, nowMs);
    if (!transition) return;
    this.setMeta("breaker", state);
    await this.record(partnerId, transition);
    // Disabled: D1 parks the partner's deliveries (deps.transition), and enabling it resubmits them.
    if (transition.to === "disabled") this.sql.exec("DELETE FROM work");
  }

  private async record(partnerId: string, transition: Transition): Promise<void> {
    const transitions = [...(this.getMeta<Transition[]>("transitions") ?? []), transition].slice(-KEPT_TRANSITIONS);
    this.setMeta("transitions", transitions);
    await this.deps.transition(partnerId, transition);
  }

  private async scheduleNext(settings: CoordinatorSettings): Promise<void> {
    const next = this.sql
      .exec<{ due: number | null }>(
        `SELECT min(w.due_ms) AS due FROM work w
         WHERE w.position = (SELECT min(x.position) FROM work x WHERE x.conversion = w.conversion)`,
      )
      .one().due;
    if (next === null) return;
    const breaker = this.breaker(settings.breaker);
    const pace = this.pace(settings.pace);
    const at = Math.max(
      next,
      breaker.position === "open" ? (breaker.probe_at_ms ?? next) : next,
      pace.paused_until_ms ?? 0,
    );
    await this.ctx.storage.setAlarm(at);
  }

  private async wake(atMs: number): Promise<void> {
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > atMs) await this.ctx.storage.setAlarm(atMs);
  }

  private settingsCache: { value: CoordinatorSettings | null; atMs: number } | null = null;

  private async currentSettings(): Promise<CoordinatorSettings | null> {
    const partnerId = this.getMeta<string>("partner_id");
    if (!partnerId) return null;
    const now = this.deps.now();
    if (this.settingsCache && now - this.settingsCache.atMs < 30_000) return this.settingsCache.value;
    const value = await this.deps.settings(partnerId);
    this.settingsCache = { value, atMs: now };
    return value;
  }

  private pace(settings: PaceSettings): PaceState {
    return this.getMeta<PaceState>("pace") ?? initialPace(settings);
  }

  private breaker(settings: BreakerSettings): BreakerState {
    return this.getMeta<BreakerState>("breaker") ?? closedBreaker(settings);
  }

  private getMeta<T>(key: string): T | null {
    const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0];
    return row ? (JSON.parse(row.value) as T) : null;
  }

  private setMeta(key: string, value: unknown): void {
    this.sql.exec(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      JSON.stringify(value),
    );
  }
}

function defaultDeps(env: Env): CoordinatorDeps {
  const attemptDeps = (): AttemptDeps => {
    const config = configOf(env);
    return {
      db: env.DB,
      fetch: (input, init) => fetch(input, init),
      encryptionKey: config.ENCRYPTION_KEY,
      allowInsecurePartnerUrls: config.ALLOW_INSECURE_PARTNER_URLS,
      alert: async () => undefined,
    };
  };
  return {
    attempt: (deliveryId) => attemptDelivery(deliveryId, attemptDeps()),
    transition: async () => undefined,
    settings: async () => ({ pace: DEFAULT_PACE, breaker: DEFAULT_BREAKER }),
    now: () => Date.now(),
  };
}
