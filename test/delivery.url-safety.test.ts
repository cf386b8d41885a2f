import { describe, expect, it } from "vitest";
import { classifyHost, isBlockedHost, lintUrlTemplate } from "../src/delivery/url-safety";

const STRICT = { allowInsecure: false };
const LOCAL_DEV = { allowInsecure: true };

function messages(template: string, options = STRICT): string[] {
  return lintUrlTemplate(template, options).map((error) => error.message);
}

describe("lintUrlTemplate", () => {
  it("accepts a public https template with macros in the path and query", () => {
    expect(lintUrlTemplate("https://partner.example/pb?tx={transaction_id}&m={meta.sub1}", STRICT)).toEqual([]);
    expect(lintUrlTemplate("https://partner.example:8443/{event_id}/{status}#x", STRICT)).toEqual([]);
  });

  it("names the location on every error, body.url_template by default", () => {
    expect(lintUrlTemplate("http://x.example/{amout}", STRICT).map((e) => e.location)).toEqual([
      "body.url_template",
      "body.url_template",
    ]);
    expect(lintUrlTemplate("ftp://x.example/", STRICT, "body.alert_url")[0]?.location).toBe("body.alert_url");
  });

  it("rejects unknown macros", () => {
    expect(messages("https://partner.example/pb?tx={transaction_idd}")).toEqual([
      expect.stringMatching(/^unknown macro \{transaction_idd\}/),
    ]);
  });

  it("rejects http unless insecure URLs are allowed, saying how to allow them", () => {
    expect(messages("http://partner.example/pb")).toEqual([expect.stringMatching(/must use https.*ALLOW_INSECURE/)]);
    expect(messages("http://partner.example/pb", LOCAL_DEV)).toEqual([]);
  });

  it("rejects a macro anywhere in the scheme or host, however the URL is spelled", () => {
    for (const template of [
      "https://{click_id}.evil/",
      "https://partner.example{click_id}/pb",
      "https://partner.example:{attempt}/pb",
      "https://{meta.host}/pb",
      "{click_id}/pb",
      "ht{status}tps://partner.example/",
      "https:{click_id}",
      "https:\\\\{click_id}\\pb",
      "https://user:{meta.pw}@partner.example/",
    ]) {
      expect(messages(template), template).toEqual([
        expect.stringMatching(/must not have a macro in the scheme or host/),
      ]);
    }
  });

  it("rejects user info, other schemes and text that is not a URL", () => {
    expect(messages("https://user:pw@x.example/")).toEqual([expect.stringMatching(/user name or password/)]);
    expect(messages("https://user@x.example/")).toEqual([expect.stringMatching(/user name or password/)]);
    expect(messages("ftp://x.example/file")).toEqual(["must use https, not ftp:"]);
    expect(messages("javascript:alert(1)")).toEqual(["must use https, not javascript:"]);
    for (const template of ["not a url", "/relative/{transaction_id}", "https://", "https://exa mple.com/", ""]) {
      expect(messages(template), template).toEqual([expect.stringMatching(/not a valid absolute URL/)]);
    }
  });

  it("rejects private, loopback and link-local hosts, in any spelling", () => {
    for (const host of [
      "10.0.0.1",
      "127.0.0.1",
      "169.254.169.254",
      "[::1]",
      "[fe80::1]",
      "[fd12::1]",
      "[::ffff:127.0.0.1]",
      "[::ffff:10.0.0.1]",
      "2130706433",
      "0x7f000001",
      "0177.0.0.1",
      "127.1",
      "localhost:8080",
      "a.localhost",
      "LOCALHOST.",
    ]) {
      expect(messages(`https://${host}/pb`).length, host).toBeGreaterThan(0);
    }
  });

  it("rejects a template the URL parser would read differently from its text, naming the field", () => {
    // The URL parser drops tabs and newlines anywhere: this is https://{campaign_id}/pb to `fetch`, and
    // a network's campaign_id would choose the host. Both the text and the parsed origin say so.
    expect(lintUrlTemplate("ht\ttps://{campaign_id}/pb", STRICT)).toEqual([
      {
        location: "body.url_template",
        message: expect.stringMatching(/^must not contain a tab \(U\+0009\) \(at character 3\)/),
      },
      { location: "body.url_template", message: expect.stringMatching(/^must not have a macro in the scheme or host/) },
    ]);
    for (const [template, named] of [
      ["https://partner.example/pb\n", "a line feed (U+000A)"],
      ["https://partner.exa\r\nmple/pb", "a carriage return (U+000D)"],
      ["https://partner.example/p\u0000b", "the control character (U+0000)"],
      ["https://partner.example/\u001fpb", "the control character (U+001F)"],
      ["https://partner.example/pb\u007f", "DEL (U+007F)"],
      ["\u0001https://partner.example/pb", "the control character (U+0001)"],
    ]) {
      expect(messages(template ?? ""), JSON.stringify(template)).toContainEqual(
        expect.stringContaining(`must not contain ${named}`),
      );
    }
    for (const template of [" https://partner.example/pb", "https://partner.example/pb  "]) {
      expect(messages(template), JSON.stringify(template)).toEqual([
        "must not start or end with a space: the URL parser removes it",
      ]);
    }
  });

  it("rejects a macro that changes the parsed origin even when the text hides it", () => {
    for (const template of [
      "ht\ttps://{campaign_id}/pb",
      "ht\nt\rps://partner.example{click_id}/pb",
      "\thttps://{click_id}/pb",
      "https:\t//{meta.host}/pb",
    ]) {
      expect(messages(template), JSON.stringify(template)).toContainEqual(
        expect.stringMatching(/must not have a macro in the scheme or host/),
      );
    }
    expect(messages("https://partner.example/{click_id}?h={campaign_id}#{meta.x}")).toEqual([]);
  });

  it("rejects the reserved and special-purpose ranges that were missing, in URLs", () => {
    for (const host of [
      "192.0.0.8",
      "192.0.2.1",
      "198.51.100.1",
      "203.0.113.1",
      "240.0.0.1",
      "[2002:a00:1::]",
      "[64:ff9b::a00:1]",
      "[64:ff9b:1::8.8.8.8]",
      "[2001::1]",
      "[2001:db8::1]",
      "[::8.8.8.8]",
    ]) {
      expect(messages(`https://${host}/pb`), host).toEqual([
        expect.stringMatching(/private, link-local, multicast or reserved/),
      ]);
    }
    expect(messages("https://[2606:4700:4700::1111]/pb")).toEqual([]);
  });

  it("asks for four decimal numbers when an IP address is spelled another way", () => {
    expect(messages("https://134744072/pb")).toEqual([expect.stringMatching(/8\.8\.8\.8.*four decimal numbers/)]);
    expect(messages("https://8.8.8.8/pb")).toEqual([]);
    expect(messages("https://[::ffff:8.8.8.8]/pb")).toEqual([
      expect.stringMatching(/8\.8\.8\.8 as \[::ffff:8\.8\.8\.8\].*four decimal numbers/),
    ]);
  });

  it("allows http, loopback and localhost in local development, and nothing else private", () => {
    expect(messages("http://127.0.0.1:9000/pb", LOCAL_DEV)).toEqual([]);
    expect(messages("http://localhost:9000/pb", LOCAL_DEV)).toEqual([]);
    expect(messages("http://[::1]:9000/pb", LOCAL_DEV)).toEqual([]);
    expect(messages("http://10.0.0.1/", LOCAL_DEV)).toEqual([expect.stringMatching(/private/)]);
    expect(messages("http://127.0.0.1:9000/pb")).toEqual([
      expect.stringMatching(/must use https/),
      expect.stringMatching(/loopback.*ALLOW_INSECURE/),
    ]);
  });
});

describe("isBlockedHost", () => {
  const edges: [string, boolean][] = [
    ["0.0.0.0", true],
    ["0.255.255.255", true],
    ["1.0.0.0", false],
    ["9.255.255.255", false],
    ["10.0.0.0", true],
    ["10.255.255.255", true],
    ["11.0.0.0", false],
    ["100.63.255.255", false],
    ["100.64.0.0", true],
    ["100.127.255.255", true],
    ["100.128.0.0", false],
    ["126.255.255.255", false],
    ["127.0.0.0", true],
    ["127.255.255.255", true],
    ["128.0.0.0", false],
    ["169.253.255.255", false],
    ["169.254.0.0", true],
    ["169.254.255.255", true],
    ["169.255.0.0", false],
    ["172.15.255.255", false],
    ["172.16.0.0", true],
    ["172.31.255.255", true],
    ["172.32.0.0", false],
    ["192.167.255.255", false],
    ["192.168.0.0", true],
    ["192.168.255.255", true],
    ["192.169.0.0", false],
    ["198.17.255.255", false],
    ["198.18.0.0", true],
    ["198.19.255.255", true],
    ["198.20.0.0", false],
    ["223.255.255.255", false],
    ["224.0.0.0", true],
    ["239.255.255.255", true],
    ["240.0.0.0", true],
    ["255.255.255.255", true],
    ["8.8.8.8", false],
    ["191.255.255.255", false],
    ["192.0.0.0", true], // IETF protocol assignments
    ["192.0.0.255", true],
    ["192.0.1.0", false],
    ["192.0.2.0", true], // TEST-NET-1
    ["192.0.2.255", true],
    ["192.0.3.0", false],
    ["192.31.196.1", true], // AS112
    ["192.52.193.1", true], // AMT
    ["192.88.99.1", true], // 6to4 relay anycast (deprecated)
    ["192.175.48.1", true], // AS112
    ["198.51.99.255", false],
    ["198.51.100.0", true], // TEST-NET-2
    ["198.51.100.255", true],
    ["198.51.101.0", false],
    ["203.0.112.255", false],
    ["203.0.113.0", true], // TEST-NET-3
    ["203.0.113.255", true],
    ["203.0.114.0", false],
    ["::", true],
    ["[::]", true],
    ["::1", true],
    ["[::1]", true],
    ["[::2]", true], // IPv4-compatible 0.0.0.2
    ["[2001:db8::1]", true], // documentation (RFC 3849)
    ["[fc00::1]", true],
    ["[fd12::1]", true],
    ["[fdff:ffff::1]", true],
    ["[fe00::1]", true], // outside global unicast 2000::/3
    ["[fe80::1]", true],
    ["[febf::1]", true],
    ["[ff02::1]", true],
    ["[::ffff:127.0.0.1]", true],
    ["[::ffff:7f00:1]", true],
    ["[::ffff:10.0.0.1]", true],
    ["[::ffff:8.8.8.8]", false],
    ["[::ffff:a9fe:a9fe]", true],
    ["[64:ff9b::10.0.0.1]", true],
    ["[2001:4860:4860::8888]", false],
    ["[2606:4700:4700::1111]", false],
    ["[1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]", true], // below 2000::/3
    ["[2000::1]", false],
    ["[3ffe::1]", false],
    ["[4000::1]", true], // above 2000::/3: unallocated
    ["[100::1]", true], // discard-only
    ["[::8.8.8.8]", true], // IPv4-compatible (deprecated): not global unicast
    ["[::ffff:0:808:808]", true], // SIIT (RFC 6145)
    ["[64:ff9b::8.8.8.8]", true], // NAT64, whatever it embeds
    ["[64:ff9b:1::1]", true], // local-use NAT64
    ["[2002:808:808::1]", true], // 6to4, whatever it embeds
    ["[2001::1]", true], // Teredo
    ["[2001:2::1]", true], // benchmarking
    ["[2001:10::1]", true], // ORCHID
    ["[2001:20::1]", true], // ORCHIDv2
    ["[3fff::1]", true], // documentation (RFC 9637)
    ["[5f00::1]", true], // segment routing
    ["[fec0::1]", true], // site-local (deprecated)
    ["[ff0e::1]", true],
    ["2130706433", true],
    ["0x7f000001", true],
    ["0x7f.1", true],
    ["017700000001", true],
    ["localhost", true],
    ["localhost.", true],
    ["a.localhost", true],
    ["partner.example", false],
    ["localhost.partner.example", false],
    ["", true],
    ["evil.example/@127.0.0.1", true],
  ];

  it.each(edges)("%s blocked: %s", (host, blocked) => {
    expect(isBlockedHost(host, STRICT)).toBe(blocked);
  });

  it("lets loopback through in local development, and nothing else that is blocked", () => {
    for (const host of ["127.0.0.1", "127.255.255.255", "[::1]", "localhost", "a.localhost", "[::ffff:127.0.0.1]"]) {
      expect(isBlockedHost(host, LOCAL_DEV), host).toBe(false);
      expect(classifyHost(host), host).toBe("loopback");
    }
    for (const [host, blocked] of edges) {
      if (blocked && classifyHost(host) !== "loopback") expect(isBlockedHost(host, LOCAL_DEV), host).toBe(true);
    }
  });
});

describe("the Worker's own fetch", () => {
  it("runs with global_fetch_strictly_public, as wrangler.toml deploys it", () => {
    // On Cloudflare a partner URL on the hub's own zone then goes through the zone's front door (WAF,
    // Access) instead of straight to its origin. Under workerd it changes nothing: loopback partners work.
    expect(Cloudflare.compatibilityFlags.global_fetch_strictly_public).toBe(true);
  });
});
