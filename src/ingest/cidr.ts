/**
 * IP allowlists: IPv4 and IPv6 CIDR ranges, matched against the client address that Cloudflare
 * reports (`CF-Connecting-IP`). Parsing is strict (no leading zeros in IPv4, no zone ids, no host
 * bits after the prefix) because an allowlist that quietly reinterprets what an operator wrote is
 * a hole; `validateCidrList` says what to write instead. Invalid input never matches, never throws.
 */

export type IpVersion = 4 | 6;

export interface IpAddress {
  readonly version: IpVersion;
  readonly value: bigint;
}

export interface Cidr {
  readonly version: IpVersion;
  /** The first address of the range; its host bits are zero. */
  readonly network: bigint;
  readonly prefixLength: number;
}

const BITS: Record<IpVersion, number> = { 4: 32, 6: 128 };
/** `::ffff:0:0/96`: how a dual-stack edge may report an IPv4 client. */
const IPV4_MAPPED_PREFIX = 0xffffn << 32n;

export function parseIp(text: string): IpAddress | null {
  const version: IpVersion = text.includes(":") ? 6 : 4;
  const value = version === 6 ? parseIpv6(text) : parseIpv4(text);
  return value === null ? null : { version, value };
}

/** A range (`203.0.113.0/24`, `2001:db8::/32`) or a single address; null when invalid or host bits are set. */
export function parseCidr(text: string): Cidr | null {
  const range = parseRange(text);
  return range && (range.network & hostMask(range)) === 0n ? range : null;
}

export function ipMatches(ip: string, cidrs: readonly Cidr[]): boolean {
  const address = parseIp(ip);
  if (!address) return false;
  const ipv4 = embeddedIpv4(address);
  return cidrs.some((cidr) => inRange(address, cidr) || (ipv4 !== null && inRange(ipv4, cidr)));
}

/** One message per invalid entry; an empty array when every entry is a valid range. */
export function validateCidrList(list: readonly string[]): string[] {
  const messages: string[] = [];
  for (const entry of list) {
    const range = parseRange(entry);
    if (!range) {
      messages.push(
        `"${entry}" is not a valid CIDR range (expected an IPv4 or IPv6 address with an optional /prefix, like 203.0.113.0/24 or 2001:db8::/32)`,
      );
    } else if ((range.network & hostMask(range)) !== 0n) {
      const network = formatCidr({ ...range, network: range.network & ~hostMask(range) });
      const host = formatCidr({ ...range, prefixLength: BITS[range.version] });
      messages.push(
        `"${entry}" has bits set after the /${range.prefixLength} prefix; write "${network}" for the whole range or "${host}" for the single address`,
      );
    }
  }
  return messages;
}

/** The canonical text of a range: dotted quad for IPv4, RFC 5952 for IPv6. */
export function formatCidr(cidr: Cidr): string {
  const address = cidr.version === 4 ? formatIpv4(cidr.network) : formatIpv6(cidr.network);
  return `${address}/${cidr.prefixLength}`;
}

/** A syntactically valid range, host bits not yet checked. */
function parseRange(text: string): Cidr | null {
  const [addressText = "", prefixText, ...rest] = text.split("/");
  const address = parseIp(addressText);
  if (!address || rest.length > 0) return null;
  const bits = BITS[address.version];
  if (prefixText === undefined) return { version: address.version, network: address.value, prefixLength: bits };
  if (!/^(0|[1-9]\d{0,2})$/.test(prefixText) || Number(prefixText) > bits) return null;
  return { version: address.version, network: address.value, prefixLength: Number(prefixText) };
}

function hostMask(cidr: Cidr): bigint {
  return (1n << BigInt(BITS[cidr.version] - cidr.prefixLength)) - 1n;
}

function inRange(address: IpAddress, cidr: Cidr): boolean {
  if (address.version !== cidr.version) return false;
  const hostBits = BigInt(BITS[cidr.version] - cidr.prefixLength);
  return address.value >> hostBits === cidr.network >> hostBits;
}

function embeddedIpv4(address: IpAddress): IpAddress | null {
  if (address.version !== 6 || address.value >> 32n !== IPV4_MAPPED_PREFIX >> 32n) return null;
  return { version: 4, value: address.value & 0xffffffffn };
}

/** Four decimal octets; a leading zero is refused, as some parsers read `010` as octal. */
function parseIpv4(text: string): bigint | null {
  const octets = text.split(".");
  if (octets.length !== 4) return null;
  let value = 0n;
  for (const octet of octets) {
    if (!/^(0|[1-9]\d{0,2})$/.test(octet) || Number(octet) > 255) return null;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

/** Eight hex groups, with at most one `::` and an optional dotted IPv4 tail; a zone id (`%eth0`) is refused. */
function parseIpv6(text: string): bigint | null {
  const [headText = "", tailText, ...rest] = text.split("::");
  if (rest.length > 0) return null;
  const compressed = tailText !== undefined;
  const head = groupsOf(headText, !compressed);
  const tail = compressed ? groupsOf(tailText, true) : [];
  if (!head || !tail) return null;
  const count = head.length + tail.length;
  if (compressed ? count > 7 : count !== 8) return null;
  const groups = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  return groups.reduce((value, group) => (value << 16n) | BigInt(group), 0n);
}

/** The 16-bit groups on one side of `::`; a dotted IPv4 address, allowed last, counts as two. */
function groupsOf(text: string, ipv4Allowed: boolean): number[] | null {
  if (text === "") return [];
  const parts = text.split(":");
  const groups: number[] = [];
  for (const [index, part] of parts.entries()) {
    if (ipv4Allowed && index === parts.length - 1 && part.includes(".")) {
      const ipv4 = parseIpv4(part);
      if (ipv4 === null) return null;
      groups.push(Number(ipv4 >> 16n), Number(ipv4 & 0xffffn));
    } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
      groups.push(Number.parseInt(part, 16));
    } else {
      return null;
    }
  }
  return groups;
}

function formatIpv4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join(".");
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups (the first on a tie) as `::`. */
function formatIpv6(value: bigint): string {
  const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
  let run = { start: -1, length: 1 };
  for (let start = 0; start < 8; start++) {
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > run.length) run = { start, length: end - start };
  }
  const hex = groups.map((group) => group.toString(16));
  if (run.start < 0) return hex.join(":");
  return `${hex.slice(0, run.start).join(":")}::${hex.slice(run.start + run.length).join(":")}`;
}
