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
