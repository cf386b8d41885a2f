/**
 * The browser pixel: for advertisers who can only fire `<img src="…/p/{offer_id}.gif?…">` on
 * their thank-you page. A pixel carries no secret, so it is authenticated by what it can prove:
 * a click id the hub minted for this offer, fired from a page of one of the offer's allowed
 * origins. It goes through the same Durable Object as the network's server-to-server postback
 * for the same transaction (recorded with source `pixel`): the postback then confirms or
 * corrects it, and is never a second conversion. Same budget as a postback: one object call.
 */
import { conversionObjectName, type IngestAnswer } from "../domain/conversion";
import { OFFER_ID_PATTERN, type Offer } from "../domain/offer";
import { PostbackSchema } from "../domain/postback";
import { ProblemError, validationFailed, validationProblem } from "../errors";
import { readClickId } from "../lib/click-id";
import type { NetworkAuth } from "../networks/network-cache";
import type { ConversionRecorder } from "./ingest";

export interface PixelDeps {
  nowMs: number;
  loadOffer(id: string): Promise<Offer | null>;
  loadNetwork(id: string): Promise<NetworkAuth | null>;
  clickKey(): Promise<CryptoKey>;
  /** False when the offer's network is over its rate limit. */
  withinRateLimit(networkId: string): Promise<boolean>;
  conversion(name: string): ConversionRecorder;
}

/** What a pixel may say: the rest of a conversion is the network's to tell. */
const PIXEL_PARAMS = ["transaction_id", "click_id", "amount", "currency", "event_type"] as const;

/** The 1×1 transparent GIF every recorded pixel answers with. */
export const PIXEL_GIF = Uint8Array.from(atob("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"), (ch) =>
  ch.charCodeAt(0),
);

export async function ingestPixel(offerId: string, request: Request, deps: PixelDeps): Promise<IngestAnswer> {
  // Anyone can fire a pixel: a name that cannot be an offer's costs no D1 read and no cache entry.
  const offer = OFFER_ID_PATTERN.test(offerId) ? await deps.loadOffer(offerId) : null;
  if (!offer)
    throw new ProblemError("not_found", `No offer "${offerId}".`, [
      { location: "path.offer_id", message: "not found" },
    ]);
  if (offer.status === "paused") throw new ProblemError("offer_paused", `The offer "${offerId}" is paused.`);
  requireAllowedOrigin(offer, request);
  const query = new URL(request.url).searchParams;
  const clickId = query.get("click_id") ?? "";
  const reading = clickId ? await readClickId(await deps.clickKey(), clickId) : null;
  if (!reading?.ok || reading.click.offer_id !== offer.id) {
    throw new ProblemError("unauthorized", "A pixel is authenticated by a click id the hub minted for this offer.", [
      {
        location: "query.click_id",
        message: !clickId
          ? "is required"
          : reading?.ok
            ? "is a click on another offer"
            : "is not a click id of this hub",
      },
    ]);
  }
  const network = await deps.loadNetwork(offer.network_id);
  if (!network) throw new ProblemError("not_found", `The offer's network "${offer.network_id}" no longer exists.`);
  if (network.network.status !== "active") {
    throw new ProblemError("network_disabled", `The offer's network "${offer.network_id}" is disabled.`);
  }
  // A pixel proves no sale, so it reports one pending: approving, paying or reversing is the
  // network's to say, through its own authenticated postback.
  const status = query.get("status");
  if (status !== null && status !== "" && status !== "pending") {
    throw validationFailed([
      {
        location: "query.status",
        message: "a pixel reports a pending conversion only; the network's postback approves it",
      },
    ]);
  }
  const candidate: Record<string, string> = { status: "pending" };
  for (const name of PIXEL_PARAMS) {
    const value = query.get(name);
    if (value !== null && value !== "") candidate[name] = value;
  }
  const parsed = PostbackSchema.safeParse(candidate);
  if (!parsed.success) throw validationProblem("query", parsed.error);
  if (!(await deps.withinRateLimit(offer.network_id))) {
    throw new ProblemError("rate_limited", `Network "${offer.network_id}" is over its rate limit.`, [], {
      "retry-after": "60",
    });
  }
  const postback = parsed.data;
  const result = await deps.conversion(conversionObjectName(offer.network_id, postback.transaction_id, false)).record({
    network_id: offer.network_id,
    transaction_id: postback.transaction_id,
    postback,
    received_at: new Date(deps.nowMs).toISOString(),
    source: "pixel",
  });
  if (!result.ok) {
    throw new ProblemError(
      "conversion_conflict",
      `Transaction "${postback.transaction_id}" is ${result.conversion_status}; this pixel contradicts it.`,
      // Anyone holding a click id of the offer can fire a pixel: name the fields that differ, never
      // the recorded values (another partner's click id, the order's amount).
      result.errors.map((e) => ({
        location: e.location.replace(/^body\./, "query."),
        message: "differs from the recorded conversion",
      })),
    );
  }
  return result.answer;
}

/**
 * The page that fired the pixel, by its Origin or, for an `<img>` (which sends none), its
 * Referer's origin: it must be one the offer allows. A pixel from anywhere else is refused.
 */
function requireAllowedOrigin(offer: Offer, request: Request): void {
  const allowed = offer.pixel.allowed_origins.map((o) => o.replace(/\/$/, ""));
  if (allowed.length === 0) {
    throw new ProblemError(
      "forbidden_origin",
      `The offer "${offer.id}" takes no pixel: its pixel.allowed_origins is empty.`,
    );
  }
  const referer = request.headers.get("referer");
  const origin = request.headers.get("origin") ?? (referer && URL.canParse(referer) ? new URL(referer).origin : null);
  if (!origin || !allowed.includes(origin)) {
    throw new ProblemError("forbidden_origin", "The pixel was not fired from a page the offer allows.", [
      {
        location: origin ? "header.origin" : "header.referer",
        message: origin
          ? `${origin} is not among the offer's pixel.allowed_origins`
          : "is missing: the page's origin is needed",
      },
    ]);
  }
}
