/** Reconciliation as a test drives it: upload a CSV report, wait for its diff, read every difference. */
import { env } from "cloudflare:workers";
import { admin, eventually, expectStatus } from "./helpers";

export interface Side {
  conversions: number;
  amount: { currency: string; amount: string }[];
  payout: { currency: string; amount: string }[];
}

export interface Reconciliation {
  id: string;
  state: string;
  progress: { phase: string; report_rows: number; report_rows_done: number; hub_conversions_done: number };
  totals: { report: Side; hub: Side };
  differences: Record<string, number> | null;
  error: string | null;
}

export interface Difference {
  id: string;
  transaction_id: string;
  class: string;
  correctable: boolean;
  line: number | null;
  hub: { status: string; amount: string | null; currency: string | null; payout: string | null } | null;
  report: { status: string; amount: string | null; currency: string | null; payout: string | null } | null;
  correction: { outcome: string; verdict: string | null; event_id: string | null; key_id: string } | null;
}

export interface CorrectionResult {
  difference_id: string;
  transaction_id: string;
  class: string;
  outcome: string;
  verdict: string | null;
  event_id: string | null;
  reason: string | null;
}

export function upload(
  query: Record<string, string>,
  csv: string | ReadableStream<Uint8Array>,
  contentType = "text/csv",
): Promise<Response> {
  return admin(`/v1/reconciliations?${new URLSearchParams(query)}`, {
    method: "POST",
    headers: { "content-type": contentType },
    body: csv,
  });
}

/** Polls the reconciliation until its job finished (or failed). */
export async function finished(id: string, timeoutMs = 60_000): Promise<Reconciliation> {
  return eventually(async () => {
    const body = await expectStatus<Reconciliation>(await admin(`/v1/reconciliations/${id}`), 200);
    return body.state === "finished" || body.state === "failed" ? body : null;
  }, timeoutMs);
}

/** Every difference, page after page. */
export async function allDifferences(id: string, query: Record<string, string> = {}): Promise<Difference[]> {
  const all: Difference[] = [];
  let cursor: string | null = null;
  do {
    const params = new URLSearchParams({ limit: "200", ...query, ...(cursor ? { cursor } : {}) });
    const page: { data: Difference[]; next_cursor: string | null } = await expectStatus(
      await admin(`/v1/reconciliations/${id}/differences?${params}`),
      200,
    );
    all.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return all;
}

export async function correct(
  id: string,
  differenceIds: string[],
  dryRun: boolean,
): Promise<{ dry_run: boolean; results: CorrectionResult[]; summary: Record<string, number> }> {
  return expectStatus(
    await admin(`/v1/reconciliations/${id}/corrections`, {
      method: "POST",
      body: JSON.stringify({ difference_ids: differenceIds, dry_run: dryRun }),
    }),
    200,
  );
}

/** Conversions written straight to D1 (as the events consumer would), for reports too large to post. */
export async function seedConversions(
  networkId: string,
  rows: { transaction_id: string; status: string; amount: string; currency: string; first_seen_at: string }[],
): Promise<void> {
  for (let start = 0; start < rows.length; start += 500) {
    await env.DB.prepare(
      `INSERT INTO conversions (network_id, transaction_id, status, amount, currency, event_time, first_seen_at,
         updated_at, version, test)
       SELECT ?1, r.value ->> '$.transaction_id', r.value ->> '$.status', r.value ->> '$.amount', r.value ->> '$.currency',
              r.value ->> '$.first_seen_at', r.value ->> '$.first_seen_at', r.value ->> '$.first_seen_at', 1, 0
       FROM json_each(?2) AS r`,
    )
      .bind(networkId, JSON.stringify(rows.slice(start, start + 500)))
      .run();
  }
}

/** What a network's reconciliations left in D1: reconciliations, and staged rows (orphaned ones too). */
export async function keptOf(networkId: string): Promise<number> {
  const row = await env.DB.prepare(
    `SELECT (SELECT count(*) FROM reconciliations WHERE network_id = ?1)
          + (SELECT count(*) FROM reconciliation_rows WHERE reconciliation_id NOT IN (SELECT id FROM reconciliations)
               OR reconciliation_id IN (SELECT id FROM reconciliations WHERE network_id = ?1)) AS kept`,
  )
    .bind(networkId)
    .first<{ kept: number }>();
  return row?.kept ?? 0;
}
