/**
 * AdAttributionKit postbacks, as Apple's devices send them: a JSON stanza whose `jws-string` is the
 * signed postback (a compact JWS, ES256, Apple's key by `kid`) and whose siblings (the conversion
 * values, the country code, the interaction type) are not signed. The payload schema reads the
 * verified JWS payload only (src/ingest/adattributionkit.ts); the sibling schema reads what the
 * hub keeps as unsigned. Field names as Apple spells them ("Identifying the parameters in a
 * postback"). Pure: schemas and constants only.
 */
import { z } from "zod";
import { COARSE_CONVERSION_VALUES } from "./skadnetwork";

export const CONVERSION_TYPES = ["download", "redownload", "re-engagement"] as const;

/** A text field: any length a postback needs, never empty, well-formed Unicode. */
function text(maxLength = 256) {
  return z
    .string()
    .min(1, { error: "must not be empty" })
    .max(maxLength, { error: `must be at most ${maxLength} characters` })
    .refine((value) => value.isWellFormed(), { error: "must be valid Unicode text" });
}

/** The signed payload of the JWS: the only place the hub reads a postback's identity from. */
export const AdAttributionKitPayloadSchema = z.object({
  /** The hub's transaction_id is this with its window (`:0`) appended: 128 characters at most. */
  "postback-identifier": text(126),
  "ad-network-identifier": text(),
  "source-identifier": z.string().regex(/^\d{2,4}$/, { error: "must be two to four digits" }),
  "advertised-item-identifier": z.number().int().positive(),
  "publisher-item-identifier": z.number().int().nonnegative().optional(),
  "marketplace-identifier": text().optional(),
  "impression-type": text(64).optional(),
  "did-win": z.boolean(),
  "postback-sequence-index": z.number().int().min(0).max(2),
  "conversion-type": z.enum(CONVERSION_TYPES, { error: `must be one of ${CONVERSION_TYPES.join(", ")}` }),
});
export type AdAttributionKitPayload = z.infer<typeof AdAttributionKitPayloadSchema>;

/** The stanza as posted: the JWS, and the unsigned values beside it. */
export const AdAttributionKitStanzaSchema = z.object({
  "jws-string": text(8192),
  "conversion-value": z.number().int().min(0).max(63).optional(),
  "coarse-conversion-value": z.enum(COARSE_CONVERSION_VALUES).optional(),
  "ad-interaction-type": text(32).optional(),
  "country-code": z
    .string()
    .regex(/^[A-Z]{2}$/, { error: "must be an ISO 3166-1 alpha-2 code such as US" })
    .optional(),
});
export type AdAttributionKitStanza = z.infer<typeof AdAttributionKitStanzaSchema>;

/**
 * Apple's published AdAttributionKit keys (base64 SPKI, P-256), by kid, from "Verifying a postback".
 * The production key is SKAdNetwork's; the development keys sign postbacks made in end-to-end test
 * flows and in a device's developer settings, which the hub records as tests, never as live.
 */
export const APPLE_ADATTRIBUTIONKIT_KEYS = {
  "apple-cas-identifier/0": {
    spki: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWdp8GPcGqmhgzEFj9Z2nSpQVddayaPe4FMzqM9wib1+aHaaIzoHoLN9zW4K8y4SPykE3YVK3sVqW6Af0lfx3gg==",
    test: false,
  },
  "apple-development-identifier/0": {
    spki: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAELeEDzpJEP+/qRSE5hJVC1p1J0ssUnQGMzBBbvnACBok8OVGGLgxL0myrKiy6lvRtSlLRsWit87i+vftD8AEqeQ==",
    test: true,
  },
  "apple-development-identifier/1": {
    spki: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YzdO7eM97s/IJ25kdW5CZ3A14USE5IJ5Ha/vhWaxI6UBI1ZxCEvjrKxVluVGe6qWwF1BDFq+QHqKfH5u+wxHQ==",
    test: true,
  },
} as const satisfies Record<string, { spki: string; test: boolean }>;
