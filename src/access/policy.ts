/**
 * Which scopes may call each admin operation (docs/access.md). Every operation of the admin API has
 * an entry here, or the app refuses to start (src/app.ts), so a new route cannot be reachable by a
 * scope nobody chose. Reads default to operator and read-only, writes to operator; the operations
 * that issue or rotate a credential, and API keys, are admin only. A network or partner key reaches
 * an operation only through a rule naming where its network or partner is: a path parameter, a
 * query parameter it must send, or the record the path names (checked against D1 before the handler).
 */
import type { Principal, Scope } from "../domain/access";

/** Where the network (or partner) a request concerns is named, for a key reaching only one. */
export type SubjectRule = { path: string } | { query: string } | { owner: "delivery" | "inbound-request" };

export interface Access {
  /** The scopes besides admin (which may call everything) that may call it. */
  scopes: readonly Exclude<Scope, "admin" | "network" | "partner">[];
  network?: SubjectRule;
  partner?: SubjectRule;
}

const READ: Access = { scopes: ["operator", "read-only"] };
const WRITE: Access = { scopes: ["operator"] };
const ADMIN_ONLY: Access = { scopes: [] };

/** Every admin operation, by operationId. */
export const ACCESS: Record<string, Access> = {
  // Networks: creating one and rotating its credentials answer with a credential.
  createNetwork: ADMIN_ONLY,
  listNetworks: READ,
  getNetwork: { ...READ, network: { path: "network_id" } },
  updateNetwork: WRITE,
  enableNetwork: WRITE,
  disableNetwork: WRITE,
  rotateNetworkSecret: ADMIN_ONLY,
  rotateNetworkToken: ADMIN_ONLY,
  // A dry run of an Apple postback: stores nothing; a network's own key explains its own.
  explainApplePostback: { ...READ, network: { path: "network_id" } },
  // Conversions.
  listConversions: { ...READ, network: { query: "network_id" } },
  getConversion: { ...READ, network: { path: "network_id" } },
  getConversionProof: { ...READ, network: { path: "network_id" } },
  // Attempts hold partners' answers: no network key; a partner reads its own through listDeliveries.
  getConversionDeliveries: READ,
  // Reports: a network's key sees its own network's numbers, without the partners' payouts.
  getStats: { ...READ, network: { query: "network_id" } },
  // Reconciliation: a correction is an operator's event on a network's conversions.
  createReconciliation: WRITE,
  listReconciliations: READ,
  getReconciliation: READ,
  listReconciliationDifferences: READ,
  applyReconciliationCorrections: WRITE,
  // Monitoring: what a scraper reads, with a read-only key.
  getMetrics: READ,
  listAlerts: READ,
  listAlertRules: READ,
  updateAlertRule: WRITE,
  // A channel's creation answers with its signing secret: admin only, like every credential.
  createAlertChannel: ADMIN_ONLY,
  listAlertChannels: READ,
  testAlertChannel: WRITE,
  deleteAlertChannel: WRITE,
  // The send log (`default`: ALERT_URL's) is read like the alerts; a replay sends again, as a test does.
  listAlertSends: READ,
  resendAlert: WRITE,
  resendGivenUpAlerts: WRITE,
  // Partners: creating one with `sign` answers with its signing secret.
  createPartner: ADMIN_ONLY,
  listPartners: READ,
  getPartner: { ...READ, partner: { path: "partner_id" } },
  updatePartner: WRITE,
  deletePartner: WRITE,
  disablePartner: WRITE,
  enablePartner: WRITE,
  rotatePartnerSecret: ADMIN_ONLY,
  previewPartnerRequest: WRITE,
  replayPartnerDeliveries: { ...WRITE, partner: { path: "partner_id" } },
  // Offers.
  createOffer: WRITE,
  listOffers: READ,
  getOffer: READ,
  updateOffer: WRITE,
  pauseOffer: WRITE,
  resumeOffer: WRITE,
  // Deliveries and recovery.
  listDeliveries: { ...READ, partner: { query: "partner_id" } },
  getDelivery: { ...READ, partner: { owner: "delivery" } },
  replayDelivery: { ...WRITE, partner: { owner: "delivery" } },
  createReplay: WRITE,
  listReplays: READ,
  getReplay: READ,
  listDeadLetters: READ,
  getDeadLetter: READ,
  replayDeadLetter: WRITE,
  // The inbound log.
  listInboundRequests: { ...READ, network: { path: "network_id" } },
  listUnloggedRequests: { ...READ, network: { query: "network_id" } },
  getInboundRequest: { ...READ, network: { owner: "inbound-request" } },
  // Privacy.
  createErasure: WRITE,
  listErasures: READ,
  getErasure: READ,
  // Access itself.
  createApiKey: ADMIN_ONLY,
  listApiKeys: ADMIN_ONLY,
  getApiKey: ADMIN_ONLY,
  updateApiKey: ADMIN_ONLY,
  rotateApiKey: ADMIN_ONLY,
  listAuditLog: { scopes: ["operator"] },
};

/** The rule a network or partner key must meet for `access`, or null when its scope has none. */
export function subjectRule(principal: Principal, access: Access): SubjectRule | null {
  if (principal.scope === "network") return access.network ?? null;
  if (principal.scope === "partner") return access.partner ?? null;
  return null;
}

/** Whether a key of `principal`'s scope may call the operation at all (its subject is checked apart). */
export function scopeAllows(principal: Principal, access: Access): boolean {
  switch (principal.scope) {
    case "admin":
      return true;
    case "operator":
    case "read-only":
      return access.scopes.includes(principal.scope);
    case "network":
    case "partner":
      return subjectRule(principal, access) !== null;
    default:
      return principal.scope satisfies never;
  }
}

/** The scopes that may call the operation, as the API reference lists them. */
export function scopesOf(access: Access): string[] {
  return [
    "admin",
    ...access.scopes,
    ...(access.network ? ["network (its own)"] : []),
    ...(access.partner ? ["partner (its own)"] : []),
  ];
}
