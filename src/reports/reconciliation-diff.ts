/**
 * The diff of a reconciliation (docs/reconciliation.md), as pure functions over one chunk: report
 * rows against the hub's conversions with their transaction ids, and hub conversions of the period
 * that the report does not name. Totals are exact sums per currency, added a chunk at a time.
 */
import {
  type Difference,
  type DifferenceClass,
  differenceId,
  type HubConversion,
  type ReportRow,
  type SideTotals,
} from "../domain/reconciliation";
import { add, sameAmount } from "../lib/money";

function difference(
  differenceClass: DifferenceClass,
  transactionId: string,
  hub: HubConversion | null,
  report: ReportRow | null,
): Difference {
  return {
    id: differenceId(differenceClass, transactionId),
    transaction_id: transactionId,
    class: differenceClass,
    line: report?.line ?? null,
    hub,
    report,
  };
}

/** Whether two sides' money differs: one has it and the other not, another currency, or another amount. */
function moneyDiffers(
  a: { amount: string | null; currency: string | null },
  b: { amount: string | null; currency: string | null },
): boolean {
  if (a.amount === null || b.amount === null) return a.amount !== b.amount;
  return a.currency !== b.currency || !sameAmount(a.amount, b.amount);
}

/**
 * The differences of report rows against the hub: `hub` holds the conversions (of the
 * reconciliation's network, live) with those rows' transaction ids, whenever first seen. For a
 * partner's report (`partnerId`), a conversion the hub credits to another partner differs in
 * credit and nothing else is compared; otherwise its payout is compared too, when the report has one.
 */
export function compareReportRows(
  rows: readonly ReportRow[],
  hub: ReadonlyMap<string, HubConversion>,
  partnerId: string | null,
): Difference[] {
  const differences: Difference[] = [];
  for (const row of rows) {
    const conversion = hub.get(row.transaction_id);
    if (!conversion) {
      differences.push(difference("missing_in_hub", row.transaction_id, null, row));
      continue;
    }
    if (partnerId !== null && conversion.attributed_partner_id !== partnerId) {
      differences.push(difference("credit", row.transaction_id, conversion, row));
      continue;
    }
    if (conversion.status !== row.status) differences.push(difference("status", row.transaction_id, conversion, row));
    if (moneyDiffers(conversion, row)) differences.push(difference("amount", row.transaction_id, conversion, row));
    const reportedPayout = { amount: row.payout, currency: row.payout_currency ?? row.currency };
    const hubPayout = { amount: conversion.payout, currency: conversion.payout_currency };
    if (partnerId !== null && row.payout !== null && moneyDiffers(hubPayout, reportedPayout)) {
      differences.push(difference("payout", row.transaction_id, conversion, row));
    }
  }
  return differences;
}

/** The hub's conversions of the period the report does not name (`reported`: those it does). */
export function missingInReport(conversions: readonly HubConversion[], reported: ReadonlySet<string>): Difference[] {
  return conversions
    .filter((conversion) => !reported.has(conversion.transaction_id))
    .map((conversion) => difference("missing_in_report", conversion.transaction_id, conversion, null));
}

function addMoney(sums: Record<string, string>, amount: string | null, currency: string | null): void {
  if (amount === null || currency === null) return;
  sums[currency] = add(sums[currency] ?? "0", amount);
}

/** `totals` with `items` added: one conversion each, their amounts and payouts per currency. */
export function addToTotals(
  totals: SideTotals,
  items: readonly {
    amount: string | null;
    currency: string | null;
    payout: string | null;
    payout_currency: string | null;
  }[],
): SideTotals {
  const next: SideTotals = {
    conversions: totals.conversions + items.length,
    amount: { ...totals.amount },
    payout: { ...totals.payout },
  };
  for (const item of items) {
    addMoney(next.amount, item.amount, item.currency);
    addMoney(next.payout, item.payout, item.payout_currency);
  }
  return next;
}
