/**
 * The partner coordinator (a Durable Object per partner): each conversion's deliveries in order,
 * other conversions in parallel; never more in flight than the pace allows; paused by Retry-After;
 * the breaker opening on failure density, probing after its cool-down and closing; its state
 * surviving the object's restart; coalescing, superseding an older event the partner must not
 * hear after a newer one, the rate cap, and the breaker giving up. Its attempts are scripted here
 * (the real attempt is delivery/attempt.ts: test/delivery.attempt.test.ts), with a clock the test
 * moves: a year ahead of the runtime's, so the object's own alarms never fire on their own.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CoordinatorDeps, PartnerCoordinator, WorkItem } from "../src/coordinator/partner-coordinator";
import type { AttemptReport } from "../src/delivery/attempt";
import { countsOf, type OutcomeWindow } from "../src/delivery/breaker-window";
import { DEFAULT_BREAKER } from "../src/domain/partner";
import { eventually, uniqueId } from "./support/helpers";
import { countSqlWrites } from "./support/sql-writes";

type Answer = { status: number; latencyMs?: number; retryAfter?: number } | "timeout";

interface Script {
  /** Answer for each attempt of a delivery, in order (the last repeats). */
  answers: (deliveryId: string, attempt: number) => Answer;
  log: { id: string; at: number; inFlight: number }[];
  clock: { now: number };
  transitions: { to: string; reason: string }[];
  superseded: { id: string; reason: string }[];
  /** What `{previous_status}` each attempt rendered (undefined: the payload's own). */
  previousStatus: Map<string, string | null | undefined>;
  /** What D1 says the partner last received of each conversion, as the real attempt reads it. */
  delivered: Map<string, { position: number; status: string | null }>;
  order: "ordered" | "coalesce";
  /** An attempt of a delivery named here waits for its promise before answering. */
  gates: Map<string, Promise<void>>;
  /** Each write of attempt counts to D1 (addCounts), in order; `refuseCounts` makes the next ones fail. */
  counted: Record<string, number>[];
  refuseCounts: boolean;
}

interface ScriptOptions {
  max_per_second?: number;
  disable_after_seconds?: number;
  /** The clock moves with the runtime's (a year ahead), for a pump that waits in real time. */
  realTime?: boolean;
}

function scripted(
  answers: Script["answers"],
  max_in_flight = 4,
  options: ScriptOptions = {},
): { deps: CoordinatorDeps; script: Script } {
  const realStart = Date.now();
  const script: Script = {
    gates: new Map(),
    answers,
    log: [],
    clock: { now: Date.now() + 365 * 86_400_000 },
    transitions: [],
    superseded: [],
    previousStatus: new Map(),
    delivered: new Map(),
    order: "ordered",
    counted: [],
    refuseCounts: false,
  };
  const attempts = new Map<string, number>();
  let inFlight = 0;
  const deps: CoordinatorDeps = {
    now: () => (options.realTime ? script.clock.now + (Date.now() - realStart) : script.clock.now),
    supersede: async (ids, reason) => {
      script.superseded.push(...ids.map((id) => ({ id, reason })));
    },
    settings: async () => ({
      order: script.order,
      pace: { max_in_flight, max_per_second: options.max_per_second ?? null },
      breaker: {
        ...DEFAULT_BREAKER,
        min_attempts: 4,
        failure_percent: 75,
        cooldown_seconds: 60,
        ...(options.disable_after_seconds ? { disable_after_seconds: options.disable_after_seconds } : {}),
      },
    }),
    transition: async (_partner, transition) => {
      script.transitions.push({ to: transition.to, reason: transition.reason });
    },
    addCounts: async (_partner, counts) => {
      if (script.refuseCounts) throw new Error("D1 is down");
      script.counted.push({ ...counts });
    },
    attempt: async (item, options): Promise<AttemptReport> => {
      const id = item.delivery_id;
      // As the real attempt does (delivery/attempt.ts): a first delivery older than what the
      // partner received is not sent; a coalescing partner's {previous_status} is what it received.
      const last = script.delivered.get(item.conversion);
      if (item.fresh === 1 && last && last.position > item.position) {
        return { retryInSeconds: null, sent: null, newerDelivered: true };
      }
      script.previousStatus.set(id, options.coalesce ? (last?.status ?? null) : undefined);
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      inFlight++;
      script.log.push({ id, at: deps.now(), inFlight });
      await script.gates.get(id);
      // Let the other attempts of the wave start before this one answers.
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      const answer = script.answers(id, n);
      // What the real attempt reports of the attempt it recorded, for the coordinator to add up.
      const counts = { [JSON.stringify(["attempts", answer === "timeout" ? "timeout" : String(answer.status)])]: 1 };
      if (answer === "timeout")
        return {
          retryInSeconds: 5,
          sent: { outcome: { kind: "timeout" }, latencyMs: 10_000, retryAfterSeconds: null },
          counts,
        };
      const ok = answer.status >= 200 && answer.status <= 299;
      if (ok && (last?.position ?? -1) <= item.position) {
        script.delivered.set(item.conversion, { position: item.position, status: item.status });
      }
      return {
        retryInSeconds: ok ? null : (answer.retryAfter ?? 5),
        sent: {
          outcome: {
            kind: "response",
            status: answer.status,
            retryAfter: answer.retryAfter === undefined ? null : String(answer.retryAfter),
          },
          latencyMs: answer.latencyMs ?? 20,
          retryAfterSeconds: answer.retryAfter ?? null,
        },
        counts,
      };
    },
  };
  return { deps, script };
}

function coordinator() {
  return env.COORDINATORS.getByName(uniqueId("ptn"));
}

async function withDeps(stub: DurableObjectStub<PartnerCoordinator>, deps: CoordinatorDeps) {
  await runInDurableObject(stub, (instance: PartnerCoordinator) => {
    instance.deps = deps;
  });
}

const item = (
  id: string,
  conversion: string,
  position: number,
  due_ms = 0,
  extra: Partial<Pick<WorkItem, "status" | "fresh">> = {},
): WorkItem => ({
  delivery_id: id,
  conversion,
  position,
  due_ms,
  status: "approved",
  fresh: 1,
  ...extra,
});

/** Runs the alarm until nothing is due at the script's clock (moving nothing). */
async function drain(stub: DurableObjectStub<PartnerCoordinator>) {
  for (let i = 0; i < 20; i++) {
    const ran = await runDurableObjectAlarm(stub);
    if (!ran) return;
  }
}

describe("order per conversion", () => {
  it("sends a conversion's next event only after its previous one is finished, other conversions alongside", async () => {
    const stub = coordinator();
    // a1 fails twice before it is delivered; a2 and a3 must wait for it; b1 goes meanwhile.
    const { deps, script } = scripted((id, n) => (id === "a1" && n <= 2 ? { status: 503 } : { status: 200 }));
    await withDeps(stub, deps);
    await stub.submit("ptn_order", [item("a2", "A", 2), item("a1", "A", 1), item("a3", "A", 3), item("b1", "B", 1)]);
    await drain(stub);
    expect(script.log.map((l) => l.id)).toEqual(["a1", "b1"]);
    // The retry is due 5 s later.
    script.clock.now += 5_000;
    await stub.pump();
    script.clock.now += 5_000;
    await stub.pump();
    expect(script.log.map((l) => l.id)).toEqual(["a1", "b1", "a1", "a1", "a2", "a3"]);
    expect((await stub.status()).waiting).toBe(0);
  });
});

describe("pace", () => {
  it("never has more in flight than the limit, which grows with fast answers up to the cap", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 200, latencyMs: 30 }), 4);
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_pace",
      Array.from({ length: 40 }, (_, i) => item(`d${i}`, `c${i}`, 1)),
    );
    await drain(stub);
    expect(script.log).toHaveLength(40);
    expect(Math.max(...script.log.map((l) => l.inFlight))).toBeLessThanOrEqual(4);
    // It started at 2 and grew.
    expect(script.log[0]?.inFlight).toBeLessThanOrEqual(2);
    const status = await stub.status();
    expect(status.pace.in_flight_limit).toBe(4);
    expect(status.pace.changes.map((c) => c.reason)).toContain("fast 2xx answers");
  });

  it("halves on 5xx and pauses for a Retry-After, then carries on", async () => {
    const stub = coordinator();
    const { deps, script } = scripted((id, n) =>
      id === "t1" && n === 1 ? { status: 429, retryAfter: 30 } : { status: 200 },
    );
    await withDeps(stub, deps);
    await stub.submit("ptn_throttled", [item("t1", "T", 1)]);
    await drain(stub);
    await stub.submit("ptn_throttled", [item("u1", "U", 1, script.clock.now)]);
    await drain(stub);
    // Paused: nothing is attempted for 30 s, not even the other conversion's delivery.
    expect(script.log.map((l) => l.id)).toEqual(["t1"]);
    let status = await stub.status();
    expect(status.pace.paused_until).toBe(new Date(script.clock.now + 30_000).toISOString());
    expect(status.pace.changes.at(-1)?.reason).toBe("throttled, Retry-After: 30 s");
    script.clock.now += 30_000;
    await stub.pump();
    expect(script.log.map((l) => l.id).sort()).toEqual(["t1", "t1", "u1"]);
    status = await stub.status();
    expect(status.waiting).toBe(0);
  });
});

describe("breaker", () => {
  it("opens on failure density, probes after the cool-down, and closes on the probe's success", async () => {
    const stub = coordinator();
    let healthy = false;
    const { deps, script } = scripted(() => (healthy ? { status: 200 } : { status: 500 }), 1);
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_breaker",
      Array.from({ length: 6 }, (_, i) => item(`f${i}`, `c${i}`, 1)),
    );
    // Four failures (one at a time: the limit halves to 1) open it; the rest wait.
    for (let i = 0; i < 6; i++) {
      await stub.pump();
      script.clock.now += 1_000;
    }
    expect(script.log).toHaveLength(4);
    let status = await stub.status();
    expect(status.breaker.position).toBe("open");
    expect(status.breaker.reason).toBe("4 of 4 attempts failed in 72 h (100 %, the limit is 75 %)");
    expect(script.transitions.map((t) => t.to)).toEqual(["open"]);
    expect(status.waiting).toBe(6);
    // After the cool-down: one probe, which fails: open again, for twice as long.
    script.clock.now += 60_000;
    await stub.pump();
    expect(script.log).toHaveLength(5);
    expect(script.transitions.map((t) => t.to)).toEqual(["open", "half_open", "open"]);
    // The partner recovers; the next probe succeeds, the breaker closes, everything waiting goes.
    healthy = true;
    script.clock.now += 120_000;
    await stub.pump();
    status = await stub.status();
    expect(status.breaker.position).toBe("closed");
    expect(script.transitions.map((t) => t.to)).toEqual(["open", "half_open", "open", "half_open", "closed"]);
    await drain(stub);
    script.clock.now += 5_000;
    await stub.pump();
    expect((await stub.status()).waiting).toBe(0);
  });
});

describe("restarts", () => {
  it("keeps its work, pace and breaker across a new instance", async () => {
    const id = uniqueId("ptn");
    const first = env.COORDINATORS.getByName(id);
    const { deps } = scripted(() => ({ status: 500 }));
    await withDeps(first, deps);
    await first.submit("ptn_restart", [item("r1", "R", 1), item("r2", "R", 2)]);
    await drain(first);
    const before = await first.status();
    // A new instance of the same object reads everything back from its SQLite.
    await runInDurableObject(first, async (_instance, state) => {
      const rows = state.storage.sql.exec("SELECT delivery_id FROM work ORDER BY position").toArray();
      expect(rows).toEqual([{ delivery_id: "r1" }, { delivery_id: "r2" }]);
    });
    expect(before.pace.changes.at(-1)?.reason).toBe("HTTP 500");
  });
});

describe("writing what the answers taught", () => {
  /** The stored `learned` row's window (what a new instance would start from), counted. */
  function storedWindow(stub: DurableObjectStub<PartnerCoordinator>) {
    return runInDurableObject(stub, (_instance, state) => {
      const row = state.storage.sql
        .exec<{ value: string }>("SELECT value FROM meta WHERE key = 'learned'")
        .toArray()[0];
      return row ? countsOf((JSON.parse(row.value) as { window: OutcomeWindow }).window) : null;
    });
  }

  it("writes the pace and window at most once a second, however many answers come, and catches up after it", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 200 }));
    await withDeps(stub, deps);
    const writes = await runInDurableObject(stub, (_instance, state) => countSqlWrites(state));
    const learnedWrites = () =>
      writes().filter((write) => write.sql.startsWith("INSERT INTO meta") && write.bindings[0] === "learned").length;
    await stub.submit(
      "ptn_learned",
      Array.from({ length: 40 }, (_, i) => item(`l${i}`, `c${i}`, 1)),
    );
    await drain(stub);
    expect(script.log).toHaveLength(40);
    // All within a second (the script's clock stands still): the first answer is written, the rest wait.
    expect(learnedWrites()).toBe(1);
    expect(await storedWindow(stub)).toEqual({ attempts: 1, failures: 0 });
    // A second later, the alarm the pump left writes them.
    script.clock.now += 1_000;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(learnedWrites()).toBe(2);
    expect(await storedWindow(stub)).toEqual({ attempts: 40, failures: 0 });
  });

  /** Every count written to D1, summed by key. */
  function totals(counted: Record<string, number>[]): Record<string, number> {
    const sum: Record<string, number> = {};
    for (const counts of counted) for (const [key, value] of Object.entries(counts)) sum[key] = (sum[key] ?? 0) + value;
    return sum;
  }

  it("adds the attempts' /metrics counts to D1 at most once a second, summed, and every one of them", async () => {
    const stub = coordinator();
    const { deps, script } = scripted((id) => ({ status: id.endsWith("7") ? 503 : 200 }));
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_counts",
      Array.from({ length: 40 }, (_, i) => item(`m${i}`, `c${i}`, 1)),
    );
    await drain(stub);
    expect(script.log.length).toBeGreaterThanOrEqual(40);
    // Within one second of the script's clock: the first attempt's counts are written, the rest wait.
    expect(script.counted).toHaveLength(1);
    script.clock.now += 1_000;
    expect(await runDurableObjectAlarm(stub)).toBe(true);
    expect(script.counted).toHaveLength(2);
    const ok = JSON.stringify(["attempts", "200"]);
    const failed = JSON.stringify(["attempts", "503"]);
    expect(totals(script.counted)).toEqual({ [ok]: 36, [failed]: script.log.length - 36 });
  });

  it("keeps the counts D1 refused and writes them with the next ones", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 200 }));
    await withDeps(stub, deps);
    script.refuseCounts = true;
    await stub.submit("ptn_counts_refused", [item("r1", "c1", 1), item("r2", "c2", 1)]);
    await drain(stub);
    expect(script.counted).toEqual([]);
    script.refuseCounts = false;
    await stub.submit("ptn_counts_refused", [item("r3", "c3", 1)]);
    script.clock.now += 1_000;
    await drain(stub);
    expect(totals(script.counted)).toEqual({ [JSON.stringify(["attempts", "200"])]: 3 });
  });

  it("writes the counts it holds when it finds its partner deleted", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 200 }));
    await withDeps(stub, deps);
    await stub.submit("ptn_counts_deleted", [item("d1", "c1", 1), item("d2", "c2", 1), item("d3", "c3", 1)]);
    await drain(stub);
    // The first attempt's counts are written; the others wait for the next second's write.
    expect(script.counted).toHaveLength(1);
    // The partner is deleted (nothing tells its coordinator), and the settings it read expire
    // before the wake-up that writes the counts (the cache is 30 s, read at a pump's start).
    deps.settings = async () => null;
    script.clock.now += 30_000;
    await drain(stub);
    expect(totals(script.counted)).toEqual({ [JSON.stringify(["attempts", "200"])]: 3 });
  });

  it("writes a breaker opening at once, with the window that opened it", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 500 }), 1);
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_learned_open",
      Array.from({ length: 6 }, (_, i) => item(`o${i}`, `c${i}`, 1)),
    );
    await stub.pump();
    // Four failures within the same millisecond: the fourth opens the breaker.
    expect(script.log).toHaveLength(4);
    expect(script.transitions.map((t) => t.to)).toEqual(["open"]);
    const breaker = await runInDurableObject(stub, (_instance, state) =>
      state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'breaker'").one(),
    );
    expect(JSON.parse(breaker.value)).toMatchObject({ position: "open" });
    expect(await storedWindow(stub)).toEqual({ attempts: 4, failures: 4 });
  });
  it("writes a Retry-After pause at once: a new instance must not send during it", async () => {
    const stub = coordinator();
    // Two answers within the same second: a 200 (written, the first), then a 429 asking for an hour.
    const { deps, script } = scripted((id) => (id === "p2" ? { status: 429, retryAfter: 3600 } : { status: 200 }));
    await withDeps(stub, deps);
    await stub.submit("ptn_learned_pause", [item("p1", "P1", 1)]);
    await drain(stub);
    await stub.submit("ptn_learned_pause", [item("p2", "P2", 1, script.clock.now)]);
    await drain(stub);
    expect(script.log.map((l) => l.id)).toEqual(["p1", "p2"]);
    // What a new instance (eviction, a deploy) would start from: the pause must be there.
    const stored = await runInDurableObject(stub, (_instance, state) => {
      const row = state.storage.sql.exec<{ value: string }>("SELECT value FROM meta WHERE key = 'learned'").one();
      return JSON.parse(row.value) as { pace: { paused_until_ms: number | null } };
    });
    expect(stored.pace.paused_until_ms).toBe(script.clock.now + 3_600_000);
  });
});

describe("coalescing", () => {
  it("sends only the newest waiting state, with {previous_status} the last one the partner received", async () => {
    const stub = coordinator();
    let up = true;
    const { deps, script } = scripted(() => (up ? { status: 200 } : { status: 503 }));
    script.order = "coalesce";
    await withDeps(stub, deps);
    await stub.submit("ptn_coalesce", [item("k1", "K", 1, 0, { status: "pending" })]);
    await drain(stub);
    // The partner goes down: the approval fails and waits for its retry; then a reversal comes.
    up = false;
    await stub.submit("ptn_coalesce", [item("k2", "K", 2, 0, { status: "approved" })]);
    await drain(stub);
    await stub.submit("ptn_coalesce", [item("k3", "K", 3, 0, { status: "reversed" })]);
    expect(script.superseded).toEqual([
      { id: "k2", reason: "superseded by k3: a newer state of the conversion was waiting (coalesce)" },
    ]);
    up = true;
    script.clock.now += 5_000;
    await stub.pump();
    expect(script.log.map((l) => l.id)).toEqual(["k1", "k2", "k3"]);
    // k3 tells the partner it last knew "pending": it never received the approval.
    expect(script.previousStatus.get("k3")).toBe("pending");
    expect((await stub.status()).waiting).toBe(0);
  });

  it("leaves the payload's own {previous_status} to an ordered partner", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 200 }));
    await withDeps(stub, deps);
    await stub.submit("ptn_ordered", [item("o1", "O", 1), item("o2", "O", 2)]);
    await drain(stub);
    expect(script.log.map((l) => l.id)).toEqual(["o1", "o2"]);
    expect(script.previousStatus.get("o2")).toBeUndefined();
    expect(script.superseded).toEqual([]);
  });
});

describe("order under late and concurrent arrivals", () => {
  it("never starts a conversion's delivery while another of it is in flight; an older first delivery after a newer one is superseded", async () => {
    const stub = coordinator();
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { deps, script } = scripted(() => ({ status: 200 }));
    script.gates.set("n2", gate);
    await withDeps(stub, deps);
    await stub.submit("ptn_late", [item("n2", "N", 2)]);
    const pumping = stub.pump();
    await eventually(async () => (script.log.length === 1 ? true : null));
    // The older event's delivery arrives while the newer one is being sent: it waits.
    await stub.submit("ptn_late", [item("n1", "N", 1)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(script.log.map((l) => l.id)).toEqual(["n2"]);
    release();
    await pumping;
    // The partner has the newer state: the older one is never sent.
    expect(script.log.map((l) => l.id)).toEqual(["n2"]);
    expect(script.superseded).toEqual([
      { id: "n1", reason: "a newer event of this conversion had already been delivered" },
    ]);
    // An operator's replay of it (not fresh) is sent as asked.
    await stub.submit("ptn_late", [item("n1", "N", 1, 0, { fresh: 0 })]);
    await drain(stub);
    expect(script.log.map((l) => l.id)).toEqual(["n2", "n1"]);
  });
});

describe("rate cap", () => {
  // Two dozen coordinators pump at once, as in production: time moves while one pump awaits (another
  // object runs), so a wave's clock reading can be older than its attempts' starts. The cap holds
  // at the times the attempts began, as the partner would count them.
  it("starts no more than max_per_second attempts in any second, with other objects pumping", async () => {
    const runs = await Promise.all(
      Array.from({ length: 24 }, async () => {
        const stub = coordinator();
        const { deps, script } = scripted(() => ({ status: 200 }), 10, { max_per_second: 2, realTime: true });
        await withDeps(stub, deps);
        await stub.submit(
          "ptn_rate",
          Array.from({ length: 6 }, (_, i) => item(`q${i}`, `c${i}`, 1)),
        );
        await stub.pump();
        return { starts: script.log.map((l) => l.at), status: await stub.status() };
      }),
    );
    for (const { starts, status } of runs) {
      expect(starts).toHaveLength(6);
      const busiest = Math.max(
        ...starts.map((start) => starts.filter((at) => at >= start && at < start + 1000).length),
      );
      expect(busiest, `starts ${starts.map((at) => at - (starts[0] ?? 0)).join(", ")} ms`).toBe(2);
      expect(status.pace.max_per_second).toBe(2);
    }
  }, 60_000);
});

describe("breaker giving up", () => {
  it("disables the partner after staying open, forgets its work and starts closed when it is enabled", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 500 }), 1, { disable_after_seconds: 100 });
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_gives_up",
      Array.from({ length: 5 }, (_, i) => item(`g${i}`, `c${i}`, 1)),
    );
    for (let i = 0; i < 5; i++) {
      await stub.pump();
      script.clock.now += 1_000;
    }
    expect(script.transitions.map((t) => t.to)).toEqual(["open"]);
    script.clock.now += 200_000;
    await stub.pump();
    expect(script.transitions.map((t) => t.to)).toEqual(["open", "disabled"]);
    expect(script.transitions.at(-1)?.reason).toBe("open for 100 s: disabled");
    const status = await stub.status();
    expect(status).toMatchObject({ waiting: 0, breaker: { position: "closed" } });
  });
});

describe("transitions when D1 is down", () => {
  it("keeps a transition D1 could not take and tells it again on the next pump, in order", async () => {
    const stub = coordinator();
    const { deps, script } = scripted(() => ({ status: 500 }), 1);
    let d1Down = true;
    const told = deps.transition;
    deps.transition = async (partner, transition) => {
      if (d1Down) throw new Error("D1_ERROR: injected");
      await told(partner, transition);
    };
    await withDeps(stub, deps);
    await stub.submit(
      "ptn_d1_down",
      Array.from({ length: 4 }, (_, i) => item(`x${i}`, `c${i}`, 1)),
    );
    for (let i = 0; i < 4; i++) {
      await stub.pump();
      script.clock.now += 1_000;
    }
    // The breaker opened (its own state says so) but D1 has not been told.
    expect((await stub.status()).breaker.position).toBe("open");
    expect(script.transitions).toEqual([]);
    d1Down = false;
    script.clock.now += 60_000;
    await stub.pump();
    expect(script.transitions.map((t) => t.to)).toEqual(["open", "half_open", "open"]);
  });
});
