/**
 * Our RFC 8785 canonical JSON against the RFC's own examples and against `canonicalize`, the
 * implementation by the RFC's author: the hash chain is only checkable by outsiders if both write
 * the same text for every value.
 */
import canonicalize from "canonicalize";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CanonicalJsonError, canonicalJson } from "../src/lib/canonical-json";

function attempt(write: (value: unknown) => string | undefined, value: unknown) {
  try {
    return { text: write(value) };
  } catch {
    return { refused: true };
  }
}

describe("RFC 8785", () => {
  it("writes the example of section 3.2.2 (numbers, strings, literals)", () => {
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", "literals": [null, true, false]}',
    );
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it("sorts members by UTF-16 code units (section 3.2.3)", () => {
    const input = JSON.parse(
      '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",' +
        '"\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control", "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    );
    // Read back as text: Object.keys would put the integer-like "1" first whatever the order.
    const keys = [...canonicalJson(input).matchAll(/"((?:[^"\\]|\\.)*)":/g)].map((m) => JSON.parse(`"${m[1]}"`));
    expect(keys).toEqual(["\r", "1", "\u0080", "\u00f6", "\u20ac", "\ud83d\ude00", "\ufb33"]);
  });

  it("writes numbers as ECMAScript does (Appendix B samples)", () => {
    const samples: [number, string][] = [
      [0, "0"],
      [-0, "0"],
      [5e-324, "5e-324"],
      [1.7976931348623157e308, "1.7976931348623157e+308"],
      [9007199254740992, "9007199254740992"],
      [295147905179352830000, "295147905179352830000"],
      [1e21, "1e+21"],
      [0.000001, "0.000001"],
      [1e-7, "1e-7"],
    ];
    for (const [value, text] of samples) expect(canonicalJson(value)).toBe(text);
  });

  it("refuses what JCS cannot represent", () => {
    for (const value of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      "\ud800",
      { a: "x\udc00" },
      [undefined],
      1n,
      new Date(0),
    ]) {
      expect(() => canonicalJson(value), String(value)).toThrow(CanonicalJsonError);
    }
  });
});

describe("against the canonicalize package", () => {
  it("writes the same text for any JSON value, and refuses the same ones", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4, stringUnit: "binary" }), (value) => {
        expect(attempt(canonicalJson, value)).toEqual(attempt(canonicalize, value));
      }),
      { numRuns: 2_000 },
    );
  });

  it("writes the same text for events as the hub records them", () => {
    const event = fc.record(
      {
        status: fc.constantFrom("pending", "approved", "paid", "declined", "reversed"),
        amount: fc.stringMatching(/^(0|[1-9]\d{0,14})(\.\d{1,8})?$/),
        currency: fc.constantFrom("USD", "EUR", "JPY"),
        event_time: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        meta: fc.dictionary(
          fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/),
          fc.oneof(
            fc.string({ unit: "grapheme", maxLength: 40 }),
            fc.double({ noNaN: true, noDefaultInfinity: true }),
            fc.boolean(),
          ),
        ),
      },
      { requiredKeys: ["status"] },
    );
    fc.assert(
      fc.property(event, (value) => {
        expect(canonicalJson({ v: 1, event: value })).toBe(canonicalize({ v: 1, event: value }));
      }),
      { numRuns: 1_000 },
    );
  });
});
