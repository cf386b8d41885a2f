/** Landing URLs as plain functions: which are accepted, what each refusal says, how a click fills one in. */
import { describe, expect, it } from "vitest";
import { LANDING_MACROS, lintLandingUrl, renderLandingUrl } from "../src/attribution/landing-url";

const secure = { allowInsecure: false };
const messages = (url: string, options = secure) => lintLandingUrl(url, options).map((error) => error.message);

describe("lintLandingUrl", () => {
  it.each([
    "https://shop.example/?clickid={click_id}",
    "HTTPS://shop.example:8443/p/{offer_id}/{click_id}?aff={partner_id}#top",
    "https://shop.example/{click_id}?s={sub1}-{sub2}-{sub3}-{sub4}-{sub5}",
    "https://[2001:db8::1]/?c={click_id}",
  ])("accepts %s", (url) => {
    expect(messages(url)).toEqual([]);
  });

  it("names the field it judges", () => {
    expect(lintLandingUrl("https://shop.example/", secure, "body.x")).toEqual([
      { location: "body.x", message: expect.stringMatching(/^must contain \{click_id\}/) },
    ]);
  });

  it("lists the known macros when one is not", () => {
    expect(messages("https://shop.example/?c={click_id}&t={transaction_id}&e={}")).toEqual([
      `unknown macro {transaction_id}; known: ${LANDING_MACROS.map((name) => `{${name}}`).join(", ")}`,
      expect.stringMatching(/^unknown macro \{\}; known:/),
    ]);
  });

  it.each([
    ["https://{sub1}/?c={click_id}"],
    ["https://shop.{sub1}.example/?c={click_id}"],
    ["https://shop.example{sub1}/?c={click_id}"],
    ["https:\\\\{sub1}.example/?c={click_id}"],
    ["{sub1}://shop.example/?c={click_id}"],
    ["https://{partner_id}@shop.example/?c={click_id}"],
  ])("refuses a macro before the path: %s", (url) => {
    expect(messages(url)).toEqual([expect.stringMatching(/must not have a macro in the scheme or host/)]);
  });

  it.each([
    ["ftp://shop.example/{click_id}", /must use https, not ftp:/],
    ["data:text/html,{click_id}", /must use https, not data:/],
    ["//shop.example/?c={click_id}", /not a valid absolute URL/],
    ["https://shop example/?c={click_id}", /not a valid absolute URL/],
    ["https://user:pw@shop.example/?c={click_id}", /user name or password/],
    [" https://shop.example/?c={click_id}", /control characters, or spaces/],
    ["https://shop.example/?c={click_id}\n", /control characters, or spaces/],
  ])("refuses %s", (url, message) => {
    expect(messages(url)).toEqual(expect.arrayContaining([expect.stringMatching(message)]));
  });

  it("allows http only when insecure URLs are allowed", () => {
    expect(messages("http://localhost:3000/?c={click_id}")).toEqual([
      expect.stringMatching(/must use https \(http is only allowed .*ALLOW_INSECURE_PARTNER_URLS=true\)/),
    ]);
    expect(messages("http://localhost:3000/?c={click_id}", { allowInsecure: true })).toEqual([]);
  });
});

describe("renderLandingUrl", () => {
  it("percent-encodes every value, and fills a missing one with nothing", () => {
    expect(
      renderLandingUrl("https://shop.example/{sub1}?c={click_id}&s={sub2}&p={partner_id}", {
        click_id: "a/b?c&d#e é",
        sub1: "../admin",
        sub2: null,
      }),
    ).toBe("https://shop.example/..%2Fadmin?c=a%2Fb%3Fc%26d%23e%20%C3%A9&s=&p=");
  });
});
