/** From a partner and a delivery to the exact request the partner receives (shared by sending and preview). */

import type { Click } from "../domain/click";
import { SUB_ID_NAMES, type SubIdName } from "../domain/offer";
import type { DeliveryPayload, Partner } from "../domain/partner";
import { type PartnerRequest, signatureHeaders, signedContent } from "./partner-client";
import {
  CONVERSION_MACROS,
  defaultBody,
  dotSegmentFromValues,
  type MacroValues,
  renderBody,
  renderUrl,
} from "./template";
import { checkOutboundUrl } from "./url-safety";

/** What a delivery renders besides its payload: who it goes to, and the click's record if D1 has it. */
export interface RenderContext {
  partner?: Pick<Partner, "routing" | "share_amount"> | undefined;
  click?: Pick<Click, SubIdName> | null | undefined;
}

export function macroValues(
  payload: DeliveryPayload,
  deliveryId: string,
  attempt: number,
  context: RenderContext = {},
): MacroValues {
  const c = payload.conversion;
  const a = payload.attribution;
  // An attributed partner sees its payout; the network's amount only when the operator shares it.
  const hideAmount = context.partner?.routing === "attributed" && !context.partner.share_amount;
  return {
    values: {
      transaction_id: payload.transaction_id,
      network_id: payload.network_id,
      ...Object.fromEntries(CONVERSION_MACROS.map((field) => [field, c[field]])),
      ...(hideAmount ? { amount: undefined, currency: undefined } : {}),
      // The partner credited, when there is one; else the partner the network named.
      partner_id: a?.partner_id ?? c.partner_id,
      attribution: a?.verdict,
      offer_id: a?.offer_id ?? undefined,
      clicked_at: a?.clicked_at ?? undefined,
      payout: a?.payout ?? undefined,
      previous_payout: a?.previous_payout ?? undefined,
      payout_currency: a?.payout_currency ?? undefined,
      ...Object.fromEntries(SUB_ID_NAMES.map((name) => [name, context.click?.[name] ?? undefined])),
      source: c.source ?? "s2s",
      previous_status: payload.previous_status,
      event_time: c.event_time,
      event_id: payload.event_id,
      delivery_id: deliveryId,
      attempt,
      verdict: payload.verdict,
      received_at: payload.received_at,
      test: payload.test === true,
    },
    meta: c.meta ?? {},
  };
}

/** A template that cannot make a valid request for this conversion (checked before anything is sent). */
export class RenderError extends Error {
  override name = "RenderError";
}

/**
 * The request without signature headers (they depend on the moment it is sent). A value a
 * conversion lacks never stops it: it renders empty, or `null` where it stands unquoted in a body.
 * What is refused here cannot be sent faithfully: a body that is still not JSON (a text value where
 * the template wants a number, `{"n":{meta.n}}` with `n` "seven", or a template saved before the
 * checks of today), and a value that would make a `.` or `..` path segment, which the URL parser
 * would resolve.
 */
export function renderRequest(partner: Partner, values: MacroValues): PartnerRequest {
  const dots = dotSegmentFromValues(partner.url_template, values);
  if (dots !== null) {
    const macros = dots.macros.map((name) => `{${name}}`).join(", ");
    throw new RenderError(
      `${macros} would make the path segment "${dots.segment}" for this conversion, and the URL parser resolves "." and ".." segments (in any spelling), so the request would go to another path; this value can only be delivered in the query`,
    );
  }
  let body: string | null = null;
  if (partner.method === "POST") {
    body = partner.body_template === null ? defaultBody(values) : renderBody(partner.body_template, values);
    try {
      JSON.parse(body);
    } catch (error) {
      throw new RenderError(`the body template rendered invalid JSON for this conversion: ${String(error)}`);
    }
  }
  return {
    method: partner.method,
    url: renderUrl(partner.url_template, values),
    headers: { ...partner.headers },
    body,
  };
}

/** Where a request can go once it is rendered: to the partner, or nowhere, and why. */
export type BuiltRequest =
  | { ok: true; request: PartnerRequest }
  /** `render`: the templates cannot make a valid request for this conversion; `blocked`: its URL may not be connected to. */
  | { ok: false; error_class: "render" | "blocked"; reason: string };

export interface Signing {
  keys: readonly CryptoKey[];
  deliveryId: string;
  timestampSeconds: number;
}

/**
 * The exact request a partner receives, built the one way the delivery consumer, the partner
 * preview and explain all use: render the templates, judge the rendered URL as `fetch` will parse
 * it (with the rules in force now, not those of when the partner was saved), and sign it (a POST
 * over its body, a GET over its request line) with the keys `signing` gives; it is asked only once
 * the request can go, so a request that could not be sent never costs a key lookup. A request that
 * cannot be built says why instead of throwing.
 */
export async function buildPartnerRequest(
  partner: Partner,
  values: MacroValues,
  options: { allowInsecure: boolean; signing?: (() => Promise<Signing | null>) | undefined },
): Promise<BuiltRequest> {
  let request: PartnerRequest;
  try {
    request = renderRequest(partner, values);
  } catch (error) {
    if (!(error instanceof RenderError)) throw error;
    return { ok: false, error_class: "render", reason: error.message };
  }
  const target = checkOutboundUrl(request.url, { allowInsecure: options.allowInsecure });
  if (!target.ok) return { ok: false, error_class: "blocked", reason: target.reason };
  request.url = target.url.href;
  const signing = options.signing ? await options.signing() : null;
  if (signing && signing.keys.length > 0) {
    const content = signedContent(request.method, target.url, request.body);
    Object.assign(
      request.headers,
      await signatureHeaders(signing.keys, signing.deliveryId, signing.timestampSeconds, content),
    );
  }
  return { ok: true, request };
}
