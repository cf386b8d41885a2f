/**
 * PartnerCoordinator: one per partner. It owns what only one place can know for a partner: the
 * order of each conversion's deliveries (the delivery of a conversion's next event waits until the
 * previous one is finished, or, for a coalescing partner, only the newest waiting state goes), how
 * many may be in flight at once and how many start per second (its pace, delivery/pace.ts), and
 * whether deliveries should wait at all (its breaker, delivery/breaker.ts). It makes the attempts
 * itself (delivery/attempt.ts), so a slow or failing partner only ever slows its own object. D1 stays the record of every delivery and attempt; the
 * object keeps its work list, the pace, the breaker and the window of recent outcomes in SQLite,
 * and its alarm runs the work: an object that restarts picks up where it was (its pace and window
 * as they were up to about a second before: see LEARNED_WRITE_INTERVAL_MS).
 *
 * Nothing of it is on the ingest path: deliveries reach it from the events consumer, which hands
 * over the ones it creates (queues/coordinator-handover.ts), and from the DELIVERIES queue's
 * consumer (what that could not hand over, replays, the stranded sweep, a partner enabled).
 */
import { DurableObject } from "cloudflare:workers";
import { alertTarget, raiseAlert } from "../alerts/alerts";
import { configOf } from "../config";
import { type AttemptDeps, type AttemptReport, attemptDelivery } from "../delivery/attempt";
import {
  type BreakerState,
  afterAttempt as breakerAfterAttempt,
  breakerAllows,
  closedBreaker,
  type Transition,
  withTime,
} from "../delivery/breaker";
import { countsOf, emptyWindow, type OutcomeWindow, windowOf, withOutcome } from "../delivery/breaker-window";
import { afterSignal, capacity, initialPace, type PaceSettings, type PaceState, signalOf } from "../delivery/pace";
import { type BreakerSettings, DEFAULT_BREAKER, DEFAULT_MAX_IN_FLIGHT, type DeliveryOrder } from "../domain/partner";
import type { ConversionStatus } from "../domain/postback";
import { logLine } from "../lib/log";
import { supersedeDeliveriesStatement } from "../storage/deliveries";
import { addAttemptCountsStatement } from "../storage/metrics";
import { partnerCoordination } from "../storage/partners";
import { recordTransition } from "./partner-health";

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
  /** The conversion's status after the delivery's event (what the partner will know once it is delivered). */
  status: ConversionStatus | null;
  /** 1 when the delivery was never attempted; 0 for one replayed or resumed (sent as the operator asked). */
  fresh: number;
};

/** What the answers taught: the pace, and the breaker's window of recent outcomes (one meta row). */
interface Learned {
  pace: PaceState;
  window: OutcomeWindow;
}

export interface CoordinatorSettings {
  order: DeliveryOrder;
  pace: PaceSettings;
  breaker: BreakerSettings;
}

export interface CoordinatorStatus {
  pace: {
    in_flight_limit: number;
    max_in_flight: number;
    max_per_second: number | null;
    paused_until: string | null;
    changes: PaceState["changes"];
  };
  breaker: { position: BreakerState["position"]; reason: string | null; probe_at: string | null };
  /** Deliveries the coordinator holds (waiting their turn, their retry, or the breaker). */
  waiting: number;
  transitions: Transition[];
}

/** How long one alarm keeps running attempts before it yields (and sets the next alarm). */
const PUMP_BUDGET_MS = 25_000;
/** An attempt that throws (D1 trouble, a bug) is taken again after this long. */
const ERROR_RETRY_MS = 30_000;
const KEPT_TRANSITIONS = 20;
/**
 * The `learned` row (pace and breaker window) is written at most this often: an answer changes it,
 * and writing it once per answer was the coordinator's largest cost (issue 16). An instance lost
 * between writes (evicted, crashed) loses at most this long of pace and window learning; the
 * breaker's position, its transitions and a Retry-After pause are never held back.
 */
const LEARNED_WRITE_INTERVAL_MS = 1000;
/**
 * The attempts' /metrics counts are added to D1 at most this often, summed (one row written per
 * write instead of one per attempt, issue 16). An instance lost between writes leaves at most this
 * long of attempts uncounted in /metrics; the attempts themselves are recorded in D1 as they end.
 */
const COUNTS_WRITE_INTERVAL_MS = 1000;

export interface CoordinatorDeps {
  /**
   * One attempt of the item's delivery (delivery/attempt.ts: a fresh one is not sent when the
   * partner already received a newer event of its conversion); `coalesce`: `{previous_status}`
   * renders what the partner last received of the conversion.
   */
  attempt(item: WorkItem, options: { coalesce: boolean }): Promise<AttemptReport>;
  /** Adds the summed /metrics counts of recorded attempts to D1 (storage/metrics.ts addAttemptCountsStatement). */
  addCounts(partnerId: string, counts: Readonly<Record<string, number>>): Promise<void>;
  /** Marks deliveries superseded in D1 (never sent: a newer state went, or had gone, instead). */
  supersede(deliveryIds: readonly string[], reason: string): Promise<void>;
  /** Told of every breaker transition (recorded and alerted by the caller). */
  transition(partnerId: string, transition: Transition): Promise<void>;
  settings(partnerId: string): Promise<CoordinatorSettings | null>;
  now(): number;
}

export class PartnerCoordinator extends DurableObject<Env> {
  private readonly sql: SqlStorage;
  /** Replaced in tests; by default the real attempt, D1 and the partner's settings. */
  deps: CoordinatorDeps;
  /** Deliveries whose attempt is running now, with their conversion (lost with the instance: a new one attempts them again, invariant 4). */
  private readonly inFlight = new Map<string, string>();
  /** The meta rows as stored (JSON text), read once: a value is written only when it changes. */
  private readonly metaCache = new Map<string, string | null>();
  /** What the answers taught since `learned` was last written (JSON text), or null when it is stored. */
  private unsavedLearned: string | null = null;
  /** When this instance last wrote `learned` (epoch ms); null before its first write. */
  private learnedSavedAtMs: number | null = null;
  /** The /metrics counts of the attempts recorded since the last write to D1 (see COUNTS_WRITE_INTERVAL_MS). */
  private unsavedCounts = new Map<string, number>();
  /** When this instance last added counts to D1 (epoch ms); null before its first write. */
  private countsSavedAtMs: number | null = null;
  /** When the last attempts started (epoch ms), for `max_per_second`. */
  private starts: number[] = [];
  /** Wakes a running pump when new work arrives. */
  private kick: (() => void) | null = null;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    ctx.storage.transactionSync(() => openCoordinatorSchema(this.sql));
    this.deps = defaultDeps(env);
  }

  /**
   * Takes deliveries to make (one already waiting keeps its place; an earlier due time wins). For
   * a coalescing partner, a conversion's older waiting deliveries are superseded by its newest.
   */
  async submit(partnerId: string, items: readonly WorkItem[]): Promise<void> {
    this.setMeta("partner_id", partnerId);
    for (const item of items) {
      this.sql.exec(
        `INSERT INTO work (delivery_id, conversion, position, due_ms, status, fresh) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (conversion, position, delivery_id) DO UPDATE SET due_ms = min(due_ms, excluded.due_ms)
         WHERE excluded.due_ms < work.due_ms`,
        item.delivery_id,
        item.conversion,
        item.position,
        item.due_ms,
        item.status,
        item.fresh,
      );
    }
    const settings = await this.currentSettings();
    if (settings?.order === "coalesce") {
      for (const conversion of new Set(items.map((item) => item.conversion))) await this.coalesce(conversion);
    }
    this.kick?.();
    await this.wake(this.deps.now());
  }

  async status(partnerId?: string): Promise<CoordinatorStatus> {
    if (partnerId && !this.getMeta<string>("partner_id")) this.setMeta("partner_id", partnerId);
    const settings = (await this.currentSettings()) ?? defaultSettings();
    const pace = this.pace(settings.pace);
    const breaker = this.breaker(settings.breaker);
    const waiting = this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM work").one().n;
    return {
      pace: {
        in_flight_limit: Math.floor(Math.min(pace.limit, settings.pace.max_in_flight)),
        max_in_flight: settings.pace.max_in_flight,
        max_per_second: settings.pace.max_per_second,
        paused_until: pace.paused_until_ms === null ? null : new Date(pace.paused_until_ms).toISOString(),
        changes: pace.changes,
      },
      breaker: {
        position: breaker.position,
        reason: breaker.reason,
        probe_at:
          breaker.position === "open" && breaker.probe_at_ms !== null
            ? new Date(breaker.probe_at_ms).toISOString()
            : null,
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
    let settings = await this.currentSettings();
    if (!settings) {
      // The partner is gone: its unfinished deliveries are failed when an attempt finds it missing.
      // Its attempts' counts still held are written now: no later pump would write them.
      this.sql.exec("DELETE FROM work");
      await this.saveCounts(partnerId, this.deps.now(), true);
      return;
    }
    await this.reportTransitions(partnerId);
    const started = this.deps.now();
    const running = new Map<string, Promise<void>>();
    for (;;) {
      // An operator's change (a PATCH clears the cache) applies from the next wave, not the next alarm.
      settings = (await this.currentSettings()) ?? settings;
      const now = this.deps.now();
      await this.advanceBreaker(partnerId, settings, now);
      const inBudget = now - started < PUMP_BUDGET_MS;
      const paceRoom = Math.min(
        capacity(this.pace(settings.pace), settings.pace, running.size, now),
        breakerAllows(this.breaker(settings.breaker), running.size),
      );
      const rate = this.rateRoom(settings.pace, now);
      const room = inBudget ? Math.min(paceRoom, rate.room) : 0;
      let startedNow = 0;
      if (room > 0) {
        for (const item of this.heads(now, room)) {
          startedNow++;
          this.inFlight.set(item.delivery_id, item.conversion);
          running.set(
            item.delivery_id,
            this.run(partnerId, item, settings).finally(() => {
              this.inFlight.delete(item.delivery_id);
              running.delete(item.delivery_id);
            }),
          );
        }
      }
      // Held back by the rate cap alone, with work that could start: wait for the next start.
      const rateNow = this.rateRoom(settings.pace, now);
      const rateBound = inBudget && paceRoom > startedNow && rateNow.room === 0;
      const waitForRate = rateBound && this.heads(now, 1).length > 0 ? rateNow.waitMs : null;
      if (running.size === 0 && waitForRate === null) break;
      const kicked = new Promise<void>((resolve) => {
        this.kick = resolve;
      });
      const waits: Promise<unknown>[] = [...running.values(), kicked];
      if (waitForRate !== null) waits.push(sleep(waitForRate));
      await Promise.race(waits);
      this.kick = null;
    }
    this.saveLearned(this.deps.now());
    await this.saveCounts(partnerId, this.deps.now());
    await this.scheduleNext(settings);
  }

  /**
   * Adds the unsaved attempt counts to D1 when COUNTS_WRITE_INTERVAL_MS has passed since the last
   * write; what waits is written by a later attempt, the pump's end or the alarm scheduleNext sets.
   * Counts D1 refused are kept for the next write. `atOnce`: whatever the interval (a pump that
   * finds its partner gone, after which none writes them).
   */
  private async saveCounts(partnerId: string, nowMs: number, atOnce = false): Promise<void> {
    if (this.unsavedCounts.size === 0) return;
    const recent = this.countsSavedAtMs !== null && nowMs - this.countsSavedAtMs < COUNTS_WRITE_INTERVAL_MS;
    if (recent && !atOnce) return;
    const counts = this.unsavedCounts;
    this.unsavedCounts = new Map();
    this.countsSavedAtMs = nowMs;
    try {
      await this.deps.addCounts(partnerId, Object.fromEntries(counts));
    } catch (error) {
      logLine("warn", {
        message: "attempt counts not written; keeping them",
        partner_id: partnerId,
        error: String(error),
      });
      for (const [key, value] of counts) this.unsavedCounts.set(key, (this.unsavedCounts.get(key) ?? 0) + value);
    }
  }

  /** How many attempts may start now under `max_per_second`, and how long until one more may. */
  private rateRoom(pace: PaceSettings, nowMs: number): { room: number; waitMs: number } {
    this.starts = this.starts.filter((at) => nowMs - at < 1000);
    if (pace.max_per_second === null) return { room: Number.POSITIVE_INFINITY, waitMs: 0 };
    const room = Math.max(0, pace.max_per_second - this.starts.length);
    const oldest = this.starts[0];
    return { room, waitMs: room > 0 || oldest === undefined ? 0 : Math.max(1, oldest + 1000 - nowMs) };
  }

  /**
   * The first unfinished delivery of each conversion that is due and has nothing in flight, soonest
   * first: a conversion's next delivery never starts while its previous one is still being sent.
   * Walks work_by_due from the soonest and stops at `limit`: the rows it reads are those it returns
   * and the due ones it passes over (later places of a conversion, conversions in flight), never
   * the whole list.
   */
  private heads(nowMs: number, limit: number): WorkItem[] {
    return this.sql
      .exec<WorkItem>(HEADS_SQL, nowMs, JSON.stringify([...new Set(this.inFlight.values())]), limit)
      .toArray();
  }

  private async run(partnerId: string, item: WorkItem, settings: CoordinatorSettings): Promise<void> {
    let report: AttemptReport;
    try {
      // The start counts for `max_per_second` at the time the attempt begins, read with no await
      // in between: time moves while the pump awaits, so the wave's own clock reading can be early.
      this.starts.push(this.deps.now());
      report = await this.deps.attempt(item, { coalesce: settings.order === "coalesce" });
    } catch (error) {
      logLine("error", {
        message: "coordinator attempt failed; retrying",
        partner_id: partnerId,
        delivery_id: item.delivery_id,
        error: String(error),
      });
      this.sql.exec(`UPDATE work SET due_ms = ? WHERE ${WORK_KEY}`, this.deps.now() + ERROR_RETRY_MS, ...workKey(item));
      return;
    }
    // A first delivery of an older event than one the partner already has: sending it now would
    // tell the partner something older than what it knows. (A replay is sent as asked.)
    if (report.newerDelivered) {
      await this.supersede([item], "a newer event of this conversion had already been delivered");
      return;
    }
    const now = this.deps.now();
    for (const [key, value] of Object.entries(report.counts ?? {})) {
      this.unsavedCounts.set(key, (this.unsavedCounts.get(key) ?? 0) + value);
    }
    if (report.sent) await this.learn(partnerId, settings, report.sent, now);
    await this.saveCounts(partnerId, now);
    if (report.retryInSeconds === null) {
      this.sql.exec(`DELETE FROM work WHERE ${WORK_KEY}`, ...workKey(item));
      return;
    }
    this.sql.exec(
      `UPDATE work SET due_ms = ?, fresh = 0 WHERE ${WORK_KEY}`,
      now + report.retryInSeconds * 1000,
      ...workKey(item),
    );
    // A coalescing partner gets the newest state next rather than this one again.
    if (settings.order === "coalesce") await this.coalesce(item.conversion);
  }

  /** Supersedes a conversion's waiting deliveries older than its newest (none in flight is touched). */
  private async coalesce(conversion: string): Promise<void> {
    const rows = this.sql
      .exec<{ delivery_id: string; conversion: string; position: number; newest: string }>(
        `SELECT w.delivery_id, w.conversion, w.position,
           (SELECT n.delivery_id FROM work n WHERE n.conversion = w.conversion ORDER BY n.position DESC LIMIT 1) AS newest
         FROM work w
         WHERE w.conversion = ? AND w.position < (SELECT max(m.position) FROM work m WHERE m.conversion = w.conversion)
           AND w.delivery_id NOT IN (SELECT value FROM json_each(?))`,
        conversion,
        JSON.stringify([...this.inFlight.keys()]),
      )
      .toArray();
    const newest = rows[0]?.newest;
    if (!newest) return;
    await this.supersede(rows, `superseded by ${newest}: a newer state of the conversion was waiting (coalesce)`);
  }

  /** Marks deliveries superseded in D1 first, then forgets them: a failed write leaves them waiting. */
  private async supersede(items: readonly WorkKey[], reason: string): Promise<void> {
    if (items.length === 0) return;
    await this.deps.supersede(
      items.map((item) => item.delivery_id),
      reason,
    );
    for (const item of items) this.sql.exec(`DELETE FROM work WHERE ${WORK_KEY}`, ...workKey(item));
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
    const before = this.pace(settings.pace);
    const pace = afterSignal(before, settings.pace, signalOf(outcome), nowMs);
    const ok = sent.outcome.kind === "response" && sent.outcome.status >= 200 && sent.outcome.status <= 299;
    const seconds = settings.breaker.window_seconds;
    let window = withOutcome(this.outcomeWindow(seconds), seconds, ok, nowMs);
    const { state, transition } = breakerAfterAttempt(
      this.breaker(settings.breaker),
      settings.breaker,
      ok,
      countsOf(window),
      nowMs,
    );
    // A closed breaker starts its window afresh: the failures that opened it are history.
    if (transition?.to === "closed") window = emptyWindow(seconds);
    // A transition is stored at once, with the window that made it, and so is a pause the partner
    // asked for (Retry-After): a restart must not undo either and send to a partner told to wait.
    const paused = pace.paused_until_ms !== before.paused_until_ms;
    this.setLearned({ pace, window }, nowMs, transition !== null || paused);
    this.setMeta("breaker", state);
    if (transition) await this.record(partnerId, transition);
  }

  /**
   * The pace and the breaker's window, one meta row, as the answers left it (maybe not written yet:
   * see saveLearned). An object written by earlier code has a `pace` row and an `outcomes` table
   * instead: read until the first write of `learned`, which removes them.
   */
  private learned(): Learned | null {
    const text = this.unsavedLearned ?? this.metaText("learned");
    return text === null ? null : (JSON.parse(text) as Learned);
  }

  private outcomeWindow(windowSeconds: number): OutcomeWindow {
    const learned = this.learned();
    if (learned) return learned.window;
    const outcomes = this.sql.exec<{ at_ms: number; ok: number }>("SELECT at_ms, ok FROM outcomes").toArray();
    return windowOf(outcomes, windowSeconds);
  }

  /** Keeps what the answers taught; writes it now when `atOnce`, or when it is due (saveLearned). */
  private setLearned(learned: Learned, nowMs: number, atOnce: boolean): void {
    const text = JSON.stringify(learned);
    this.unsavedLearned = text === this.metaText("learned") ? null : text;
    this.saveLearned(nowMs, atOnce);
  }

  /**
   * Writes `learned` when it changed and LEARNED_WRITE_INTERVAL_MS has passed since this instance
   * last wrote it (or `atOnce`). What waits is written by a later answer, the pump's end, or the
   * alarm scheduleNext sets for it, so the stored row is never more than about that interval of
   * answers behind.
   */
  private saveLearned(nowMs: number, atOnce = false): void {
    const text = this.unsavedLearned;
    if (text === null) return;
    const recent = this.learnedSavedAtMs !== null && nowMs - this.learnedSavedAtMs < LEARNED_WRITE_INTERVAL_MS;
    if (recent && !atOnce) return;
    const first = this.metaText("learned") === null;
    this.setMetaText("learned", text);
    this.unsavedLearned = null;
    this.learnedSavedAtMs = nowMs;
    if (first) {
      this.sql.exec("DELETE FROM outcomes");
      this.sql.exec("DELETE FROM meta WHERE key = 'pace'");
      this.metaCache.delete("pace");
    }
  }

  private async advanceBreaker(partnerId: string, settings: CoordinatorSettings, nowMs: number): Promise<void> {
    const { state, transition } = withTime(this.breaker(settings.breaker), settings.breaker, nowMs);
    if (!transition) return;
    this.saveLearned(nowMs, true);
    this.setMeta("breaker", state);
    await this.record(partnerId, transition);
    if (transition.to === "disabled") {
      // D1 now has the partner disabled and its deliveries parked (deps.transition); enabling it
      // resubmits them, to a breaker that starts closed with an empty window.
      this.sql.exec("DELETE FROM work");
      this.setLearned(
        { pace: this.pace(settings.pace), window: emptyWindow(settings.breaker.window_seconds) },
        nowMs,
        true,
      );
      this.setMeta("breaker", closedBreaker(settings.breaker));
      this.settingsCache = null;
    }
  }

  /**
   * Keeps the transition, then tells D1 (and the operator). A transition D1 could not take stays
   * in `unreported` and is told again by the next pump, in order: none is lost to a D1 outage.
   */
  private async record(partnerId: string, transition: Transition): Promise<void> {
    const transitions = [...(this.getMeta<Transition[]>("transitions") ?? []), transition].slice(-KEPT_TRANSITIONS);
    this.setMeta("transitions", transitions);
    this.setMeta("unreported", [...(this.getMeta<Transition[]>("unreported") ?? []), transition]);
    await this.reportTransitions(partnerId);
  }

  private async reportTransitions(partnerId: string): Promise<void> {
    const pending = this.getMeta<Transition[]>("unreported") ?? [];
    while (pending.length > 0) {
      const [next] = pending;
      if (!next) break;
      try {
        await this.deps.transition(partnerId, next);
      } catch (error) {
        logLine("error", {
          message: "breaker transition not recorded yet; retrying",
          partner_id: partnerId,
          error: String(error),
        });
        return;
      }
      pending.shift();
      this.setMeta("unreported", pending);
    }
  }

  private async scheduleNext(settings: CoordinatorSettings): Promise<void> {
    const next =
      this.sql
        .exec<{ due: number }>(
          `SELECT w.due_ms AS due FROM work w INDEXED BY work_by_due
           WHERE NOT EXISTS (SELECT 1 FROM work x WHERE x.conversion = w.conversion AND x.position < w.position)
           ORDER BY w.due_ms LIMIT 1`,
        )
        .toArray()[0]?.due ?? null;
    const now = this.deps.now();
    // Transitions D1 has not taken yet are told again soon, work or none; learning not written
    // yet is written once it is due.
    const unreported = (this.getMeta<Transition[]>("unreported") ?? []).length > 0;
    const saveAt = Math.min(
      this.unsavedLearned === null ? Infinity : (this.learnedSavedAtMs ?? now) + LEARNED_WRITE_INTERVAL_MS,
      this.unsavedCounts.size === 0 ? Infinity : (this.countsSavedAtMs ?? now) + COUNTS_WRITE_INTERVAL_MS,
    );
    if (next === null) {
      const soonest = Math.min(unreported ? now + ERROR_RETRY_MS : Infinity, saveAt);
      if (Number.isFinite(soonest)) await this.ctx.storage.setAlarm(soonest);
      return;
    }
    const breaker = this.breaker(settings.breaker);
    const pace = this.pace(settings.pace);
    const at = Math.max(
      next,
      breaker.position === "open" ? (breaker.probe_at_ms ?? next) : next,
      pace.paused_until_ms ?? 0,
      // Stopped by the budget or the rate cap with work due: carry on at once (the alarm runs soon).
      now,
    );
    await this.ctx.storage.setAlarm(Math.min(at, saveAt));
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

  /** Forgets the cached settings, so the next pump reads the partner's as saved (its API calls it). */
  async settingsChanged(): Promise<void> {
    this.settingsCache = null;
  }

  private pace(settings: PaceSettings): PaceState {
    return this.learned()?.pace ?? this.getMeta<PaceState>("pace") ?? initialPace(settings);
  }

  private breaker(settings: BreakerSettings): BreakerState {
    return this.getMeta<BreakerState>("breaker") ?? closedBreaker(settings);
  }

  private getMeta<T>(key: string): T | null {
    const text = this.metaText(key);
    return text === null ? null : (JSON.parse(text) as T);
  }

  private metaText(key: string): string | null {
    if (!this.metaCache.has(key)) {
      const row = this.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = ?", key).toArray()[0];
      this.metaCache.set(key, row?.value ?? null);
    }
    return this.metaCache.get(key) ?? null;
  }

  /** Writes the value only when it differs from the stored one (this object is the only writer of its storage). */
  private setMeta(key: string, value: unknown): void {
    this.setMetaText(key, JSON.stringify(value));
  }

  private setMetaText(key: string, text: string): void {
    if (this.metaText(key) === text) return;
    this.sql.exec(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      text,
    );
    this.metaCache.set(key, text);
  }
}

/**
 * The heads query (bound: now, the conversions in flight as a JSON array, the limit): exported for
 * test/coordinator.cost.test.ts, which counts the rows it reads.
 */
export const HEADS_SQL = `SELECT w.delivery_id, w.conversion, w.position, w.due_ms, w.status, w.fresh
  FROM work w INDEXED BY work_by_due
  WHERE w.due_ms <= ?
    AND NOT EXISTS (SELECT 1 FROM work x WHERE x.conversion = w.conversion AND x.position < w.position)
    AND w.conversion NOT IN (SELECT value FROM json_each(?))
  ORDER BY w.due_ms LIMIT ?`;

/** Where a delivery sits in `work`: its primary key. */
type WorkKey = Pick<WorkItem, "conversion" | "position" | "delivery_id">;
const WORK_KEY = "conversion = ? AND position = ? AND delivery_id = ?";
function workKey(item: WorkKey): [string, number, string] {
  return [item.conversion, item.position, item.delivery_id];
}

/**
 * The coordinator's tables. `work` is WITHOUT ROWID, keyed by what it is looked up by, so a row
 * costs one row written (plus work_by_due) where a rowid table with a text key and a second index
 * cost three. A delivery's conversion and place never change, so (conversion, position,
 * delivery_id) is as unique as the delivery id. An object written by earlier code has the rowid
 * table: it is copied over once, in the constructor's transaction. What the partner last received
 * of each conversion is D1's to say (the attempt reads it): earlier code's `delivered` table, one
 * row written per delivered attempt (issue 16), is dropped.
 */
export function openCoordinatorSchema(sql: SqlStorage): void {
  const work = sql
    .exec<{ sql: string }>("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'work'")
    .toArray()[0]?.sql;
  const old = work !== undefined && !work.includes("WITHOUT ROWID");
  if (old) sql.exec("ALTER TABLE work RENAME TO work_rowid; DROP INDEX IF EXISTS work_by_conversion;");
  sql.exec(`
    CREATE TABLE IF NOT EXISTS work (
      delivery_id TEXT NOT NULL,
      conversion TEXT NOT NULL,
      position INTEGER NOT NULL,
      due_ms INTEGER NOT NULL,
      status TEXT,
      fresh INTEGER NOT NULL DEFAULT 1,
      PRIMARY KEY (conversion, position, delivery_id)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS work_by_due ON work (due_ms);
    CREATE TABLE IF NOT EXISTS outcomes (at_ms INTEGER NOT NULL, ok INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    DROP TABLE IF EXISTS delivered;
    DROP TABLE IF EXISTS delivered_rowid;
  `);
  if (old) {
    sql.exec(`INSERT INTO work (delivery_id, conversion, position, due_ms, status, fresh)
              SELECT delivery_id, conversion, position, due_ms, status, fresh FROM work_rowid WHERE true
              ON CONFLICT DO NOTHING;
              DROP TABLE work_rowid;`);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function defaultSettings(): CoordinatorSettings {
  return {
    order: "ordered",
    pace: { max_in_flight: DEFAULT_MAX_IN_FLIGHT, max_per_second: null },
    breaker: DEFAULT_BREAKER,
  };
}

function defaultDeps(env: Env): CoordinatorDeps {
  const attemptDeps = (): AttemptDeps => {
    const config = configOf(env);
    return {
      db: env.DB,
      fetch: (input, init) => fetch(input, init),
      encryptionKey: config.ENCRYPTION_KEY,
      allowInsecurePartnerUrls: config.ALLOW_INSECURE_PARTNER_URLS,
      alert: (alert) => raiseAlert(env.DB, alertTarget(config), { type: "partner_disabled", ...alert }),
    };
  };
  return {
    // The coordinator adds the attempts' /metrics counts itself, summed (saveCounts).
    attempt: (item, { coalesce }) =>
      attemptDelivery(item.delivery_id, attemptDeps(), { coalesce, fresh: item.fresh === 1 }),
    addCounts: async (partnerId, counts) => {
      await addAttemptCountsStatement(env.DB, partnerId, counts).run();
    },
    supersede: async (ids, reason) => {
      await env.DB.batch([supersedeDeliveriesStatement(env.DB, ids, reason, new Date().toISOString())]);
    },
    transition: (partnerId, transition) => recordTransition(env.DB, alertTarget(configOf(env)), partnerId, transition),
    settings: (partnerId) => partnerCoordination(env.DB, partnerId),
    now: () => Date.now(),
  };
}
