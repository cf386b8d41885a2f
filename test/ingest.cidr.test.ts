/**
 * IP allowlists: IPv4 and IPv6 ranges at their edges, IPv4-mapped clients, and input that must
 * never match (or throw).
 */
import { describe, expect, it } from "vitest";
import { type Cidr, formatCidr, ipMatches, parseCidr, parseIp, validateCidrList } from "../src/lib/cidr";

function cidr(text: string): Cidr {
  const parsed = parseCidr(text);
  if (!parsed) throw new Error(`${text} should parse`);
  return parsed;
}

function matches(ip: string, ...ranges: string[]): boolean {
  return ipMatches(ip, ranges.map(cidr));
}

describe("cidr: ranges at their edges", () => {
  // [range, first address, last address, the address before, the address after]
  it.each([
    ["0.0.0.0/0", "0.0.0.0", "255.255.255.255", null, null],
    ["10.0.0.0/8", "10.0.0.0", "10.255.255.255", "9.255.255.255", "11.0.0.0"],
    ["203.0.113.0/24", "203.0.113.0", "203.0.113.255", "203.0.112.255", "203.0.114.0"],
    ["192.0.2.0/31", "192.0.2.0", "192.0.2.1", "192.0.1.255", "192.0.2.2"],
    ["203.0.113.7/32", "203.0.113.7", "203.0.113.7", "203.0.113.6", "203.0.113.8"],
    ["203.0.113.7", "203.0.113.7", "203.0.113.7", "203.0.113.6", "203.0.113.8"],
    ["::/0", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", null, null],
    [
      "2001:db8::/32",
      "2001:db8::",
      "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
      "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
      "2001:db9::",
    ],
    [
      "2001:db8:1:2::/64",
      "2001:db8:1:2::",
      "2001:db8:1:2:ffff:ffff:ffff:ffff",
      "2001:db8:1:1:ffff:ffff:ffff:ffff",
      "2001:db8:1:3::",
    ],
    ["2001:db8::/127", "2001:db8::", "2001:db8::1", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::2"],
    ["2001:db8::1/128", "2001:db8::1", "2001:db8::1", "2001:db8::", "2001:db8::2"],
    ["2001:db8::1", "2001:db8::1", "2001:db8::1", "2001:db8::", "2001:db8::2"],
  ])("%s holds %s to %s, not %s nor %s", (range, first, last, before, after) => {
    expect(matches(first, range)).toBe(true);
    expect(matches(last, range)).toBe(true);
    if (before) expect(matches(before, range)).toBe(false);
    if (after) expect(matches(after, range)).toBe(false);
  });

  it("matches any spelling of an IPv6 address", () => {
    expect(matches("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1/128")).toBe(true);
    expect(matches("2001:db8:0:0::1", "2001:0db8::/32")).toBe(true);
  });

  it("matches when any range of the list holds the address, and never with an empty list", () => {
    expect(matches("198.51.100.9", "203.0.113.0/24", "198.51.100.0/24", "2001:db8::/32")).toBe(true);
    expect(matches("2001:db8::9", "203.0.113.0/24", "2001:db8::/32")).toBe(true);
    expect(matches("192.0.2.1", "203.0.113.0/24", "2001:db8::/32")).toBe(false);
    expect(ipMatches("192.0.2.1", [])).toBe(false);
  });
});

describe("cidr: IPv4 and IPv6 together", () => {
  it("matches an IPv4-mapped IPv6 client against IPv4 ranges, dotted or in hex", () => {
    expect(matches("::ffff:203.0.113.7", "203.0.113.0/24")).toBe(true);
    expect(matches("::ffff:cb00:7107", "203.0.113.7/32")).toBe(true);
    expect(matches("0:0:0:0:0:FFFF:203.0.113.255", "203.0.113.0/24")).toBe(true);
    expect(matches("::ffff:203.0.114.0", "203.0.113.0/24")).toBe(false);
  });

  it("still matches an IPv4-mapped client against IPv6 ranges", () => {
    expect(matches("::ffff:203.0.113.7", "::ffff:0:0/96")).toBe(true);
    expect(matches("::ffff:203.0.113.7", "2001:db8::/32")).toBe(false);
  });

  it("does not treat other IPv6 addresses that end in an IPv4 address as IPv4", () => {
    expect(matches("::203.0.113.7", "203.0.113.0/24")).toBe(false);
    expect(matches("64:ff9b::203.0.113.7", "203.0.113.0/24")).toBe(false);
    expect(matches("::fffe:203.0.113.7", "203.0.113.0/24")).toBe(false);
  });

  it("never matches an IPv4 client against IPv6 ranges, nor an IPv6 client against IPv4 ranges", () => {
    expect(matches("203.0.113.7", "::ffff:203.0.113.0/120")).toBe(false);
    expect(matches("203.0.113.7", "::/0")).toBe(false);
    expect(matches("2001:db8::1", "0.0.0.0/0")).toBe(false);
  });
});

describe("cidr: parsing", () => {
  it.each([
    ["0.0.0.0", 4, 0n],
    ["255.255.255.255", 4, 0xffffffffn],
    ["192.0.2.1", 4, 0xc0000201n],
    ["::", 6, 0n],
    ["::1", 6, 1n],
    ["1::", 6, 1n << 112n],
    ["1:2:3:4:5:6:7::", 6, 0x0001_0002_0003_0004_0005_0006_0007_0000n],
    ["1:2:3:4:5:6:7:8", 6, 0x0001_0002_0003_0004_0005_0006_0007_0008n],
    ["::ffff:192.0.2.1", 6, 0xffff_c000_0201n],
    ["1:2:3:4:5:6:192.0.2.1", 6, 0x0001_0002_0003_0004_0005_0006_c000_0201n],
    ["2001:DB8::aBcD", 6, 0x2001_0db8_0000_0000_0000_0000_0000_abcdn],
  ])("reads %s", (text, version, value) => {
    expect(parseIp(text)).toEqual({ version, value });
  });

  it.each([
    "",
    "300.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "1.2.3.-4",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1.2.3.a",
    ":::",
    "1::2::3",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7:8::",
    ":1::",
    "1::2:",
    "12345::",
    "g::1",
    "fe80::1%eth0",
    "fe80::1%25eth0",
    "1.2.3.4::",
    "::1.2.3",
    "::1.2.3.256",
    "::1.2.3.4:5",
    // ipaddr.js alone reads these as addresses; the allowlist takes only the plain spelling.
    "::0x1.2.3.4",
    "::01.2.3.4",
    "0x7f.1",
    "010.0.0.1",
    "2130706433",
    "[::1]",
    "localhost",
  ])("refuses the address %j", (text) => {
    expect(parseIp(text)).toBeNull();
    expect(parseCidr(text)).toBeNull();
    expect(ipMatches(text, [cidr("0.0.0.0/0"), cidr("::/0")])).toBe(false);
  });

  it.each([
    "1.2.3.4/33",
    "1.2.3.4/",
    "1.2.3.4/-1",
    "1.2.3.0/024",
    "1.2.3.4/24/8",
    "1.2.3.4/ 24",
    "/24",
    "::1/129",
    "2001:db8::/32/1",
    "2001:db8::/1e2",
    "fe80::%eth0/64",
  ])("refuses the range %j", (text) => {
    expect(parseCidr(text)).toBeNull();
  });

  it("refuses a range with bits set after the prefix rather than guess what was meant", () => {
    expect(parseCidr("10.0.0.1/24")).toBeNull();
    expect(parseCidr("2001:db8::1/32")).toBeNull();
    expect(parseCidr("10.0.0.0/24")).toEqual({ version: 4, network: 0x0a000000n, prefixLength: 24 });
  });

  it("never throws, whatever it is given", () => {
    for (const text of ["%", "/", "::/", "\u0000", "١.٢.٣.٤", "1".repeat(10_000), ":".repeat(100)]) {
      expect(() => parseCidr(text)).not.toThrow();
      expect(ipMatches(text, [cidr("0.0.0.0/0")])).toBe(false);
    }
  });

  it.each([
    ["203.0.113.0/24", "203.0.113.0/24"],
    ["203.0.113.7", "203.0.113.7/32"],
    ["2001:0DB8:0:0::/32", "2001:db8::/32"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1/128"],
    ["::ffff:192.0.2.1", "::ffff:c000:201/128"],
    ["::", "::/128"],
    ["1::", "1::/128"],
  ])("formats %s as %s (RFC 5952 for IPv6)", (text, formatted) => {
    expect(formatCidr(cidr(text))).toBe(formatted);
  });
});

describe("cidr: validating an allowlist", () => {
  it("has nothing to say about valid entries", () => {
    expect(validateCidrList(["203.0.113.0/24", "198.51.100.7", "2001:db8::/32", "::ffff:0:0/96", "0.0.0.0/0"])).toEqual(
      [],
    );
  });

  it("gives one message per invalid entry, in order", () => {
    const messages = validateCidrList(["10.0.0.0/8", "10.0.0.0/33", "::1/129", "fe80::1%eth0", "", "10.0.0.0/24"]);
    expect(messages).toHaveLength(4);
    expect(messages[0]).toMatch(/^"10\.0\.0\.0\/33" is not a valid CIDR range/);
    expect(messages[1]).toMatch(/^"::1\/129" is not a valid CIDR range/);
    expect(messages[2]).toMatch(/^"fe80::1%eth0" is not a valid CIDR range/);
    expect(messages[3]).toMatch(/^"" is not a valid CIDR range/);
  });

  it("suggests the network and the single address when host bits are set", () => {
    expect(validateCidrList(["10.0.0.1/24"])).toEqual([
      `"10.0.0.1/24" has bits set after the /24 prefix; write "10.0.0.0/24" for the whole range or "10.0.0.1/32" for the single address`,
    ]);
    expect(validateCidrList(["2001:db8::1/32"])).toEqual([
      `"2001:db8::1/32" has bits set after the /32 prefix; write "2001:db8::/32" for the whole range or "2001:db8::1/128" for the single address`,
    ]);
  });
});
