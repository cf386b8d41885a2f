/**
 * A network as a receiver of Apple's postbacks (docs/apple-postbacks.md): the ad network ids Apple
 * registered for it (the signed `ad-network-id` of SKAdNetwork, `ad-network-identifier` of
 * AdAttributionKit), and what each source identifier (or, before SKAdNetwork 4.0, campaign id)
 * means to the hub: the offer's campaign id, and the partner that owns the source. A mapped source
 * makes a winning postback a conversion attributed to that partner, priced by the offer, as a
 * network's own attribution (a postback naming partner_id and campaign_id) would be.
 */
import { z } from "@hono/zod-openapi";
import { PARTNER_ID_PATTERN } from "./partner";

/** Apple's ad network ids: lowercase, such as `example123.skadnetwork` (compared lowercased). */
export const AD_NETWORK_ID_PATTERN = /^[a-z0-9][a-z0-9._-]{0,127}$/;

/**
 * Apple's ad network ids are ASCII: only A to Z are lowercased. `toLowerCase` would also fold
 * look-alikes into ASCII (U+212A KELVIN SIGN into k, U+0130 into i and a dot), making a different
 * signed id match a network's.
 */
export function lowercaseAdNetworkId(value: string): string {
  return value.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}
/** A source identifier (2 to 4 digits) or a campaign id (before 4.0: 1 to 100), in decimal. */
export const SOURCE_KEY_PATTERN = /^\d{1,4}$/;
export const MAX_APPLE_SOURCES = 1_000;
export const MAX_AD_NETWORK_IDS = 20;

export const AppleSourceSchema = z
  .strictObject({
    campaign_id: z
      .string()
      .min(1)
      .max(128)
      .openapi({ description: "The campaign_id of the offer the source advertises.", example: "camp-987" }),
    partner_id: z
      .string()
      .regex(PARTNER_ID_PATTERN, { error: "must be a partner id (ptn_…)" })
      .nullable()
      .default(null)
      .openapi({
        description:
          "The partner that owns the source: a winning postback is attributed to it. null: recorded under the campaign, credited to nobody.",
        example: "ptn_01m8t94drzt2dvtb14rreyz833",
      }),
  })
  .openapi("AppleSource");

export const AppleReceiverSchema = z
  .strictObject({
    ad_network_ids: z
      .array(
        z
          .string()
          .transform(lowercaseAdNetworkId)
          .refine((value) => AD_NETWORK_ID_PATTERN.test(value), {
            error: "must be an ad network id such as example123.skadnetwork",
          }),
      )
      .min(1, { error: "needs the ad network id Apple registered" })
      .max(MAX_AD_NETWORK_IDS)
      .refine((ids) => new Set(ids).size === ids.length, { error: "must not repeat an id" })
      .openapi({
        description:
          "The ad network ids Apple registered for this network (SKAdNetwork and AdAttributionKit may share one). A postback is this network's when its signed ad network id is one of these; an id belongs to one network only.",
        example: ["example123.skadnetwork"],
      }),
    sources: z
      .record(
        z.string().regex(SOURCE_KEY_PATTERN, { error: "must be a source identifier or campaign id: 1 to 4 digits" }),
        AppleSourceSchema,
      )
      .refine((sources) => Object.keys(sources).length <= MAX_APPLE_SOURCES, {
        error: `must have at most ${MAX_APPLE_SOURCES} sources`,
      })
      .default({})
      .openapi({
        description:
          "By source identifier (4.0 and AdAttributionKit; a 2- or 3-digit value falls back from the 4-digit key to its rightmost digits) or campaign id (before 4.0).",
        example: { "42": { campaign_id: "camp-987", partner_id: "ptn_01m8t94drzt2dvtb14rreyz833" } },
      }),
  })
  .openapi("AppleReceiver", {
    description:
      "This network receives Apple's SKAdNetwork and AdAttributionKit postbacks (docs/apple-postbacks.md). null: it does not.",
  });

export type AppleReceiver = z.output<typeof AppleReceiverSchema>;
export type AppleSource = z.output<typeof AppleSourceSchema>;

/**
 * The mapped source of a postback: the key as sent, else its rightmost 3, then 2 digits (Apple's
 * hierarchical source identifiers: a lower crowd-anonymity tier reveals fewer of the low digits).
 */
export function sourceOf(receiver: AppleReceiver, key: string | null): { key: string; source: AppleSource } | null {
  if (key === null) return null;
  const candidates = [key, ...[3, 2].filter((length) => length < key.length).map((length) => key.slice(-length))];
  for (const candidate of candidates) {
    const source = Object.hasOwn(receiver.sources, candidate) ? receiver.sources[candidate] : undefined;
    if (source) return { key: candidate, source };
  }
  return null;
}
