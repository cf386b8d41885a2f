/**
 * Who may open which console page and press which button, by construction: each page and action
 * names the API operation it mirrors, and is allowed exactly when the API would allow that
 * operation (access/policy.ts): the key's scope, and for a network or partner key, the network or
 * partner the page is about (or the record's owner) must be its own.
 */
import { ACCESS, type Access, scopeAllows, scopesOf, subjectRule } from "../access/policy";
import type { Principal } from "../domain/access";

/** The operations the console mirrors; each must have a policy entry (checked when the module loads). */
export const CONSOLE_OPERATIONS = [
  "listConversions",
  "getConversion",
  "getConversionProof",
  "listDeliveries",
  "getDelivery",
  "replayDelivery",
  "replayPartnerDeliveries",
  "createReplay",
  "listNetworks",
  "getNetwork",
  "disableNetwork",
  "enableNetwork",
  "rotateNetworkSecret",
  "rotateNetworkToken",
  "listPartners",
  "getPartner",
  "disablePartner",
  "enablePartner",
  "rotatePartnerSecret",
  "previewPartnerRequest",
  "listInboundRequests",
  "getStats",
  "createReconciliation",
  "listReconciliations",
  "getReconciliation",
  "listReconciliationDifferences",
  "applyReconciliationCorrections",
  "listAlerts",
] as const;

export type ConsoleOperation = (typeof CONSOLE_OPERATIONS)[number];

function accessOf(operation: ConsoleOperation): Access {
  const access = ACCESS[operation];
  if (!access) throw new Error(`the console mirrors ${operation}, which has no entry in access/policy.ts`);
  return access;
}

for (const operation of CONSOLE_OPERATIONS) accessOf(operation);

/**
 * Whether `principal` may do what `operation` does, on the records of `subject` (the network or
 * partner the page names, or the owner of the record it shows). A network or partner key needs a
 * subject, and it must be its own; the other scopes ignore it.
 */
export function allows(principal: Principal, operation: ConsoleOperation, subject?: string | null): boolean {
  const access = accessOf(operation);
  if (!scopeAllows(principal, access)) return false;
  if (subjectRule(principal, access) === null) return true;
  return subject !== undefined && subject !== null && subject === principal.subject_id;
}

/** What the 403 page says is needed. */
export function scopesNeeded(operation: ConsoleOperation): string[] {
  return scopesOf(accessOf(operation));
}
