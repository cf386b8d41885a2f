/**
 * The partner coordinator (a Durable Object per partner): each conversion's deliveries in order,
 * other conversions in parallel; never more in flight than the pace allows; paused by Retry-After;
 * the breaker opening on failure density, probing after its cool-down and closing; its state
 * surviving the object's restart. Its attempts are scripted here (the real attempt is
 * delivery/attempt.ts, tested with the DELIVERIES consumer), with a clock the test moves: a year
 * ahead of the runtime's, so the object's own alarms never fire on their own during a test.
 */
import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { CoordinatorDeps, PartnerCoordinator, WorkItem } from "../src/coordinator/partner-coordinator";
import type { AttemptReport } from "../src/delivery/attempt";
import { DEFAULT_BREAKER } from "../src/delivery/breaker";
import { uniqueId } from "./support/helpers";

type Answer = { status: number; latencyMs?: number; retryAfter?: number } | "timeout";

interface Script {
  /** Answer for each attempt of a delivery, in order (the last repeats). */
  answers: (deliveryId: string, attempt: number) => Answer;
  log: { id: string; at: number; inFlight: number }[];
  clock: { now: number };
  transitions: { to: string; reason: string }[];
}

function scripted(answers: Script["answers"], max_in_flight = 4): { deps: CoordinatorDeps; script: Script } {
  const script: Script = { answers, log: [], clock: { now: Date.now() + 365 * 86_400_000 }, transitions: [] };
  const attempts = new Map<string, number>();
  let inFlight = 0;
  const deps: CoordinatorDeps = {
    now: () => script.clock.now,
    settings: async () => ({
      pace: { max_in_flight, max_per_second: null },
      breaker: { ...DEFAULT_BREAKER, min_attempts: 4, failure_percent: 75, cooldown_seconds: 60 },
    }),
    transition: async (_partner, transition) => {
      script.transitions.push({ to: transition.to, reason: transition.reason });
    },
    attempt: async (id): Promise<AttemptReport> => {
      const n = (attempts.get(id) ?? 0) + 1;
      attempts.set(id, n);
      inFlight++;
      script.log.push({ id, at: script.clock.now, inFlight });
      // Let the other attempts of the wave start before this one answers.
      await new Promise((resolve) => setTimeout(resolve, 5));
      inFlight--;
      const answer = script.answers(id, n);
      if (answer === "timeout")
        return {
          retryInSeconds: 5,
          sent: { outcome: { kind: "timeout" }, latencyMs: 10_000, retryAfterSeconds: null },
        };
      const ok = answer.status >= 200 && answer.status <= 299;
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

const item = (id: string, conversion: string, position: number, due_ms = 0): WorkItem => ({
  delivery_id: id,
  conversion,
  position,
  due_ms,
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
