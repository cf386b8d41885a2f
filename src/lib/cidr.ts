/**
 * IP allowlists: IPv4 and IPv6 CIDR ranges, matched against the client address that Cloudflare
 * reports (`CF-Connecting-IP`). Addresses are read by `ipaddr.js`, the project's one IP parser (the
 * partner URL checks use it too), behind a stricter gate: four decimal octets without leading zeros
 * for IPv4 (some parsers read `010` as octal), no zone ids, no host bits after the prefix, because an
 * allowlist that quietly reinterprets what an operator wrote is a hole; `validateCidrList` says what
 * to write instead. Invalid input never matches, never throws.
 */
import ipaddr from "ipaddr.js";

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
/** Hex groups and an optional dotted IPv4 tail; anything else (a zone id `%eth0`, spaces) is refused up front. */
const IPV6_TEXT = /^[0-9A-Fa-f:.]{2,45}$/;
/** `::a.b.c.d`, which ipaddr.js reads as IPv4-mapped (`::ffff:a.b.c.d`); RFC 4291 makes it `::` + 32 bits. */
const COMPRESSED_IPV4_TAIL = /^::(?=\d+\.)/;

export function parseIp(text: string): IpAddress | null {
  const address = readAddress(text);
  return address === null ? null : { version: versionOf(address), value: numberOf(address) };
}

/** A range (`203.0.113.0/24`, `2001:db8::/32`) or a single address; null when invalid or host bits are set. */
export function parseCidr(text: string): Cidr | null {
  const range = parseRange(text);
  return range && (range.network & hostMask(range)) === 0n ? range : null;
}

export function ipMatches(ip: string, cidrs: readonly Cidr[]): boolean {
  const address = readAddress(ip);
  if (!address) return false;
  const value = { version: versionOf(address), value: numberOf(address) };
  // A dual-stack edge may report an IPv4 client as `::ffff:a.b.c.d`: it matches IPv4 ranges too.
  const ipv4 =
    address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress()
      ? { version: 4 as const, value: numberOf(address.toIPv4Address()) }
      : null;
  return cidrs.some((cidr) => inRange(value, cidr) || (ipv4 !== null && inRange(ipv4, cidr)));
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
  const bytes = BITS[cidr.version] / 8;
  const octets = Array.from({ length: bytes }, (_, i) => Number((cidr.network >> BigInt(8 * (bytes - 1 - i))) & 0xffn));
  const address = ipaddr.fromByteArray(octets);
  const text = address instanceof ipaddr.IPv6 ? address.toRFC5952String() : address.toString();
  return `${text}/${cidr.prefixLength}`;
}

/**
 * The address `text` spells, only if it spells it in the plain way: ipaddr.js alone also takes
 * `0x7f.1`, `010.0.0.1`, `fe80::1%eth0` and `::0x1.2.3.4`.
 */
function readAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  if (!text.includes(":")) return ipaddr.IPv4.isValidFourPartDecimal(text) ? ipaddr.IPv4.parse(text) : null;
  if (!IPV6_TEXT.test(text)) return null;
  const tail = text.slice(text.lastIndexOf(":") + 1);
  if (tail.includes(".") && !ipaddr.IPv4.isValidFourPartDecimal(tail)) return null;
  const spelled = text.replace(COMPRESSED_IPV4_TAIL, "0::");
  return ipaddr.IPv6.isValid(spelled) ? ipaddr.IPv6.parse(spelled) : null;
}

function versionOf(address: ipaddr.IPv4 | ipaddr.IPv6): IpVersion {
  return address.kind() === "ipv4" ? 4 : 6;
}

function numberOf(address: ipaddr.IPv4 | ipaddr.IPv6): bigint {
  return address.toByteArray().reduce((value, byte) => (value << 8n) | BigInt(byte), 0n);
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

/** Bits of a client address kept where an address must not be stored whole. */
const KEPT_PREFIX_BITS: Record<IpVersion, number> = { 4: 24, 6: 48 };

/**
 * The range around a client address that can be kept without keeping the address: its /24 for
 * IPv4 (an IPv4-mapped IPv6 address counts as IPv4), its /48 for IPv6. Null when not an address.
 */
export function truncatedAddress(ip: string): string | null {
  const address = readAddress(ip);
  if (!address) return null;
  const plain = address instanceof ipaddr.IPv6 && address.isIPv4MappedAddress() ? address.toIPv4Address() : address;
  const version = versionOf(plain);
  const prefixLength = KEPT_PREFIX_BITS[version];
  const range = { version, network: numberOf(plain), prefixLength };
  return formatCidr({ ...range, network: range.network & ~hostMask(range) });
}
