/**
 * Checks a partner URL template when it is saved, so that the hub never becomes a way into private
 * networks: where a request goes is fixed by the template's author, never by a conversion value, and
 * it must be a public https address. Hosts are judged as the WHATWG URL parser normalises them, so
 * `2130706433`, `0x7f.1` and `[::ffff:7f00:1]` are seen as the loopback addresses they are.
 */
import type { FieldError } from "../errors";
import { lintTemplate, macroNames, renderUrl, SAMPLE_VALUES } from "./template";

export interface UrlSafetyOptions {
  /** Local development only: allows http, and loopback hosts, so a partner on the developer's machine works. */
  allowInsecure: boolean;
}

export type HostKind = "public" | "loopback" | "internal";

const INSECURE_FLAG = "only allowed in local development with ALLOW_INSECURE_PARTNER_URLS=true";
const EXAMPLE = "https://partner.example/postback?tx={transaction_id}";

export function lintUrlTemplate(
  template: string,
  options: UrlSafetyOptions,
  location = "body.url_template",
): FieldError[] {
  const problems = urlProblems(template, options);
  return [...lintTemplate(template, location), ...problems.map((message) => ({ location, message }))];
}

export function isBlockedHost(hostname: string, options: UrlSafetyOptions): boolean {
  const kind = classifyHost(hostname);
  return kind === "internal" || (kind === "loopback" && !options.allowInsecure);
}

/** Anything that cannot be parsed as a host counts as internal: when in doubt, do not connect. */
export function classifyHost(hostname: string): HostKind {
  const host = normaliseHost(hostname);
  if (host === null) return "internal";
  if (host.startsWith("[")) {
    const groups = parseIPv6(host.slice(1, -1));
    return groups === null ? "internal" : classifyIPv6(groups);
  }
  const ipv4 = parseIPv4(host);
  if (ipv4 !== null) return classifyIPv4(ipv4);
  const name = host.replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost") ? "loopback" : "public";
}

function urlProblems(template: string, options: UrlSafetyOptions): string[] {
  const { origin, authority } = splitOrigin(template);
  if (macroNames(origin).length > 0) {
    return [
      "must not have a macro in the scheme or host, because a conversion value must never choose where the hub connects; put macros in the path or the query",
    ];
  }
  const url = parseUrl(renderUrl(template, SAMPLE_VALUES));
  if (url === null) return [`is not a valid absolute URL; write it like ${EXAMPLE}`];
  if (url.protocol !== "https:" && url.protocol !== "http:") return [`must use https, not ${url.protocol}`];

  const problems: string[] = [];
  if (url.protocol === "http:" && !options.allowInsecure) problems.push(`must use https (http is ${INSECURE_FLAG})`);
  if (url.username !== "" || url.password !== "") {
    problems.push("must not contain a user name or password; send credentials in the partner's extra headers");
  }
  const kind = classifyHost(url.hostname);
  if (kind === "internal") {
    problems.push(
      `must not point at a private, link-local, multicast or reserved address (${url.hostname}); use the partner's public host name`,
    );
  } else if (kind === "loopback" && !options.allowInsecure) {
    problems.push(`must not point at a loopback address (${url.hostname}); loopback is ${INSECURE_FLAG}`);
  }
  const written = hostOf(authority);
  if (parseIPv4(url.hostname) !== null && written !== url.hostname) {
    problems.push(`writes the address ${url.hostname} as ${written}; write an IP address as four decimal numbers`);
  }
  return problems;
}

/**
 * The scheme and authority as written, up to the first `/`, `\`, `?` or `#` after the slashes
 * (the URL parser treats `\` as `/` and tolerates `https:host`, so this must too).
 */
function splitOrigin(template: string): { origin: string; authority: string } {
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*/.exec(template)?.[0] ?? "";
  const rest = template.slice(scheme.length);
  const end = rest.search(/[/\\?#]/);
  const authority = end === -1 ? rest : rest.slice(0, end);
  return { origin: scheme + authority, authority };
}

function hostOf(authority: string): string {
  const hostAndPort = authority.slice(authority.lastIndexOf("@") + 1).toLowerCase();
  if (hostAndPort.startsWith("[")) return hostAndPort.slice(0, hostAndPort.indexOf("]") + 1);
  return hostAndPort.split(":")[0] ?? "";
}

function parseUrl(text: string): URL | null {
  try {
    return new URL(text);
  } catch {
    return null;
  }
}

/** Lets the URL parser decode the many spellings of an address (integers, hex, octal, IPv4-in-IPv6). */
function normaliseHost(hostname: string): string | null {
  if (hostname === "" || /[/\\?#@\s]/.test(hostname)) return null;
  const bracketed = hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname;
  return parseUrl(`http://${bracketed}/`)?.hostname ?? null;
}

function parseIPv4(host: string): number | null {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (match === null) return null;
  const octets = match.slice(1).map(Number);
  if (octets.some((octet) => octet > 255)) return null;
  return octets.reduce((address, octet) => address * 256 + octet, 0);
}

type Cidr = { base: number; mask: number };

function cidr(text: string): Cidr {
  const [address = "", bits = ""] = text.split("/");
  const base = parseIPv4(address);
  if (base === null) throw new Error(`bad CIDR ${text}`);
  return { base, mask: Number(bits) === 0 ? 0 : ~0 << (32 - Number(bits)) };
}

const LOOPBACK_IPV4 = cidr("127.0.0.0/8");
const INTERNAL_IPV4 = [
  "0.0.0.0/8", // "this network"
  "10.0.0.0/8",
  "100.64.0.0/10", // carrier-grade NAT
  "169.254.0.0/16", // link-local, where cloud metadata services live
  "172.16.0.0/12",
  "192.168.0.0/16",
  "198.18.0.0/15", // benchmarking
  "224.0.0.0/3", // multicast, reserved and broadcast
].map(cidr);

function inRange(address: number, { base, mask }: Cidr): boolean {
  return ((address ^ base) & mask) === 0;
}

function classifyIPv4(address: number): HostKind {
  if (inRange(address, LOOPBACK_IPV4)) return "loopback";
  return INTERNAL_IPV4.some((range) => inRange(address, range)) ? "internal" : "public";
}

/** Eight 16-bit groups, from the compressed form the URL parser writes. */
function parseIPv6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const [head = "", tail] = halves;
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  if (tail === undefined ? missing !== 0 : missing < 1) return null;
  const groups = [...left, ...Array<string>(missing).fill("0"), ...right].map((group) => Number.parseInt(group, 16));
  return groups.every((group) => group >= 0 && group <= 0xffff) ? groups : null;
}

// Prefixes whose last 32 bits are an IPv4 address the packet really goes to.
const IPV4_EMBEDDING_PREFIXES = [
  [0, 0, 0, 0, 0, 0xffff], // IPv4-mapped
  [0, 0, 0, 0, 0, 0], // IPv4-compatible (deprecated, but some stacks still route it)
  [0x64, 0xff9b, 0, 0, 0, 0], // NAT64
];

function classifyIPv6(groups: number[]): HostKind {
  const first = groups[0] ?? 0;
  const last = groups[7] ?? 0;
  if (groups.slice(0, 7).every((group) => group === 0) && last <= 1) return last === 1 ? "loopback" : "internal";
  const unsafePrefix =
    (first & 0xfe00) === 0xfc00 || // unique local
    (first & 0xffc0) === 0xfe80 || // link-local
    (first & 0xffc0) === 0xfec0 || // site-local (deprecated)
    (first & 0xff00) === 0xff00; // multicast
  if (unsafePrefix) return "internal";
  if (IPV4_EMBEDDING_PREFIXES.some((prefix) => prefix.every((group, i) => groups[i] === group))) {
    return classifyIPv4((groups[6] ?? 0) * 0x10000 + last);
  }
  return "public";
}
