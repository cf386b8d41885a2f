/** An object's answer and a recorded postback's input, for tests of src/ingest/answer-cache.ts alone. */
import type { IngestAnswer, RecordInput } from "../../src/domain/conversion";

export const answerFor = (id: string): IngestAnswer => ({
  status: "accepted",
  event_id: id,
  network_id: "net",
  transaction_id: id,
  conversion_status: "approved",
});

export const inputFor = (transaction: string): RecordInput => ({
  network_id: "net",
  transaction_id: transaction,
  postback: { transaction_id: transaction, status: "approved" } as RecordInput["postback"],
  received_at: "2026-12-03T00:00:00.000Z",
});
