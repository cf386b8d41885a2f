/** Helpers for the privacy tests: a keyed hash computed apart from the hub, and a search of all of D1. */
import { env } from "cloudflare:workers";
import { conversionObjectName } from "../../src/domain/conversion";

/**
 * The hub's identifier hash, written from docs/privacy.md with Web Crypto alone: HKDF-SHA-256 of
 * ENCRYPTION_KEY (salt "postback-hub", info "identifier-hash v1") to an HMAC-SHA-256 key, over
 * `<field>:<value>`, as `h1:` + unpadded base64url.
 */
export async function expectedHash(field: string, value: string): Promise<string> {
  const master = Uint8Array.from(atob(env.ENCRYPTION_KEY), (c) => c.charCodeAt(0));
  const ikm = await crypto.subtle.importKey("raw", master, "HKDF", false, ["deriveKey"]);
  const key = await crypto.subtle.deriveKey(
    {
      name: "HKDF",
      hash: "SHA-256",
      salt: new TextEncoder().encode("postback-hub"),
      info: new TextEncoder().encode("identifier-hash v1"),
    },
    ikm,
    { name: "HMAC", hash: "SHA-256", length: 256 },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${field}:${value}`)));
  const base64 = btoa(String.fromCharCode(...mac));
  return `h1:${base64.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "")}`;
}

/** Every row of every table of D1 whose text (as JSON) contains `needle`, by table. */
export async function d1RowsContaining(needle: string): Promise<Record<string, unknown[]>> {
  const { results: tables } = await env.DB.prepare(
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name != 'd1_migrations'",
  ).all<{ name: string }>();
  const found: Record<string, unknown[]> = {};
  for (const { name } of tables) {
    const { results } = await env.DB.prepare(`SELECT * FROM "${name}"`).all();
    const rows = results.filter((row) => JSON.stringify(row).includes(needle));
    if (rows.length > 0) found[name] = rows;
  }
  return found;
}

/** The conversion's Durable Object, as ingest names it. */
export function conversionObject(networkId: string, transactionId: string, test = false) {
  return env.CONVERSIONS.getByName(conversionObjectName(networkId, transactionId, test));
}
