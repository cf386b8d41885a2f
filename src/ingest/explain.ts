/**
 * Explain: a dry run of the ingest pipeline that shows, step by step, how a request would be
 * handled: authentication (with what the sender should have signed), mapping, validation, the
 * dedupe decision against the conversion's current state, and which partners would be notified
 * and why. It stores and sends nothing. The rendered requests (URLs, bodies, headers: often a
 * partner's API keys) are shown to the admin only: a network explaining with its own credentials
 * is an outside party, and learns of each partner only whether it would be notified and why.
 */
import { deliveryAttribution, type EventAttribution } from "../attribution/event-attribution";
import { partnerReceives, type RoutedEvent } from "../delivery/partner";
import type { PartnerRequest } from "../delivery/partner-client";
import { buildPartnerRequest, macroValues } from "../delivery/render";
import { type ConversionFields, conversionObjectName, type IngestAnswer, type RecordInput } from "../domain/conversion";
import type { EventMessage } from "../domain/messages";
import type { DeliveryPayload, Partner } from "../domain/partner";
import type { Postback } from "../domain/postback";
import type { FieldError } from "../errors";
import { ProblemError } from "../errors";
import { carriedMethods } from "./authenticate";
import {
  authenticateRequest,
  candidateOf,
  checkCandidate,
  type IngestDeps,
  protectIdentifiers,
  readPayload,
  resolveNetwork,
  testMarker,
} from "./ingest";

export interface ExplainDeps extends IngestDeps {
  /** The operator's view: partners' rendered requests, payouts and templates are shown. */
  isAdmin: boolean;
  /** The caller presented a hub key (the operator's or the network's own): failed network credentials still explain. */
  keyHolder: boolean;
  /** ALLOW_INSECURE_PARTNER_URLS now, as the delivery consumer would judge the URL. */
  allowInsecurePartnerUrls: boolean;
  partners(): Promise<Partner[]>;
  /** Attributes the event as the events consumer would (reading D1, never writing). */
  attribute(event: EventMessage, partners: readonly Partner[]): Promise<EventAttribution | null>;
  peek(
    name: string,
    input: RecordInput,
  ): Promise<
    (
      | { ok: true; answer: IngestAnswer; current_status: string | null }
      | { ok: false; conversion_status: string; errors: FieldError[]; current_status: string | null }
    ) & { merged?: { fields: ConversionFields; first_seen_at: string } | null }
  >;
}

export interface Explanation {
  network: { id: string; status: string; test_mode: boolean; auth_methods: string[]; ip_allowlist: string[] };
  payload: { kind: string; parameters: [string, string][] };
  authentication: {
    ok: boolean;
    method: string | null;
    carried: string[];
    failure: { location: string; message: string } | null;
    signed_content: string | null;
  };
  test: boolean;
  mapping: { used: Record<string, string>; meta_keys: string[]; ignored: string[] } | null;
  candidate: unknown;
  validation: { ok: boolean; errors: FieldError[] };
  decision: { verdict: string; current_status: string | null; conversion_status: string; errors: FieldError[] } | null;
  /** Whose conversion it would be; the payout is shown to the admin only. */
  attribution: ExplainedAttribution | null;
  partners: PartnerExplanation[];
}

export interface ExplainedAttribution {
  verdict: string;
  detail: string;
  offer_id: string | null;
  partner_id: string | null;
  clicked_at: string | null;
  attribution_window_days: number | null;
  payout?: { amount: string; currency: string; previous: string | null } | null;
}

export interface PartnerExplanation {
  partner_id: string;
  name: string;
  /** A request would be sent to this partner now. */
  notified: boolean;
  reason: string;
  /** Admin only: the request as it would be sent (null when none would be), signature headers aside. */
  request?: PartnerRequest | null;
}

const SECRET_PARAMS = new Set(["token", "pb_sig"]);

export async function explainPostback(networkId: string, request: Request, deps: ExplainDeps): Promise<Explanation> {
  const resolved = await resolveNetwork(networkId, deps);
  const payload = await readPayload(request, deps.maxBodyBytes);
  const { auth, result } = await authenticateRequest(networkId, resolved, request, payload, deps);
  if (deps.trace) {
    deps.trace.body = payload.body;
    if (result.ok) Object.assign(deps.trace, { authMethod: result.method, credentialId: result.credentialId });
  }
  if (!result.ok && !deps.keyHolder) {
    throw new ProblemError(
      "unauthorized",
      `Explain needs the admin token or this network's valid credentials: ${result.message}.`,
      [{ location: result.location, message: result.message }],
    );
  }
  // The operator's dry runs are not the network's traffic; a network's own key (a portal user) is.
  if (!deps.isAdmin && !(await deps.withinRateLimit(networkId))) {
    throw new ProblemError("rate_limited", `Network "${networkId}" is over its rate limit.`, [], {
      "retry-after": "60",
    });
  }
  const network = auth.network;
  // A marker outside the signature fails the request as its authentication would.
  const marker = testMarker(auth, request, payload, result.ok ? result.method : null);
  const failure = !result.ok
    ? { location: result.location, message: result.message }
    : marker.ok
      ? null
      : { location: marker.location, message: marker.message };
  const requestTest = marker.ok && marker.test;
  const explanation: Explanation = {
    network: {
      id: network.id,
      status: network.status,
      test_mode: network.test_mode,
      auth_methods: network.auth.methods,
      ip_allowlist: network.auth.ip_allowlist,
    },
    payload: {
      kind: payload.kind,
      // Credentials are never echoed back.
      parameters: payload.params.map(([k, v]) => [k, SECRET_PARAMS.has(k) ? "(hidden)" : v]),
    },
    authentication: {
      ok: failure === null,
      method: result.ok ? result.method : null,
      carried: carriedMethods({ request, params: payload.params }),
      failure,
      signed_content: result.ok ? null : (result.signedContent ?? null),
    },
    test: requestTest,
    mapping: null,
    candidate: null,
    validation: { ok: false, errors: [] },
    decision: null,
    attribution: null,
    partners: [],
  };

  let built: ReturnType<typeof candidateOf>;
  try {
    built = candidateOf(auth, payload, result.ok ? result.method : null);
    if (built.mapping) {
      explanation.mapping = {
        used: built.mapping.used,
        meta_keys: built.mapping.meta_keys,
        ignored: built.mapping.ignored,
      };
    }
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    explanation.validation = { ok: false, errors: error.errors };
    return explanation;
  }
  explanation.candidate = built.value;
  const checked = checkCandidate(built, payload);
  if (!checked.ok) {
    explanation.validation = { ok: false, errors: checked.errors };
    return explanation;
  }
  explanation.validation = { ok: true, errors: [] };
  // Decided and rendered as it would be recorded: with this network's identifiers hashed.
  const postback = await protectIdentifiers(auth, checked.postback, deps);
  const test = requestTest || postback.test === true;
  explanation.test = test;
  Object.assign(explanation, await explainOutcome(networkId, postback, test, deps));
  return explanation;
}

/** What explain says of a valid postback: the dedupe decision, the attribution, each partner's verdict. */
export type ExplainedOutcome = Pick<Explanation, "decision" | "attribution" | "partners">;

/**
 * The outcome of recording `postback` now, without recording it: the object's decision (peek),
 * then, for an event that would apply, its attribution and each partner's verdict, as the events
 * and delivery consumers would reach them. Shared by every explain (postbacks and Apple's).
 */
export async function explainOutcome(
  networkId: string,
  postback: Postback,
  test: boolean,
  deps: ExplainDeps,
): Promise<ExplainedOutcome> {
  const outcome: ExplainedOutcome = { decision: null, attribution: null, partners: [] };
  const receivedAt = new Date(deps.nowMs).toISOString();
  const peeked = await deps.peek(conversionObjectName(networkId, postback.transaction_id, test), {
    network_id: networkId,
    transaction_id: postback.transaction_id,
    postback,
    test,
    received_at: receivedAt,
  });
  outcome.decision = peeked.ok
    ? {
        verdict: peeked.answer.status,
        current_status: peeked.current_status,
        conversion_status: peeked.answer.conversion_status,
        errors: [],
      }
    : {
        verdict: "conflict",
        current_status: peeked.current_status,
        conversion_status: peeked.conversion_status,
        errors: peeked.errors,
      };
  if (!peeked.ok || (peeked.answer.status !== "accepted" && peeked.answer.status !== "updated")) return outcome;

  // An update is attributed as the conversion it leaves (a status update rarely repeats the click
  // id), with the window from when the conversion was first seen, as the events consumer does.
  const conversion = {
    ...postback,
    ...peeked.merged?.fields,
    event_time: postback.event_time ?? receivedAt,
    first_seen_at: peeked.merged?.first_seen_at ?? receivedAt,
    version: 1,
  };
  const partners = await deps.partners();
  const attributed = await deps.attribute(
    {
      v: 1,
      event_id: "(not recorded)",
      network_id: networkId,
      transaction_id: postback.transaction_id,
      // After every recorded event, so the payout before it is the conversion's latest.
      seq: Number.MAX_SAFE_INTEGER,
      verdict: peeked.answer.status,
      previous_status: (peeked.current_status as DeliveryPayload["previous_status"]) ?? null,
      event: postback,
      received_at: receivedAt,
      test,
      conversion,
    },
    partners,
  );
  if (attributed) {
    outcome.attribution = {
      ...attributed.attribution,
      attribution_window_days: attributed.offer?.attribution_window_days ?? null,
      ...(deps.isAdmin ? { payout: attributed.payout } : {}),
    };
  }
  const routed: RoutedEvent = {
    network_id: networkId,
    test,
    conversion,
    attributed_partner_id: attributed?.attribution.partner_id ?? null,
  };
  const deliveryPayload: DeliveryPayload = {
    network_id: networkId,
    transaction_id: postback.transaction_id,
    event_id: "(not recorded)",
    verdict: peeked.answer.status,
    received_at: receivedAt,
    previous_status: (peeked.current_status as DeliveryPayload["previous_status"]) ?? null,
    test,
    conversion,
    ...(attributed ? { attribution: deliveryAttribution(attributed) } : {}),
  };
  // A network explaining with its own credentials sees only the partners that could receive its
  // events, and of them only names and verdicts.
  const visible = partners.filter(
    (p) => deps.isAdmin || !p.filters.networks?.length || p.filters.networks.includes(networkId),
  );
  for (const partner of visible) {
    const values = macroValues(deliveryPayload, "(assigned when recorded)", 1, { partner });
    const verdict = await partnerVerdict(partner, routed, values, deps.allowInsecurePartnerUrls);
    const { request, detail, ...seen } = verdict;
    const reason = deps.isAdmin && detail !== undefined ? `${seen.reason}: ${detail}` : seen.reason;
    outcome.partners.push({
      partner_id: partner.id,
      name: partner.name,
      notified: seen.notified,
      reason,
      ...(deps.isAdmin ? { request } : {}),
    });
  }
  return outcome;
}

interface PartnerVerdict {
  notified: boolean;
  /** What anyone explaining may read. */
  reason: string;
  /** What only the admin may read: it can quote the partner's template. */
  detail?: string;
  request: PartnerRequest | null;
}

/** What the events and delivery consumers would do with this event for this partner, without sending. */
async function partnerVerdict(
  partner: Partner,
  routed: RoutedEvent,
  values: ReturnType<typeof macroValues>,
  allowInsecure: boolean,
): Promise<PartnerVerdict> {
  if (!partnerReceives(partner, routed)) {
    const reason =
      routed.test && !partner.receives_test_traffic
        ? "does not take test traffic"
        : partner.routing === "attributed" && routed.attributed_partner_id !== partner.id
          ? "is an attributed partner, and this conversion is not attributed to it"
          : "its filters exclude this event";
    return { notified: false, reason, request: null };
  }
  if (partner.status !== "active") {
    return { notified: false, reason: "is disabled: the delivery would be parked", request: null };
  }
  // Built as the delivery consumer builds it (unsigned: a signature depends on the moment of sending).
  const built = await buildPartnerRequest(partner, values, { allowInsecure });
  if (built.ok) return { notified: true, reason: "would be notified", request: built.request };
  const reason =
    built.error_class === "render"
      ? "the delivery would fail: its request cannot be rendered for this conversion"
      : "the delivery would fail: its URL would be blocked before sending";
  return { notified: false, reason, detail: built.reason, request: null };
}
