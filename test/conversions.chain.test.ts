/**
 * The hash chain's canonical form and hash, checked against vectors computed outside the hub (Node's
 * crypto and the `canonicalize` package, see test/fixtures/chain-vectors.json), against WebCrypto,
 * and the verifier's verdicts on chains built by hand.
 */
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import docs from "../docs/conversion-records.md?raw";
import {
  type ChainContent,
  type ChainHead,
  canonicalContent,
  chainHash,
  type StoredEvent,
  verifyChain,
} from "../src/conversions/chain";
import vectors from "./fixtures/chain-vectors.json";
import { sha256Hex } from "./support/helpers";

async function webCryptoHash(content: ChainContent): Promise<string> {
  const text = canonicalize({ v: 1, ...content }) ?? "";
  return sha256Hex(text);
}

describe("the canonical form", () => {
  it.each(vectors.vectors.map((v) => [v.content.seq, v] as const))("reproduces published vector %s", (_, vector) => {
    const content = vector.content as ChainContent;
    expect(canonicalContent(content)).toBe(vector.canonical);
    expect(chainHash(content)).toBe(vector.hash);
    // docs/conversion-records.md publishes the same vectors, so outsiders can test their verifier.
    expect(docs).toContain(vector.canonical);
    expect(docs).toContain(vector.hash);
  });

  it("hashes as WebCrypto's SHA-256 over the canonicalize package's text, for any event", async () => {
    const content = fc.record({
      network_id: fc.stringMatching(/^[a-z0-9][a-z0-9_-]{1,20}$/),
      transaction_id: fc.string({ unit: "grapheme", minLength: 1, maxLength: 40 }),
      test: fc.boolean(),
      seq: fc.integer({ min: 1, max: 1_000_000 }),
      event_id: fc.string({ minLength: 1, maxLength: 30 }),
      verdict: fc.constantFrom("accepted" as const, "updated" as const, "stale" as const),
      received_at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      event: fc.dictionary(
        fc.string({ unit: "grapheme", maxLength: 10 }),
        fc.oneof(fc.string({ unit: "grapheme" }), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })),
      ),
      prev_hash: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: null }),
    });
    await fc.assert(
      fc.asyncProperty(content, async (value) => {
        expect(chainHash(value)).toBe(await webCryptoHash(value));
      }),
      { numRuns: 300 },
    );
  });
});

/** A chain of `statuses` as the object records it, as D1 rows. */
function chainOf(statuses: string[]): StoredEvent[] {
  const rows: StoredEvent[] = [];
  let prev: string | null = null;
  statuses.forEach((status, index) => {
    const content: ChainContent = {
      network_id: "acme",
      transaction_id: "tx-1",
      test: false,
      seq: index + 1,
      event_id: `evt_${index + 1}`,
      verdict: index === 0 ? "accepted" : "updated",
      received_at: `2026-11-0${index + 1}T00:00:00.000Z`,
      event: { status },
      prev_hash: prev,
    };
    const hash = chainHash(content);
    rows.push({ ...content, status, event_time: null, payload: JSON.stringify(content.event), hash });
    prev = hash;
  });
  return rows;
}

const conversionAfter = (rows: StoredEvent[]) => {
  const last = rows[rows.length - 1];
  return {
    status: String(last?.status),
    fields: { status: last?.status as "paid" },
    event_time: String(last?.received_at),
    event_time_supplied: false,
    first_seen_at: String(rows[0]?.received_at),
  };
};

const headOf = (rows: StoredEvent[], inFlight: ChainHead["in_flight"] = []): ChainHead => {
  const last = rows[rows.length - 1];
  return { seq: last?.seq ?? 0, hash: last?.hash ?? null, in_flight: inFlight };
};

describe("verifyChain", () => {
  it("verifies an intact chain that agrees with its object and its conversion row", () => {
    const rows = chainOf(["pending", "approved", "paid"]);
    const proof = verifyChain({ rows, conversion: conversionAfter(rows), anchor: headOf(rows) });
    expect(proof).toMatchObject({ status: "verified", verified: true, breaks: [], head: { seq: 3 } });
    expect(proof.anchor).toMatchObject({ agrees: true, in_flight: 0 });
    expect(proof.state).toEqual({ checked: true, agrees: true, note: expect.any(String) });
  });

  it("accepts D1 behind its object by exactly the events still in the outbox", () => {
    const rows = chainOf(["pending", "approved", "paid"]);
    const inD1 = rows.slice(0, 2);
    const third = rows[2];
    const anchor = headOf(rows, [{ seq: 3, hash: third?.hash ?? null, prev_hash: third?.prev_hash ?? null }]);
    const proof = verifyChain({ rows: inD1, conversion: conversionAfter(inD1), anchor });
    expect(proof.status).toBe("verified");
    expect(proof.anchor?.note).toMatch(/1 event\(s\) behind/);
  });

  it("breaks when D1 lost its latest events, which the object no longer holds in its outbox", () => {
    const rows = chainOf(["pending", "approved", "paid"]);
    const inD1 = rows.slice(0, 2);
    const proof = verifyChain({ rows: inD1, conversion: conversionAfter(inD1), anchor: headOf(rows) });
    expect(proof.status).toBe("broken");
    expect(proof.breaks.map((b) => b.reason)).toEqual([expect.stringMatching(/deleted from D1/)]);
  });

  it("breaks when a consistent chain was rewritten: its head is not the object's", () => {
    const rows = chainOf(["pending", "approved", "paid"]);
    const forged = chainOf(["pending", "approved", "declined"]);
    const proof = verifyChain({ rows: forged, conversion: conversionAfter(forged), anchor: headOf(rows) });
    expect(proof.breaks.map((b) => b.reason)).toEqual([
      expect.stringMatching(/^the object's last event \(seq 3\) has hash/),
    ]);
  });

  it("says so, rather than failing, when no event has a hash", () => {
    const rows = chainOf(["pending", "paid"]).map((row) => ({ ...row, hash: null, prev_hash: null }));
    const proof = verifyChain({ rows, conversion: conversionAfter(rows), anchor: null });
    expect(proof).toMatchObject({ status: "unchained", verified: false, breaks: [] });
    expect(proof.notes).toEqual([
      "All 2 events were recorded before the hash chain existed: they have no hash to verify.",
    ]);
  });

  /** The object's state after `rows`, as the object attests it. */
  const attested = (rows: StoredEvent[], version = rows.length) => ({
    ...conversionAfter(rows),
    version,
  });

  it("breaks when D1 holds no chained event but the object holds a chain, unless its start is still on its way", () => {
    const rows = chainOf(["pending", "paid"]);
    const stripped = rows.map((row) => ({ ...row, hash: null, prev_hash: null }));
    const anchor = { ...headOf(rows), state: attested(rows), chain_from: 1 };
    const proof = verifyChain({ rows: stripped, conversion: conversionAfter(rows), anchor });
    expect(proof.status).toBe("broken");
    expect(proof.breaks.map((b) => [b.seq, b.reason])).toEqual([
      [1, expect.stringMatching(/^it has no hash, though the chain began at seq 1: /)],
      [2, expect.stringMatching(/^it has no hash, though the chain began at seq 1: /)],
      [null, expect.stringMatching(/^the conversion's object holds a chain up to seq 2 /)],
    ]);

    // Events from before the chain in D1, the chain's first event still in the outbox: nothing is wrong yet.
    const before = stripped.slice(0, 1);
    const second = rows[1];
    const inFlight = [{ seq: 2, hash: "a".repeat(64), prev_hash: null, verdict: "updated", state: attested(rows, 2) }];
    const waiting = verifyChain({
      rows: before,
      conversion: { ...conversionAfter(before), version: 1 },
      anchor: { seq: 2, hash: "a".repeat(64), in_flight: inFlight, state: attested(rows, 2), chain_from: 2 },
    });
    expect(second).toBeDefined();
    expect(waiting).toMatchObject({ status: "unchained", breaks: [] });
    expect(waiting.anchor).toMatchObject({ agrees: true, in_flight: 1 });
    expect(waiting.object_state).toMatchObject({ checked: false, agrees: null });
  });

  it("compares D1's row with the object's state, or with the state an event still on its way leaves", () => {
    const rows = chainOf(["pending", "approved", "paid", "reversed"]);
    const inD1 = rows.slice(0, 3);
    // D1 committed seq 3 (its receipt has not reached the object yet), not seq 4.
    const inFlight = rows.slice(2).map((row) => ({
      seq: row.seq,
      hash: row.hash,
      prev_hash: row.prev_hash,
      verdict: row.verdict,
      state: attested(rows.slice(0, row.seq), row.seq),
    }));
    const anchor = { ...headOf(rows, inFlight), state: attested(rows, 4), chain_from: 1 };
    const ahead = verifyChain({ rows: inD1, conversion: { ...conversionAfter(inD1), version: 3 }, anchor });
    expect(ahead.status).toBe("verified");
    expect(ahead.object_state).toMatchObject({
      checked: true,
      agrees: true,
      note: expect.stringMatching(/seq 3 left/),
    });
    // A version the object never reached is an edit.
    const edited = verifyChain({
      rows,
      conversion: { ...conversionAfter(rows), version: 99 },
      anchor: { ...headOf(rows), state: attested(rows, 4) },
    });
    expect(edited.breaks.map((b) => b.reason)).toEqual([
      "D1's conversion row is not the state the conversion's object holds: version is 99, not 4",
    ]);
  });

  it("survives a tampered seq of any size without building a range of it", () => {
    const rows = chainOf(["pending", "approved"]);
    const last = rows[1];
    if (last) last.seq = Number.MAX_SAFE_INTEGER;
    const proof = verifyChain({
      rows,
      conversion: conversionAfter(rows),
      anchor: headOf(chainOf(["pending", "approved"])),
    });
    expect(proof.status).toBe("broken");
  });
});
