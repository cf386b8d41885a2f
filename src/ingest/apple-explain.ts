/**
 * Explain for Apple's postbacks: the same dry run as a postback's (docs/apple-postbacks.md#explain):
 * the string Apple's signature should cover (SKAdNetwork) or the JWS's key and signed payload
 * (AdAttributionKit), the verdict and its reason, which network receives it, the source and
 * whether it won, the hub's postback it becomes, then the decision, attribution and partners as
 * any explain shows them. Stores and sends nothing.
 */

import { sourceOf } from "../domain/apple-receiver";
import type { Postback } from "../domain/postback";
import { type FieldError, ProblemError } from "../errors";
import {
  type AppleIngestDeps,
  adNetworkIdOf,
  applePostback,
  didWin,
  parseApple,
  sourceKeyOf,
  verifyApple,
} from "./apple";
import { parseJson, readRawBody } from "./body";
import { type ExplainDeps, type ExplainedOutcome, explainOutcome } from "./explain";
import { resolveNetwork } from "./ingest";

export interface AppleExplanation extends ExplainedOutcome {
  network: { id: string; status: string; test_mode: boolean; ad_network_ids: string[] };
  framework: "skadnetwork" | "adattributionkit" | null;
  validation: { ok: boolean; errors: FieldError[] };
  verification: {
    ok: boolean;
    reason: string | null;
    /** SKAdNetwork: the version's signed fields joined with U+2063, as rebuilt. */
    signed_string: string | null;
    /** AdAttributionKit: the key's id and the signed payload, once verified. */
    kid: string | null;
    signed_payload: Record<string, unknown> | null;
  };
  ad_network_id: string | null;
  /** The network receives Apple's postbacks for that ad network id. */
  receives: boolean;
  did_win: boolean | null;
  source: { key: string | null; mapped_key: string | null; campaign_id: string | null; partner_id: string | null };
  postback: Postback | null;
  test: boolean;
}

export async function explainApple(
  networkId: string,
  request: Request,
  deps: AppleIngestDeps & ExplainDeps,
): Promise<AppleExplanation> {
  const auth = await resolveNetwork(networkId, deps);
  const network = auth.network;
  const explanation: AppleExplanation = {
    network: {
      id: network.id,
      status: network.status,
      test_mode: network.test_mode,
      ad_network_ids: network.apple?.ad_network_ids ?? [],
    },
    framework: null,
    validation: { ok: false, errors: [] },
    verification: { ok: false, reason: null, signed_string: null, kid: null, signed_payload: null },
    ad_network_id: null,
    receives: false,
    did_win: null,
    source: { key: null, mapped_key: null, campaign_id: null, partner_id: null },
    postback: null,
    test: network.test_mode,
    decision: null,
    attribution: null,
    partners: [],
  };
  const parsed = parseApple(parseJson(await readRawBody(request, deps.maxBodyBytes)));
  if (!parsed.ok) {
    explanation.validation = { ok: false, errors: parsed.errors };
    return explanation;
  }
  explanation.framework = parsed.parsed.kind;
  explanation.validation = { ok: true, errors: [] };
  const verification = await verifyApple(parsed.parsed, deps.appleKeys);
  if (!verification.ok) {
    explanation.verification = {
      ...explanation.verification,
      reason: verification.reason,
      signed_string: verification.signed,
    };
    return explanation;
  }
  const { verified } = verification;
  explanation.verification = {
    ok: true,
    reason: null,
    signed_string: verified.kind === "skadnetwork" ? verified.signed : null,
    kid: verified.kind === "adattributionkit" ? verified.kid : null,
    signed_payload: verified.kind === "adattributionkit" ? verified.payload : null,
  };
  const adNetworkId = adNetworkIdOf(verified);
  const receiver = network.apple;
  explanation.ad_network_id = adNetworkId;
  explanation.receives = receiver?.ad_network_ids.includes(adNetworkId) ?? false;
  explanation.did_win = didWin(verified);
  const key = sourceKeyOf(verified);
  const mapped = receiver ? sourceOf(receiver, key) : null;
  explanation.source = {
    key,
    mapped_key: mapped?.key ?? null,
    campaign_id: mapped?.source.campaign_id ?? null,
    partner_id: mapped?.source.partner_id ?? null,
  };
  if (!receiver || !explanation.receives) return explanation;
  let postback: Postback;
  try {
    postback = applePostback(verified, receiver);
  } catch (error) {
    // Signed, yet not a conversion the hub can keep (ingest answers 422): shown, not thrown.
    if (!(error instanceof ProblemError) || error.code !== "validation_failed") throw error;
    explanation.validation = { ok: false, errors: error.errors };
    return explanation;
  }
  const test = network.test_mode || verified.test;
  explanation.postback = postback;
  explanation.test = test;
  Object.assign(explanation, await explainOutcome(network.id, postback, test, deps));
  return explanation;
}
