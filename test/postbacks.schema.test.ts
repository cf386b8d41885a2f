import { describe, expect, it } from "vitest";
import { PostbackSchema } from "../src/domain/postback";
import { zodFieldErrors } from "../src/errors";

function locations(input: unknown): string[] {
  const result = PostbackSchema.safeParse(input);
  return result.success ? [] : zodFieldErrors("body", result.error).map((e) => e.location);
}

describe("PostbackSchema", () => {
  it("lists the amount/currency pairing problem together with other field errors", () => {
    expect(locations({ transaction_id: "t", currency: "USD", platform: "tv", extra: 1 }).sort()).toEqual([
      "body.currency",
      "body.extra",
      "body.platform",
    ]);
    expect(locations({ transaction_id: 5, amount: "1.00" }).sort()).toEqual(["body.amount", "body.transaction_id"]);
  });

  it("rejects non-objects without crashing", () => {
    for (const input of [null, [], "text", 42, true]) expect(locations(input)).toEqual(["body"]);
  });

  it("needs only transaction_id and defaults the status to approved", () => {
    expect(PostbackSchema.parse({ transaction_id: "t-1" })).toEqual({ transaction_id: "t-1", status: "approved" });
  });
});

describe("PostbackSchema event_time", () => {
  it("normalises to UTC with milliseconds", () => {
    expect(PostbackSchema.parse({ transaction_id: "t", event_time: "2026-01-02T03:04:05+02:00" }).event_time).toBe(
      "2026-01-02T01:04:05.000Z",
    );
  });

  it("rejects a leap second and a leap day in a common year with one message each", () => {
    for (const event_time of ["2026-06-30T23:59:60Z", "2026-02-29T00:00:00Z"]) {
      const result = PostbackSchema.safeParse({ transaction_id: "t", event_time });
      expect(result.success, event_time).toBe(false);
      expect(result.error?.issues).toHaveLength(1);
    }
    expect(PostbackSchema.safeParse({ transaction_id: "t", event_time: "2024-02-29T00:00:00Z" }).success).toBe(true);
  });
});

describe("PostbackSchema identifiers", () => {
  const ids = ["transaction_id", "campaign_id", "click_id", "user_id", "device_id"] as const;

  it.each([
    ["a zero-width space", "ord\u200B1"],
    ["a zero-width joiner", "ord\u200D1"],
    ["a right-to-left override", "ord\u202E1"],
    ["a left-to-right isolate", "\u2066ord1\u2069"],
    ["a byte order mark", "\uFEFFord1"],
    ["a soft hyphen", "ord\u00AD1"],
    ["a combining grapheme joiner", "ord\u034F1"],
    ["a variation selector", "ord1\uFE0F"],
    ["a Hangul filler", "ord1\u3164"],
    ["a Hangul choseong filler", "ord1\u115F"],
    ["a lone surrogate", "ord\uD8001"],
  ])("refuses %s in every identifier, naming the field", (_, value) => {
    for (const field of ids) {
      const input = { transaction_id: "t-1", [field]: value };
      expect(locations(input), field).toEqual([`body.${field}`]);
    }
  });

  it("normalises identifiers to NFC, so one transaction has one name", () => {
    const decomposed = "caf\u0065\u0301-1";
    const composed = "caf\u00E9-1";
    expect(decomposed).not.toBe(composed);
    const parsed = PostbackSchema.parse({ transaction_id: decomposed, click_id: decomposed, user_id: "A\u030A" });
    expect(parsed.transaction_id).toBe(composed);
    expect(parsed.click_id).toBe(composed);
    expect(parsed.user_id).toBe("\u00C5");
  });

  it("keeps visible non-ASCII identifiers as they are", () => {
    expect(PostbackSchema.parse({ transaction_id: "заказ-42 🚀" }).transaction_id).toBe("заказ-42 🚀");
  });
});
