import { describe, expect, it } from "vitest";
import { zodFieldErrors } from "../src/errors";
import { PostbackSchema } from "../src/ingest/postback-schema";

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
