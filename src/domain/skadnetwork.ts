/**
 * SKAdNetwork install-validation postbacks, as Apple's devices send them (field names as Apple
 * spells them), and the order in which Apple signs each version's fields, declared once: the
 * verifier (src/ingest/skadnetwork.ts) builds the signed string from `SIGNED_FIELDS` and nothing
 * else. Apple's pages: "Verifying an install-validation postback", "Combining parameters for
 * SKAdNetwork 3 postbacks" and "…for previous SKAdNetwork postback versions"; the example postbacks
 * and orders are in test/fixtures/skadnetwork.json. Pure: schemas and constants only.
 */
import { z } from "zod";

/** U+2063 INVISIBLE SEPARATOR: what Apple joins the signed fields with. */
export const SIGNED_FIELD_SEPARATOR = "\u2063";

/**
 * Apple's public keys (SPKI, base64). P-256 signs 2.1 and later; P-192 signed 1.0 and 2.0, and
 * Web Crypto has no P-192, so the hub keeps that key only to name it.
 */
export const APPLE_SKADNETWORK_KEYS = {
  p256: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEWdp8GPcGqmhgzEFj9Z2nSpQVddayaPe4FMzqM9wib1+aHaaIzoHoLN9zW4K8y4SPykE3YVK3sVqW6Af0lfx3gg==",
  p192: "MEkwEwYHKoZIzj0CAQYIKoZIzj0DAQEDMgAEMyHD625uvsmGq4C43cQ9BnfN2xslVT5V1nOmAMP6qaRRUll3PB1JYmgSm+62sosG",
} as const;

export const SKADNETWORK_VERSIONS = ["1.0", "2.0", "2.1", "2.2", "3.0", "4.0"] as const;
export type SkadnetworkVersion = (typeof SKADNETWORK_VERSIONS)[number];
/** Versions whose signature is P-192 (refused: see src/ingest/skadnetwork.ts). */
export const P192_VERSIONS: readonly SkadnetworkVersion[] = ["1.0", "2.0"];

export const COARSE_CONVERSION_VALUES = ["low", "medium", "high"] as const;

/**
 * A text field of a postback. It must not hold U+2063: the signed string joins fields with it, so a
 * separator inside a value could move a signed boundary (one field's tail read as the next field).
 */
function text(maxLength = 256) {
  return z
    .string()
    .min(1, { error: "must not be empty" })
    .max(maxLength, { error: `must be at most ${maxLength} characters` })
    .refine((value) => !value.includes(SIGNED_FIELD_SEPARATOR), {
      error: "must not contain U+2063 (the separator of the signed fields)",
    })
    .refine((value) => value.isWellFormed(), { error: "must be valid Unicode text" });
}

const appStoreId = z.number().int().positive();

/**
 * The hub's transaction_id holds 128 characters; a 4.0 postback's gets its window (`:0`) appended,
 * so its transaction-id may hold 126.
 */
export const MAX_TRANSACTION_ID = 128;

const v1Fields = {
  "ad-network-id": text(),
  "campaign-id": z.number().int().nonnegative(),
  "app-id": appStoreId,
  "transaction-id": text(MAX_TRANSACTION_ID),
  "attribution-signature": text(1024),
};

const v2Fields = {
  ...v1Fields,
  redownload: z.boolean(),
  "source-app-id": appStoreId.optional(),
  "conversion-value": z.number().int().min(0).max(63).optional(),
};

const fidelityType = z.union([z.literal(0), z.literal(1)]);

/** 1.0 postbacks carry no `version`: `SkadnetworkPostbackSchema` reads its absence as 1.0. */
export const Skadnetwork10Schema = z.object({ version: z.literal("1.0"), ...v1Fields });
export const Skadnetwork20Schema = z.object({ version: z.literal("2.0"), ...v2Fields });
export const Skadnetwork21Schema = z.object({ version: z.literal("2.1"), ...v2Fields });
export const Skadnetwork22Schema = z.object({ version: z.literal("2.2"), ...v2Fields, "fidelity-type": fidelityType });
export const Skadnetwork30Schema = z.object({
  version: z.literal("3.0"),
  ...v2Fields,
  "fidelity-type": fidelityType,
  "did-win": z.boolean(),
});
export const Skadnetwork40Schema = z
  .object({
    version: z.literal("4.0"),
    "ad-network-id": text(),
    /** Two, three or four digits of the ad network's source identifier (it replaces campaign-id). */
    "source-identifier": z.string().regex(/^\d{2,4}$/, { error: "must be two to four digits" }),
    "app-id": appStoreId,
    "transaction-id": text(MAX_TRANSACTION_ID - 2),
    redownload: z.boolean(),
    "source-app-id": appStoreId.optional(),
    /** Web ads only, in place of source-app-id. */
    "source-domain": text(253).optional(),
    "fidelity-type": fidelityType,
    "did-win": z.boolean(),
    /** 0, 1 or 2: the conversion window the postback reports. */
    "postback-sequence-index": z.number().int().min(0).max(2),
    "conversion-value": z.number().int().min(0).max(63).optional(),
    "coarse-conversion-value": z.enum(COARSE_CONVERSION_VALUES).optional(),
    "attribution-signature": text(1024),
  })
  .refine((postback) => postback["source-app-id"] === undefined || postback["source-domain"] === undefined, {
    error: "a 4.0 postback carries source-app-id (an app's ad) or source-domain (a web ad), not both",
    path: ["source-domain"],
  });

export const SkadnetworkPostbackSchema = z.preprocess(
  (value) =>
    typeof value === "object" && value !== null && !Array.isArray(value) && !Object.hasOwn(value, "version")
      ? { ...value, version: "1.0" }
      : value,
  z.discriminatedUnion("version", [
    Skadnetwork10Schema,
    Skadnetwork20Schema,
    Skadnetwork21Schema,
    Skadnetwork22Schema,
    Skadnetwork30Schema,
    Skadnetwork40Schema,
  ]),
);
export type SkadnetworkPostback = z.infer<typeof SkadnetworkPostbackSchema>;

/** Every field name a postback may carry, signed or not. */
export type SkadnetworkField = {
  [V in SkadnetworkPostback as V["version"]]: keyof V;
}[SkadnetworkVersion] &
  string;

/**
 * One place in a version's signed string: a field that is always there, a field signed only when
 * the postback carries it, or (4.0) one of two fields, whichever is present.
 */
export type SignedSlot =
  | { readonly field: SkadnetworkField; readonly whenPresent: false }
  | { readonly field: SkadnetworkField; readonly whenPresent: true }
  | { readonly oneOf: readonly [SkadnetworkField, SkadnetworkField] };

const always = (field: SkadnetworkField): SignedSlot => ({ field, whenPresent: false });
const whenPresent = (field: SkadnetworkField): SignedSlot => ({ field, whenPresent: true });

const V21_ORDER: readonly SignedSlot[] = [
  always("version"),
  always("ad-network-id"),
  always("campaign-id"),
  always("app-id"),
  always("transaction-id"),
  always("redownload"),
  whenPresent("source-app-id"),
];

/**
 * The signed fields of each version, in Apple's order. conversion-value and coarse-conversion-value
 * are never signed (a device may raise them; they prove nothing), nor is the signature itself.
 * 2.0 is signed as 2.1 is (its key is P-192, so the hub refuses it before building the string).
 * In 4.0, an app's ad signs source-app-id and a web ad source-domain in the same place; a postback
 * with neither (source-app-id withheld under Apple's privacy threshold) signs neither.
 */
export const SIGNED_FIELDS: Readonly<Record<SkadnetworkVersion, readonly SignedSlot[]>> = {
  "1.0": [always("ad-network-id"), always("campaign-id"), always("app-id"), always("transaction-id")],
  "2.0": V21_ORDER,
  "2.1": V21_ORDER,
  "2.2": [...V21_ORDER, always("fidelity-type")],
  "3.0": [...V21_ORDER, always("fidelity-type"), always("did-win")],
  "4.0": [
    always("version"),
    always("ad-network-id"),
    always("source-identifier"),
    always("app-id"),
    always("transaction-id"),
    always("redownload"),
    { oneOf: ["source-app-id", "source-domain"] },
    always("fidelity-type"),
    always("did-win"),
    always("postback-sequence-index"),
  ],
};

/** Fields a postback may carry that no version signs: changing one leaves the signature valid. */
export const UNSIGNED_FIELDS = ["conversion-value", "coarse-conversion-value", "attribution-signature"] as const;
