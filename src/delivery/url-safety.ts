/**
 * Keeps the hub from becoming a way into private networks: where a delivery goes is fixed by the
 * partner's template, never by a conversion value, and it must be a public https address.
 *
 * Everything is judged as the WHATWG URL parser (the one `fetch` uses) reads it, at two moments:
 * when a template is saved (`lintUrlTemplate`), and again for the rendered URL right before each
 * send (`checkOutboundUrl`), under the configuration of that moment. Hosts are classified by
 * `ipaddr.js`'s table of IANA's special-purpose ranges after the URL parser has normalised them, so
 * `2130706433`, `0x7f.1` and `[::ffff:7f00:1]` are seen as the loopback addresses they are.
 */
import ipaddr from "ipaddr.js";
import type { FieldError } from "../errors";
import {
  dotSegmentFromValues,
  KNOWN_MACROS,
  lintTemplate,
  type MacroValues,
  macroNames,
  renderUrl,
  SAMPLE_VALUES,
  SPARSE_SAMPLE,
  urlParts,
} from "./template";

export interface UrlSafetyOptions {
  /** Local development only: allows http, and loopback hosts, so a partner on the developer's machine works. */
  allowInsecure: boolean;
}

export type HostKind = "public" | "loopback" | "internal";

/** The rendered URL, as it will be fetched (without a fragment, which never leaves anyway), or why not. */
export type OutboundUrl = { ok: true; url: URL } | { ok: false; reason: string };

const INSECURE_FLAG = "only allowed in local development with ALLOW_INSECURE_PARTNER_URLS=true";
const EXAMPLE = "https://partner.example/postback?tx={transaction_id}";
const MACRO_IN_ORIGIN =
  "must not have a macro in the scheme or host, because a conversion value must never choose where the hub connects; put macros in the path or the query";
/** Global unicast: every IPv6 address outside it is reserved or unallocated (`::a.b.c.d`, `fe00::`, `4000::`). */
const GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR("2000::/3");

export function lintUrlTemplate(
  template: string,
  options: UrlSafetyOptions,
  location = "body.url_template",
): FieldError[] {
  const problems = [...parserQuirks(template), ...templateProblems(template, options), ...dotSegmentProblems(template)];
  return [...lintTemplate(template, location), ...problems.map((message) => ({ location, message }))];
}

/**
 * A path segment that the template's own text turns into `.` or `..` (`/{sub1|default:..}/` for a
 * click without sub1, `{status|map:approved=.}`): every such delivery would fail as a render error,
 * so the template is refused when it is saved. A value a network sends is judged at send time.
 */
function dotSegmentProblems(template: string): string[] {
  for (const [values, when] of [
    [SAMPLE_VALUES, "for the sample conversion"],
    [SPARSE_SAMPLE, "when they are empty"],
  ] as const) {
    const dots = dotSegmentFromValues(template, values);
    if (dots !== null) {
      const macros = dots.macros.map((name) => `{${name}}`).join(", ");
      return [
        `makes the path segment "${dots.segment}" from ${macros} ${when}, and the URL parser resolves "." and ".." segments, so the request would go to another path; change the function's argument, or put the macro in the query`,
      ];
    }
  }
  return [];
}

/**
 * The last word before a delivery is sent: the rendered URL parsed as `fetch` will parse it, https
 * (http and loopback only while insecure URLs are allowed now), no user info, a public host. A
 * partner saved under other rules, or a value the template checks could not foresee, stops here.
 */
export function checkOutboundUrl(rendered: string, options: UrlSafetyOptions): OutboundUrl {
  const quirk = parserQuirks(rendered)[0];
  if (quirk !== undefined) return { ok: false, reason: `the partner URL ${quirk}` };
  const url = parseUrl(rendered);
  if (url === null) return { ok: false, reason: "the partner URL is not a valid absolute URL" };
  const problem = destinationProblems(url, options)[0];
  if (problem !== undefined) return { ok: false, reason: `the partner URL ${problem}` };
  url.hash = "";
  // `…/pb?` and `…/pb` are one request; without the bare `?`, path and search are the request target.
  if (url.search === "") url.search = "";
  return { ok: true, url };
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
    const text = host.slice(1, -1);
    return ipaddr.IPv6.isValid(text) ? classifyAddress(ipaddr.IPv6.parse(text)) : "internal";
  }
  // The URL parser writes every IPv4 address as four decimal numbers, and refuses a host that ends in
  // a number but is not one; anything else is a name.
  if (ipaddr.IPv4.isValidFourPartDecimal(host)) return classifyAddress(ipaddr.IPv4.parse(host));
  const name = host.replace(/\.$/, "");
  return name === "localhost" || name.endsWith(".localhost") ? "loopback" : "public";
}

/** ipaddr.js names IANA's special-purpose ranges: only `unicast` is public, `loopback` is loopback. */
function classifyAddress(address: ipaddr.IPv4 | ipaddr.IPv6): HostKind {
  const range = address.range();
  if (range === "loopback") return "loopback";
  // An IPv4-mapped address is the IPv4 address it carries; NAT64, 6to4 and Teredo have ranges of their own.
  if (address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress()) {
    return classifyAddress(address.toIPv4Address());
  }
  if (range !== "unicast") return "internal";
  return address instanceof ipaddr.IPv6 && !address.match(GLOBAL_UNICAST) ? "internal" : "public";
}

/**
 * Text the URL parser would silently change: it removes tabs and newlines anywhere and C0 controls
 * and spaces at either end (so `ht\ttps://{campaign_id}/pb` is `https://{campaign_id}/pb`), and
 * percent-encodes or refuses other controls. A URL is only judged faithfully without them.
 */
function parserQuirks(text: string): string[] {
  const problems: string[] = [];
  const control = firstControl(text);
  if (control !== -1) {
    problems.push(
      `must not contain ${controlName(text.charAt(control))} (at character ${control + 1}) or any other control character: the URL parser removes or re-encodes them, so the URL would not be read as it is written`,
    );
  }
  if (/^ | $/.test(text)) {
    problems.push("must not start or end with a space: the URL parser removes it");
  }
  return problems;
}

/** The index of the first C0 control (U+0000 to U+001F) or DEL, or -1. */
function firstControl(text: string): number {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return index;
  }
  return -1;
}

function controlName(character: string): string {
  const code = `U+${character.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  const names: Record<string, string> = {
    "\t": "a tab",
    "\n": "a line feed",
    "\r": "a carriage return",
    "\u007f": "DEL",
  };
  return `${names[character] ?? "the control character"} (${code})`;
}

function templateProblems(template: string, options: UrlSafetyOptions): string[] {
  if (macroInOrigin(template)) return [MACRO_IN_ORIGIN];
  const url = parseUrl(renderUrl(template, SAMPLE_VALUES));
  if (url === null) return [`is not a valid absolute URL; write it like ${EXAMPLE}`];
  if (url.protocol !== "https:" && url.protocol !== "http:") return [`must use https, not ${url.protocol}`];
  const problems = destinationProblems(url, options);
  const written = hostOf(urlParts(template).authority);
  const ipv4 = plainIpv4(url.hostname);
  if (ipv4 !== null && written !== ipv4) {
    problems.push(`writes the address ${ipv4} as ${written}; write an IP address as four decimal numbers`);
  }
  return problems;
}

/**
 * A macro reaches the origin when it is written there, or when the parsed origin (scheme, user info,
 * host, port) changes with the values: two renders with different values catch what a reading of the
 * text could miss.
 */
function macroInOrigin(template: string): boolean {
  const { scheme, authority } = urlParts(template);
  if (macroNames(scheme + authority).length > 0) return true;
  const origins = [SAMPLE_VALUES, everyMacro(template, "1"), everyMacro(template, "x")].map((values) => {
    const url = parseUrl(renderUrl(template, values));
    return url === null ? null : [url.protocol, url.username, url.password, url.hostname, url.port].join(" ");
  });
  return origins.some((origin) => origin !== origins[0]);
}

/** Every macro the template uses, `meta.*` included, filled with `text`. */
function everyMacro(template: string, text: string): MacroValues {
  const meta = macroNames(template)
    .filter((name) => name.startsWith("meta."))
    .map((name) => [name.slice("meta.".length), text]);
  return { values: Object.fromEntries(KNOWN_MACROS.map((name) => [name, text])), meta: Object.fromEntries(meta) };
}

/** Scheme, user info and host of a parsed URL, as rules of where the hub may connect. */
function destinationProblems(url: URL, options: UrlSafetyOptions): string[] {
  const problems: string[] = [];
  if (url.protocol !== "https:" && !(url.protocol === "http:" && options.allowInsecure)) {
    problems.push(
      url.protocol === "http:" ? `must use https (http is ${INSECURE_FLAG})` : `must use https, not ${url.protocol}`,
    );
  }
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
  return problems;
}

/** The IPv4 address a parsed host is, written plainly: `8.8.8.8` for `8.8.8.8` and `[::ffff:808:808]`. */
function plainIpv4(hostname: string): string | null {
  if (ipaddr.IPv4.isValidFourPartDecimal(hostname)) return hostname;
  const text = hostname.startsWith("[") ? hostname.slice(1, -1) : "";
  if (!ipaddr.IPv6.isValid(text)) return null;
  const address = ipaddr.IPv6.parse(text);
  return address.isIPv4MappedAddress() ? address.toIPv4Address().toString() : null;
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
