/**
 * Explain: a dry run of the ingest pipeline that shows, step by step, how a request would be
 * handled: authentication (with what the sender should have signed), mapping, validation, the
 * dedupe decision against the conversion's current state, and which partners would be notified
 * with their rendered requests. It stores and sends nothing.
 */
import { conversionObjectName, type IngestAnswer, type RecordInput } from "../conversions/conversion-object";
import { type DeliveryPayload, type Partner, partnerReceives, type RoutedEvent } from "../delivery/partner";
import type { PartnerRequest } from "../delivery/partner-client";
import { macroValues, RenderError, renderRequest } from "../delivery/render";
import type { FieldError } from "../errors";
import { ProblemError } from "../errors";
import { carriedMethods } from "./authenticate";
import {
  authenticateRequest,
  candidateOf,
  checkCandidate,
  type IngestDeps,
  isTest,
  readPayload,
  resolveNetwork,
} from "./ingest";

export interface ExplainDeps extends IngestDeps {
  /** True when the caller presented the admin token (then failed network credentials still explain). */
  isAdmin: boolean;
  partners(): Promise<Partner[]>;
  peek(
    name: string,
    input: RecordInput,
  ): Promise<
    | { ok: true; answer: IngestAnswer; current_status: string | null }
    | { ok: false; conversion_status: string; errors: FieldError[]; current_status: string | null }
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
  partners: {
    partner_id: string;
    name: string;
    notified: boolean;
    reason: string;
    request: PartnerRequest | null;
  }[];
}

const SECRET_PARAMS = new Set(["token", "pb_sig"]);

export async function explainPostback(networkId: string, request: Request, deps: ExplainDeps): Promise<Explanation> {
  const resolved = await resolveNetwork(networkId, deps);
  const payload = await readPayload(request, deps.maxBodyBytes);
  const { auth, result } = await authenticateRequest(networkId, resolved, request, payload, deps);
  if (!result.ok && !deps.isAdmin) {
    throw new ProblemError(
      "unauthorized",
      `Explain needs the admin token or this network's valid credentials: ${result.message}.`,
      [{ location: result.location, message: result.message }],
    );
  }
  if (!deps.isAdmin && !(await deps.withinRateLimit(networkId))) {
    throw new ProblemError("rate_limited", `Network "${networkId}" is over its rate limit.`, [], {
      "retry-after": "60",
    });
  }
  const network = auth.network;
  const test = isTest(auth, request, payload);
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
      ok: result.ok,
      method: result.ok ? result.method : null,
      carried: carriedMethods({ request, params: payload.params }),
      failure: result.ok ? null : { location: result.location, message: result.message },
      signed_content: result.ok ? null : (result.signedContent ?? null),
    },
    test,
    mapping: null,
    candidate: null,
    validation: { ok: false, errors: [] },
    decision: null,
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
  const postback = checked.postback;
  const receivedAt = new Date(deps.nowMs).toISOString();
  const peeked = await deps.peek(conversionObjectName(networkId, postback.transaction_id, test), {
    network_id: networkId,
    transaction_id: postback.transaction_id,
    postback,
    test,
    received_at: receivedAt,
  });
  explanation.decision = peeked.ok
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
  if (!peeked.ok || (peeked.answer.status !== "accepted" && peeked.answer.status !== "updated")) return explanation;

  const routed: RoutedEvent = { network_id: networkId, test, conversion: postback };
  const deliveryPayload: DeliveryPayload = {
    network_id: networkId,
    transaction_id: postback.transaction_id,
    event_id: "(not recorded)",
    verdict: peeked.answer.status,
    received_at: receivedAt,
    previous_status: (peeked.current_status as DeliveryPayload["previous_status"]) ?? null,
    test,
    conversion: { ...postback, event_time: postback.event_time ?? receivedAt, first_seen_at: receivedAt, version: 1 },
  };
  // A network explaining with its own credentials sees only the partners that could receive its
  // events, and never their configured header values (they may hold the partner's API keys).
  const visible = (await deps.partners()).filter(
    (p) => deps.isAdmin || !p.filters.networks?.length || p.filters.networks.includes(networkId),
  );
  for (const partner of visible) {
    const receives = partnerReceives(partner, routed);
    const reason = !receives
      ? test && !partner.receives_test_traffic
        ? "does not take test traffic"
        : "its filters exclude this event"
      : partner.status !== "active"
        ? "is disabled: the delivery would be parked"
        : "would be notified";
    let request: PartnerRequest | null = null;
    if (receives) {
      try {
        request = renderRequest(partner, macroValues(deliveryPayload, "(assigned when recorded)", 1));
        if (!deps.isAdmin) {
          request.headers = Object.fromEntries(Object.keys(request.headers).map((name) => [name, "(hidden)"]));
        }
      } catch (error) {
        if (!(error instanceof RenderError)) throw error;
      }
    }
    explanation.partners.push({ partner_id: partner.id, name: partner.name, notified: receives, reason, request });
  }
  return explanation;
}
