/**
 * A network's signed-query sender, written from docs/signed-query.md with node:crypto and none of
 * the hub's code, so that e2e tests sign the way an independent tracker would.
 */
import { createHash, createHmac } from "node:crypto";

/** UTF-8 percent-encoding: only A-Z a-z 0-9 - . _ ~ stay literal; every other byte is %XX, uppercase. */
export function encode(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9._~-]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function canonicalQuery(pairs: [string, string][]): string {
  return pairs
    .filter(([name]) => name !== "pb_sig")
    .map(([name, value]): [string, string] => [encode(name), encode(value)])
    .sort((a, b) => compare(a[0], b[0]) || compare(a[1], b[1]))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
}

export function signature(secret: string, pbId: string, pbTs: string, pairs: [string, string][]): string {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const content = `${pbId}.${pbTs}.${canonicalQuery(pairs)}`;
  return `v1,${createHmac("sha256", key).update(content, "utf8").digest("base64")}`;
}

/** Appends pb_id, pb_ts and pb_sig to a URL whose macros are already substituted. */
export function signUrl(
  url: string,
  secret: string,
  pbId: string,
  pbTs = String(Math.floor(Date.now() / 1000)),
): string {
  const unsigned = `${url}${url.includes("?") ? "&" : "?"}pb_id=${encode(pbId)}&pb_ts=${pbTs}`;
  const pairs = [...new URL(unsigned).searchParams];
  return `${unsigned}&pb_sig=${encode(signature(secret, pbId, pbTs, pairs))}`;
}

/** `pb_body_sha256`: the lowercase hex SHA-256 of a JSON body, to be signed among the parameters. */
export function bodyDigest(body: string): string {
  return createHash("sha256").update(body, "utf8").digest("hex");
}
