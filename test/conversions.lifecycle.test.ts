import { describe, expect, it } from "vitest";
import { decide, differences, fingerprint, merge, normalizeDecimal, precedes } from "../src/conversions/lifecycle";
import {
  ALLOWED_TRANSITIONS,
  type ConversionFields,
  type ConversionState,
  type EventSource,
} from "../src/domain/conversion";
import { CONVERSION_STATUSES, type ConversionStatus } from "../src/domain/postback";

const T1 = "2026-11-01T10:00:00.000Z";
const T2 = "2026-11-01T11:00:00.000Z";
const T0 = "2026-11-01T09:00:00.000Z";

function fields(status: ConversionStatus, extra: Partial<ConversionFields> = {}): ConversionFields {
  return { status, amount: "10.00", currency: "USD", ...extra };
}

/** A stored state; its time is the network's unless `supplied` is false (then a receipt time). */
function state(
  status: ConversionStatus,
  eventTime = T1,
  supplied = true,
  source: EventSource = "s2s",
): ConversionState {
  return { status, event_time: eventTime, event_time_supplied: supplied, fields: fields(status), source };
}

const nothingKnown = () => false;

/** docs/architecture.md's lifecycle table, written out independently of the implementation's constant. */
const TABLE: Record<ConversionStatus, ConversionStatus[]> = {
  pending: ["approved", "declined", "paid"],
  approved: ["paid", "declined", "reversed"],
  paid: ["reversed"],
  declined: [],
  reversed: [],
};

describe("the lifecycle table", () => {
  it("matches the documented table exactly", () => {
    for (const from of CONVERSION_STATUSES) {
      expect([...ALLOWED_TRANSITIONS[from]].sort(), from).toEqual([...TABLE[from]].sort());
    }
  });

  it("accepts any status for a new conversion", () => {
    for (const status of CONVERSION_STATUSES) {
      expect(decide(null, { fields: fields(status), event_time: T1 }, nothingKnown)).toEqual({ verdict: "accepted" });
    }
  });

  for (const from of CONVERSION_STATUSES) {
    for (const to of CONVERSION_STATUSES) {
      if (from === to) continue;
      const allowed = TABLE[from].includes(to);
      it(`${from} → ${to} is ${allowed ? "updated" : "a conflict naming status"}`, () => {
        const decision = decide(state(from), { fields: fields(to), event_time: T2 }, nothingKnown);
        if (allowed) {
          expect(decision).toEqual({ verdict: "updated" });
        } else {
          expect(decision.verdict).toBe("conflict");
          expect(decision.verdict === "conflict" && decision.errors.map((e) => e.location)).toEqual(["body.status"]);
        }
      });
    }
  }
});

describe("decisions", () => {
  it("is a duplicate when the same material fields were recorded, whatever the event_time", () => {
    const known = new Set([fingerprint(fields("pending"))]);
    const decision = decide(state("approved", T2), { fields: fields("pending"), event_time: T0 }, (f) => known.has(f));
    expect(decision).toEqual({ verdict: "duplicate", of: "recorded" });
  });

  it("is stale when older than the current state, even for a transition the table forbids", () => {
    expect(decide(state("paid", T2), { fields: fields("pending"), event_time: T1 }, nothingKnown)).toEqual({
      verdict: "stale",
    });
  });

  it("is a conflict naming each differing field when the status is the same", () => {
    const decision = decide(
      state("approved"),
      { fields: fields("approved", { amount: "12.00", campaign_id: "c-2", meta: { sub1: "x" } }), event_time: T2 },
      nothingKnown,
    );
    expect(decision.verdict).toBe("conflict");
    expect(decision.verdict === "conflict" && decision.errors.map((e) => e.location)).toEqual([
      "body.amount",
      "body.campaign_id",
      "body.meta.sub1",
    ]);
  });

  it("is a duplicate of the current state when a partial event repeats it", () => {
    const current: ConversionState = {
      status: "approved",
      event_time: T1,
      event_time_supplied: true,
      fields: { status: "approved", amount: "10.00", currency: "USD", campaign_id: "c-1", meta: { a: 1, b: 2 } },
      source: "s2s",
    };
    for (const partial of [
      { status: "approved" },
      { status: "approved", amount: "10" },
      { status: "approved", meta: { b: 2 } },
    ]) {
      expect(decide(current, { fields: partial as ConversionFields, event_time: T2 }, nothingKnown)).toEqual({
        verdict: "duplicate",
        of: "current",
      });
    }
  });

  it("names only the fields a partial event carries that differ", () => {
    const decision = decide(
      state("approved"),
      { fields: { status: "approved", currency: "EUR", meta: { x: "1" } }, event_time: T2 },
      nothingKnown,
    );
    expect(decision.verdict === "conflict" && decision.errors.map((e) => e.location)).toEqual([
      "body.currency",
      "body.meta.x",
    ]);
  });

  it("treats an older event with the same status and other fields as stale, not a conflict", () => {
    expect(
      decide(state("approved", T2), { fields: fields("approved", { amount: "99" }), event_time: T1 }, nothingKnown),
    ).toEqual({
      verdict: "stale",
    });
  });

  it("merges an update over the recorded fields, meta by key", () => {
    expect(
      merge(
        { status: "pending", amount: "10", currency: "USD", campaign_id: "c-1", meta: { a: 1, b: 2 } },
        { status: "paid", amount: "12", meta: { b: 3 } },
      ),
    ).toEqual({ status: "paid", amount: "12", currency: "USD", campaign_id: "c-1", meta: { a: 1, b: 3 } });
  });

  it("treats equal decimals as equal amounts", () => {
    expect(normalizeDecimal("010.500")).toBe("10.5");
    expect(normalizeDecimal("7.000")).toBe("7");
    expect(normalizeDecimal("0.0")).toBe("0");
    expect(fingerprint(fields("paid", { amount: "10.5" }))).toBe(fingerprint(fields("paid", { amount: "10.50" })));
    expect(differences(fields("paid", { amount: "10.5" }), fields("paid", { amount: "10.50" }))).toEqual([]);
  });

  it("fingerprints meta regardless of key order", () => {
    expect(fingerprint(fields("paid", { meta: { a: 1, b: "2" } }))).toBe(
      fingerprint(fields("paid", { meta: { b: "2", a: 1 } })),
    );
    expect(fingerprint(fields("paid", { meta: { a: 1 } }))).not.toBe(fingerprint(fields("paid", { meta: { a: "1" } })));
  });
});

/** The statuses that can only come before each one, written out from docs/architecture.md's lifecycle table. */
const BEFORE: Record<ConversionStatus, ConversionStatus[]> = {
  pending: [],
  approved: ["pending"],
  paid: ["pending", "approved"],
  declined: ["pending", "approved"],
  reversed: ["pending", "approved", "paid"],
};

describe("whose clock", () => {
  it("knows which statuses can only come before another", () => {
    for (const later of CONVERSION_STATUSES) {
      for (const earlier of CONVERSION_STATUSES) {
        expect(precedes(earlier, later), `${earlier} before ${later}`).toBe(BEFORE[later].includes(earlier));
      }
    }
  });

  /**
   * Every combination: the state's time supplied or inferred, the incoming event's time supplied
   * (older or newer than the state's) or absent. Only two supplied times are compared; otherwise
   * arrival order decides: forward when allowed, stale for a status that can only come before,
   * else a conflict.
   */
  const clocks = [
    { name: "both supplied, the event older", stateSupplied: true, incoming: T0 },
    { name: "both supplied, the event newer", stateSupplied: true, incoming: T2 },
    { name: "the state's inferred, the event's supplied and older", stateSupplied: false, incoming: T0 },
    { name: "the state's inferred, the event's supplied and newer", stateSupplied: false, incoming: T2 },
    { name: "the state's supplied, the event without a time", stateSupplied: true, incoming: undefined },
    { name: "both inferred", stateSupplied: false, incoming: undefined },
  ] as const;

  function expected(from: ConversionStatus, to: ConversionStatus, clock: (typeof clocks)[number]): string {
    const comparable = clock.stateSupplied && clock.incoming !== undefined;
    if (comparable && clock.incoming < T1) return "stale";
    if (TABLE[from].includes(to)) return "updated";
    if (!comparable && BEFORE[from].includes(to)) return "stale";
    return "conflict";
  }

  for (const clock of clocks) {
    describe(clock.name, () => {
      for (const from of CONVERSION_STATUSES) {
        for (const to of CONVERSION_STATUSES) {
          if (from === to) continue;
          const verdict = expected(from, to, clock);
          it(`${from} → ${to} is ${verdict}`, () => {
            const decision = decide(
              state(from, T1, clock.stateSupplied),
              { fields: fields(to), event_time: clock.incoming },
              nothingKnown,
            );
            expect(decision.verdict).toBe(verdict);
          });
        }
        const sameStatus =
          clock.stateSupplied && clock.incoming !== undefined && clock.incoming < T1 ? "stale" : "conflict";
        it(`${from} → ${from} with another amount is ${sameStatus}, and with the same fields a duplicate`, () => {
          const current = state(from, T1, clock.stateSupplied);
          const other = decide(
            current,
            { fields: fields(from, { amount: "99" }), event_time: clock.incoming },
            nothingKnown,
          );
          expect(other.verdict).toBe(sameStatus);
          expect(decide(current, { fields: fields(from), event_time: clock.incoming }, nothingKnown)).toEqual({
            verdict: "duplicate",
            of: "current",
          });
        });
      }
    });
  }

  it("applies a reversal dated before a payment that came without a time", () => {
    // approved (the network's time) → paid (no time: the receipt time stands in) → reversed (the
    // network's time, earlier than the receipt of paid): the reversal is not stale.
    const paid = state("paid", T2, false);
    expect(decide(paid, { fields: fields("reversed"), event_time: T1 }, nothingKnown)).toEqual({ verdict: "updated" });
  });
});

describe("pixels and postbacks", () => {
  it("lets a network's postback confirm or correct what a pixel set, whatever the pixel said", () => {
    const pixel = state("approved", T1, false, "pixel");
    // The same fields: a confirmation, not a duplicate of the pixel's event.
    const known = new Set([fingerprint(fields("approved"), "pixel")]);
    expect(decide(pixel, { fields: fields("approved") }, (print) => known.has(print))).toEqual({ verdict: "updated" });
    // Another amount, an earlier time, or a status the table would not allow from approved: still the network's word.
    expect(decide(pixel, { fields: fields("approved", { amount: "12.00" }) }, nothingKnown).verdict).toBe("updated");
    expect(decide(pixel, { fields: fields("pending"), event_time: T0 }, nothingKnown).verdict).toBe("updated");
  });

  it("never lets a pixel change what a postback set: it is kept in the history only", () => {
    const postback = state("approved");
    expect(decide(postback, { fields: fields("approved", { amount: "1" }), source: "pixel" }, nothingKnown)).toEqual({
      verdict: "stale",
    });
    expect(decide(postback, { fields: fields("reversed"), source: "pixel" }, nothingKnown).verdict).toBe("stale");
  });

  it("decides pixels between themselves by the usual rules, and a reloaded pixel is a duplicate", () => {
    const pixel = state("approved", T1, false, "pixel");
    const known = new Set([fingerprint(fields("approved"), "pixel")]);
    expect(decide(pixel, { fields: fields("approved"), source: "pixel" }, (print) => known.has(print))).toEqual({
      verdict: "duplicate",
      of: "recorded",
    });
    expect(decide(pixel, { fields: fields("approved", { amount: "3" }), source: "pixel" }, nothingKnown).verdict).toBe(
      "conflict",
    );
    expect(decide(null, { fields: fields("approved"), source: "pixel" }, nothingKnown)).toEqual({
      verdict: "accepted",
    });
  });

  it("never fingerprints a pixel's event like the postback with the same fields", () => {
    expect(fingerprint(fields("approved"), "pixel")).not.toBe(fingerprint(fields("approved")));
  });
});

describe("an operator's correction (from a reconciliation)", () => {
  it("may correct the amount or currency of the current status, which a postback may not", () => {
    const current = state("approved");
    const corrected = { fields: fields("approved", { amount: "12.00" }), source: "correction" as const };
    expect(decide(current, corrected, nothingKnown)).toEqual({ verdict: "updated" });
    expect(decide(current, { fields: fields("approved", { amount: "12.00" }) }, nothingKnown).verdict).toBe("conflict");
    expect(decide(current, { ...corrected, fields: fields("approved", { currency: "EUR" }) }, nothingKnown)).toEqual({
      verdict: "updated",
    });
    // The same fields again: nothing to correct.
    expect(decide(current, { fields: fields("approved"), source: "correction" }, nothingKnown)).toEqual({
      verdict: "duplicate",
      of: "current",
    });
  });

  it("follows the transitions like a postback: a final status stays final", () => {
    expect(decide(state("approved"), { fields: fields("declined"), source: "correction" }, nothingKnown).verdict).toBe(
      "updated",
    );
    expect(decide(state("reversed"), { fields: fields("paid"), source: "correction" }, nothingKnown).verdict).toBe(
      "stale",
    );
    expect(decide(state("paid"), { fields: fields("declined"), source: "correction" }, nothingKnown).verdict).toBe(
      "conflict",
    );
  });

  it("counts as the network's word against pixels, and is never the same event as a postback", () => {
    expect(
      decide(state("approved", T1, false, "pixel"), { fields: fields("approved"), source: "correction" }, nothingKnown),
    ).toEqual({ verdict: "updated" });
    expect(
      decide(state("approved", T1, true, "correction"), { fields: fields("paid"), source: "pixel" }, nothingKnown)
        .verdict,
    ).toBe("stale");
    expect(fingerprint(fields("approved"), "correction")).toBe(`correction:${fingerprint(fields("approved"))}`);
  });
});

describe("the fingerprint of fields added after the first ones", () => {
  it("leaves every fingerprint built before a field was added as it was", () => {
    // The exact text of a fingerprint as stored before partner_id existed (every field positional).
    expect(fingerprint(fields("approved", { click_id: "k" }))).toBe(
      JSON.stringify(["approved", "10", "USD", null, null, "k", null, null, null, null]),
    );
  });

  it("adds a newer field by name, and only when it is there", () => {
    const named = fingerprint(fields("approved", { partner_id: "ptn_1" }));
    expect(named).toBe(
      JSON.stringify(["approved", "10", "USD", null, null, null, null, null, null, null, ["partner_id", "ptn_1"]]),
    );
    expect(named).not.toBe(fingerprint(fields("approved")));
  });
});
