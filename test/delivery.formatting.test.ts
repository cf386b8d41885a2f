/**
 * Formatting functions in macros as pure functions: what each one renders (money exact, times in
 * UTC, digests, maps, defaults), that values are encoded after the functions run, what an empty
 * value becomes, the 422 messages of a chain that cannot work (with its position), and the warnings
 * for macros that some conversions leave empty.
 */
import { describe, expect, it } from "vitest";
import { FORMATTING_FUNCTIONS } from "../src/delivery/formatting";
import {
  dotSegmentFromValues,
  KNOWN_MACROS,
  lintBodyTemplate,
  lintTemplate,
  type MacroValues,
  renderBody,
  renderUrl,
  templateWarnings,
} from "../src/delivery/template";
import { lintUrlTemplate } from "../src/delivery/url-safety";
import { sha256Hex } from "./support/helpers";

type Values = MacroValues["values"];

function values(fields: Values = {}, meta: MacroValues["meta"] = {}): MacroValues {
  return { values: fields, meta };
}

/** The macro alone, as a URL template renders it (percent-encoded). */
function url(macro: string, fields: Values = {}, meta: MacroValues["meta"] = {}): string {
  return renderUrl(macro, values(fields, meta));
}

/** The macro alone, as a body renders it inside a JSON string, decoded back. */
function text(macro: string, fields: Values = {}, meta: MacroValues["meta"] = {}): string {
  return JSON.parse(renderBody(`"${macro}"`, values(fields, meta))) as string;
}

function messages(template: string): string[] {
  return lintTemplate(template, "body.url_template").map((error) => error.message);
}

describe("cents: exact integer minor units in the currency's ISO 4217 exponent", () => {
  it.each([
    ["29.99", "USD", "2999"],
    ["42", "USD", "4200"],
    ["0.5", "EUR", "50"],
    ["0.00", "EUR", "0"],
    ["1500", "JPY", "1500"],
    ["1.234", "BHD", "1234"],
    ["7", "KWD", "7000"],
    ["12.3456", "CLF", "123456"],
    // Fifteen integer and eight fraction digits: beyond a binary float's 2^53, still exact.
    ["987654321098765.43", "USD", "98765432109876543"],
  ])("%s %s is %s", (amount, currency, minor) => {
    expect(text("{amount|cents}", { amount, currency })).toBe(minor);
  });

  it.each([
    // Half to even at the minor unit, the hub's one rounding rule for money (pricing rounds payouts so).
    ["0.125", "USD", "12"],
    ["0.135", "USD", "14"],
    ["0.12500001", "USD", "13"],
    ["29.99", "JPY", "30"],
    ["0.5", "JPY", "0"],
    ["1.5", "JPY", "2"],
    ["2.5", "JPY", "2"],
    ["1.2345", "BHD", "1234"],
    ["1.2355", "BHD", "1236"],
  ])("rounds %s %s, which has more fraction digits than the currency, half to even: %s", (amount, currency, minor) => {
    expect(text("{amount|cents}", { amount, currency })).toBe(minor);
  });

  it("counts a currency without a minor unit (gold) in the 8 fraction digits every amount may carry", () => {
    expect(text("{amount|cents}", { amount: "1.5", currency: "XAU" })).toBe("150000000");
  });

  it("formats a payout in the payout's currency, not the conversion's", () => {
    const fields = { amount: "1500", currency: "JPY", payout: "2.50", payout_currency: "USD" };
    expect(text("{amount|cents} {payout|cents}", fields)).toBe("1500 250");
    expect(text("{previous_payout|cents}", { ...fields, previous_payout: "1.255" })).toBe("126");
  });

  it("is empty without an amount or a currency it knows, and then takes its default", () => {
    expect(text("{amount|cents}", {})).toBe("");
    expect(text("{amount|cents}", { amount: "5.00" })).toBe("");
    expect(text("{amount|cents}", { amount: "5.00", currency: "ZZZ" })).toBe("");
    expect(text("{amount|cents}", { amount: "1e3", currency: "USD" })).toBe("");
    expect(text("{amount|cents|default:0}", {})).toBe("0");
    // The default comes too early here: without an amount there is no currency to count cents in.
    expect(text("{amount|default:0|cents}", {})).toBe("");
  });
});

describe("unix, unix_ms and date: times in UTC", () => {
  const event_time = "2026-11-27T12:34:56.789Z";

  it("gives Unix seconds (rounded down) and milliseconds", () => {
    expect(text("{event_time|unix}", { event_time })).toBe("1795782896");
    expect(text("{event_time|unix_ms}", { event_time })).toBe("1795782896789");
    expect(text("{event_time|unix}", { event_time: "1969-12-31T23:59:59.500Z" })).toBe("-1");
    expect(text("{received_at|unix} {clicked_at|unix}", { received_at: event_time, clicked_at: event_time })).toBe(
      "1795782896 1795782896",
    );
  });

  it.each([
    ["YYYY-MM-DD", "2026-11-27"],
    ["DD/MM/YYYY HH:mm:ss", "27/11/2026 12:34:56"],
    ["YYYYMMDDTHHmmssZ", "20261127T123456Z"],
    ["HH:mm", "12:34"],
    ["YYYY-MM-DDTHH:mm:ssZ", "2026-11-27T12:34:56Z"],
  ])("date:%s is %s", (pattern, formatted) => {
    expect(text(`{event_time|date:${pattern}}`, { event_time })).toBe(formatted);
  });

  it("pads every field, and converts an offset to UTC", () => {
    expect(text("{event_time|date:YYYY-MM-DD HH:mm:ss}", { event_time: "0999-01-02T03:04:05Z" })).toBe(
      "0999-01-02 03:04:05",
    );
    expect(text("{meta.at|date:YYYY-MM-DD HH}", {}, { at: "2026-11-27T01:30:00+02:00" })).toBe("2026-11-26 23");
    expect(text("{meta.at|unix}", {}, { at: "2026-11-27T01:30:00+02:00" })).toBe("1795735800");
  });

  it("is empty for a value that is not an RFC 3339 time, which Date.parse alone would read", () => {
    for (const at of ["1", "yesterday", "2026-11-27", "2026-11-27 12:00:00", 1795782896, ""]) {
      expect(text("{meta.at|unix}|{meta.at|date:YYYY}", {}, { at }), String(at)).toBe("|");
    }
    expect(text("{clicked_at|unix|default:never}", {})).toBe("never");
  });
});

describe("sha256", () => {
  it("is the lowercase hex SHA-256 of the value's UTF-8 bytes", async () => {
    expect(text("{transaction_id|sha256}", { transaction_id: "abc" })).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    for (const value of ["ord_8812 é 漢字 🎉", 'say "hi"', "a".repeat(1000)]) {
      expect(text("{transaction_id|sha256}", { transaction_id: value })).toBe(await sha256Hex(value));
    }
    expect(text("{user_id|lower|sha256}", { user_id: "ME@Example.COM" })).toBe(await sha256Hex("me@example.com"));
  });

  it("leaves an empty value empty: a digest of nothing would look like a value", () => {
    expect(text("{user_id|sha256}", {})).toBe("");
    expect(text("{user_id|sha256|default:none}", {})).toBe("none");
  });
});

describe("map", () => {
  const map = "{status|map:approved=1,declined=2,paid=}";

  it("replaces a value in the map, and renders a value not in it empty, for default to decide", () => {
    expect(text(map, { status: "approved" })).toBe("1");
    expect(text(map, { status: "declined" })).toBe("2");
    expect(text(map, { status: "paid" })).toBe("");
    expect(text(map, { status: "pending" })).toBe("");
    expect(text("{status|map:approved=1,declined=2|default:0}", { status: "pending" })).toBe("0");
    expect(text("{status|map:approved=1,declined=2|default:0}", { status: "declined" })).toBe("2");
  });

  it("matches exactly, and splits a pair at its first =", () => {
    expect(text("{sub1|map:a=b=c,A=x}", { sub1: "a" })).toBe("b=c");
    expect(text("{sub1|map:a=b=c,A=x}", { sub1: "A" })).toBe("x");
    expect(text("{sub1|map:a=1}", { sub1: "a " })).toBe("");
    expect(text("{sub1|map:constructor=1}", { sub1: "toString" })).toBe("");
  });
});

describe("default, upper, lower and chains", () => {
  it("default fills an empty value only", () => {
    expect(text("{sub1|default:none}", {})).toBe("none");
    expect(text("{sub1|default:none}", { sub1: null })).toBe("none");
    expect(text("{sub1|default:none}", { sub1: "s-1" })).toBe("s-1");
    expect(text("{meta.k|default:none}", {}, { k: false })).toBe("false");
    expect(text("{sub1|default:}", {})).toBe("");
    expect(text("{sub1|default:a:b c}", {})).toBe("a:b c");
  });

  it("upper and lower change case", () => {
    expect(text("{platform|upper}", { platform: "android" })).toBe("ANDROID");
    expect(text("{currency|lower}", { currency: "EUR" })).toBe("eur");
    expect(text("{sub1|upper}", { sub1: "straße" })).toBe("STRASSE");
  });

  it("run left to right", () => {
    expect(text("{sub1|default:none|upper}", {})).toBe("NONE");
    expect(text("{sub1|default:none|upper}", { sub1: "abc" })).toBe("ABC");
    expect(text("{sub1|upper|default:none}", {})).toBe("none");
    expect(text("{status|upper|map:APPROVED=ok}", { status: "approved" })).toBe("ok");
    expect(text("{status|map:approved=Yes|lower|sha256}", { status: "approved" })).toBe(
      "8a798890fe93817163b10b5f7bd2ca4d25d84c52739a645a889c173eee7d9d3d",
    );
  });
});

describe("encoding after the functions", () => {
  it("percent-encodes what the functions made, in a URL", () => {
    const template = "https://p.example/pb?s={sub1|default:a b&c=d}&d={event_time|date:DD/MM/YYYY HH:mm}";
    const rendered = renderUrl(template, values({ event_time: "2026-11-27T12:34:56Z" }));
    expect(rendered).toBe("https://p.example/pb?s=a%20b%26c%3Dd&d=27%2F11%2F2026%2012%3A34");
    expect(new URL(rendered).searchParams.get("s")).toBe("a b&c=d");
    expect(url("{status|map:approved=x#y?z}", { status: "approved" })).toBe("x%23y%3Fz");
  });

  it("JSON-escapes what the functions made, in a body, whatever the argument holds", () => {
    const template = '{"s":"{sub1|default:say "hi" \\ }","m":"{status|map:approved=a"b}"}';
    expect(JSON.parse(renderBody(template, values({ status: "approved" })))).toEqual({ s: 'say "hi" \\ ', m: 'a"b' });
  });

  it("keeps a macro whose functions do not compile as it is written (it was text before functions existed)", () => {
    expect(url("a{status|nope}b{status|upper:x}", { status: "approved" })).toBe("a{status|nope}b{status|upper:x}");
    expect(renderBody('{"a":"{status|nope}"}', values({ status: "approved" }))).toBe('{"a":"{status|nope}"}');
  });
});

describe("an empty value", () => {
  it("is the empty string in a URL and inside a body's quotes", () => {
    expect(url("https://p.example/pb?a={amount}&c={amount|cents}&s={sub1|upper}")).toBe(
      "https://p.example/pb?a=&c=&s=",
    );
    expect(renderBody('{"a":"{amount}","s":"{sub1|sha256}"}', values())).toBe('{"a":"","s":""}');
  });

  it("is null where the macro stands unquoted in a body, so the body stays valid JSON", () => {
    const template = '{"payout":{amount},"cents":{amount|cents},"n":[{attempt}, {meta.n}],"t":{clicked_at|unix}}';
    expect(renderBody(template, values())).toBe('{"payout":null,"cents":null,"n":[null, null],"t":null}');
    expect(
      JSON.parse(renderBody(template, values({ amount: "19.90", currency: "EUR", attempt: 2 }, { n: 7 }))),
    ).toEqual({
      payout: 19.9,
      cents: 1990,
      n: [2, 7],
      t: null,
    });
    expect(renderBody('{"p":{amount|cents|default:0}}', values())).toBe('{"p":0}');
  });

  it("tells quoted from unquoted by the template's own quotes, escaped quotes included", () => {
    const template = '{"a\\"{amount}":"x\\\\","b":{amount},"c":"\\\\{amount}"}';
    expect(renderBody(template, values())).toBe('{"a\\"":"x\\\\","b":null,"c":"\\\\"}');
    expect(JSON.parse(renderBody(template, values()))).toEqual({ 'a"': "x\\", b: null, c: "\\" });
  });
});

describe("lint: a chain that cannot work is refused, naming where it is", () => {
  it("names the position (counting from 1), the macro as written and the unknown function", () => {
    const template = "https://p.example/pb?tx={transaction_id}&amount={amount|centz}";
    const position = template.indexOf("{amount|centz}") + 1;
    expect(messages(template)).toEqual([
      `at character ${position}: {amount|centz}: unknown function centz; known: ${FORMATTING_FUNCTIONS.join(", ")}`,
    ]);
  });

  it.each([
    ["{event_time|date}", "date needs a pattern after a colon, like date:YYYY-MM-DD"],
    ["{event_time|date:}", "date needs a pattern"],
    ["{event_time|date:yyyy-mm-dd}", 'date: "yyyy" is not a token of YYYY MM DD HH mm ss (UTC)'],
    ["{event_time|date:YYYY-MM-DD hh}", 'date: "hh" is not a token'],
    ["{event_time|date:YYYY-D}", 'date: "D" is not a token'],
    ["{event_time|date:--}", 'date: "--" has none of the tokens'],
    ["{status|map}", "map needs pairs after a colon, like map:approved=1,declined=2"],
    ["{status|map:approved}", 'map: "approved" is not a pair like approved=1'],
    ["{status|map:=1}", 'map: "=1" is not a pair'],
    ["{status|map:approved=1,,declined=2}", 'map: "" is not a pair'],
    ["{status|map:approved=1,}", 'map: "" is not a pair'],
    ["{status|map:approved=1,approved=2}", 'map: "approved" is mapped twice'],
    ["{status|map:aproved=1}", 'map: "aproved" can never match; the value is one of pending, approved, paid'],
    ["{status|upper|map:approved=1}", 'map: "approved" can never match; the value is one of PENDING, APPROVED'],
    ["{test|map:yes=1}", 'map: "yes" can never match; the value is one of true, false'],
    ["{status|cents}", "cents formats {amount}, {payout} or {previous_payout}, not {status}"],
    ["{meta.price|cents}", "cents formats {amount}, {payout} or {previous_payout}, not {meta.price}"],
    [
      "{amount|sha256|cents}",
      "cents formats {amount}, {payout} or {previous_payout}, not what sha256 made of {amount}",
    ],
    ["{amount|cents|cents}", "cents formats {amount}, {payout} or {previous_payout}, not what cents made of {amount}"],
    [
      "{status|unix}",
      "unix formats a time ({event_time}, {received_at} or {clicked_at}, or a meta value), not {status}",
    ],
    ["{event_time|upper|date:YYYY}", "date formats a time"],
    ["{sub1|upper:x}", 'upper takes no argument (remove ":x")'],
    ["{amount|cents:2}", "cents takes no argument"],
    ["{sub1|default}", "default needs a value after a colon, like default:none"],
    ["{amount|}", 'a "|" must be followed by a function'],
    ["{amount||cents}", 'a "|" must be followed by a function'],
    ["{sub1|Upper}", "unknown function Upper"],
    ["{sub1| upper}", "unknown function  upper"],
  ])("%s: %s", (macro, problem) => {
    const found = messages(`https://p.example/pb?x=${macro}`);
    expect(found).toHaveLength(1);
    expect(found[0]).toContain(`at character 24: ${macro}: ${problem}`);
  });

  it("lists every problem of a chain and of every macro, each at its place", () => {
    const template = "{amount|centz|upper:x} {sub1|default}{sub1|default}";
    expect(messages(template)).toEqual([
      expect.stringMatching(/^at character 1: \{amount\|centz\|upper:x\}: unknown function centz/),
      'at character 1: {amount|centz|upper:x}: upper takes no argument (remove ":x")',
      expect.stringMatching(/^at character 24: \{sub1\|default\}: default needs a value/),
      expect.stringMatching(/^at character 38: \{sub1\|default\}: default needs a value/),
    ]);
  });

  it("still reports an unknown macro once, and checks its functions too", () => {
    expect(messages("{amout|cents}{amout}")).toEqual([expect.stringMatching(/^unknown macro \{amout\}; known:/)]);
    expect(messages("{amout|centz}")).toEqual([
      expect.stringMatching(/^unknown macro \{amout\}/),
      expect.stringMatching(/^at character 1: \{amout\|centz\}: unknown function centz/),
    ]);
  });

  it("accepts every function where it applies", () => {
    const template = [
      "{amount|cents}",
      "{payout|cents|default:0}",
      "{previous_payout|cents}",
      "{amount|default:0|cents}",
      "{event_time|unix}",
      "{received_at|unix_ms}",
      "{clicked_at|date:YYYY-MM-DDTHH:mm:ssZ}",
      "{meta.at|date:DD.MM.YYYY}",
      "{meta.at|unix}",
      "{transaction_id|sha256}",
      "{status|map:approved=1,declined=2|default:0}",
      "{status|map:pending=a,approved=b,paid=c,declined=d,reversed=e}",
      "{sub1|map:x=y}",
      "{sub1|default:none|upper}",
      "{sub1|default:}",
      "{platform|lower}",
      "{meta.k|upper|sha256}",
    ].join("&");
    expect(messages(template)).toEqual([]);
  });

  it("the functions' names are the documented ones", () => {
    expect([...FORMATTING_FUNCTIONS]).toEqual([
      "cents",
      "unix",
      "unix_ms",
      "date",
      "sha256",
      "map",
      "default",
      "upper",
      "lower",
    ]);
  });
});

describe("lint of a body: valid JSON with the sample, and with every macro empty", () => {
  const lint = (template: string) => lintBodyTemplate(template, "body.body_template").map((e) => e.message);

  it("accepts unquoted macros that make JSON numbers, booleans or null", () => {
    for (const template of [
      '{"p":{amount}}',
      '{"p":{amount|cents},"t":{event_time|unix},"ms":{received_at|unix_ms}}',
      '{"s":{status|map:approved=1,declined=2}}',
      '{"s":{status|map:approved=true,declined=false|default:null}}',
      '{"h":"{transaction_id|sha256}","d":"{event_time|date:YYYY-MM-DD}","m":{meta.sub2}}',
    ]) {
      expect(lint(template), template).toEqual([]);
    }
  });

  it("refuses an unquoted text macro, functions included, and an unquoted meta value the sample lacks", () => {
    for (const template of [
      '{"s":{status|upper}}',
      '{"h":{transaction_id|sha256}}',
      '{"s":{sub1|default:none}}',
      '{"n":{meta.score}}',
      '{"n":{meta.score|default:0}}',
    ]) {
      const found = lint(template);
      expect(found, template).toHaveLength(1);
      expect(found[0], template).toMatch(/must be valid JSON once macros are filled in; with a sample conversion/);
    }
  });

  it("refuses a body that only works when a value is there", () => {
    // Each is valid JSON with the sample (`-29.99`, `29.991`, `29.990`), and not once its amount is null.
    for (const template of ['{"p":-{amount}}', '{"p":[{amount}{attempt}]}', '{"p":{amount}0}']) {
      const found = lint(template);
      expect(found, template).toHaveLength(1);
      expect(found[0], template).toMatch(
        /must be valid JSON when macros are empty too \(an unquoted macro without a value is sent as null\); for a conversion with none/,
      );
    }
  });

  it("counts on the values every delivery has", () => {
    expect(lint('{"n":-{attempt},"t":{event_time|unix}0}')).toEqual([]);
  });

  it("reports the chain's problems without a JSON error about the macro left as written", () => {
    expect(lint('{"p":{amount|centz}}')).toEqual([expect.stringMatching(/^at character 6: \{amount\|centz\}/)]);
  });
});

describe("warnings: macros that some conversions leave empty, without a default", () => {
  const warn = (template: string, place: "url" | "body" = "url") =>
    templateWarnings(template, "body.url_template", place).map((w) => w.message);

  it("flag each macro some conversions lack, and none that every delivery has", () => {
    const mayBeEmpty = KNOWN_MACROS.filter((name) => warn(`{${name}}`).length > 0);
    expect([...mayBeEmpty].sort()).toEqual(
      [
        "previous_status",
        "amount",
        "currency",
        "event_type",
        "campaign_id",
        "click_id",
        "user_id",
        "device_id",
        "platform",
        "partner_id",
        "offer_id",
        "clicked_at",
        "payout",
        "previous_payout",
        "payout_currency",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
      ].sort(),
    );
    expect(warn("{meta.sub1}")).toEqual([expect.stringContaining("a conversion whose meta has no sub1")]);
  });

  it("say where, why, what is sent, and how to say otherwise", () => {
    const template = "https://p.example/pb?tx={transaction_id}&p={amount|cents}";
    expect(templateWarnings(template, "body.url_template", "url")).toEqual([
      {
        location: "body.url_template",
        message:
          "at character 44: {amount|cents} is empty for a conversion without an amount, and for an attributed partner that does not share it; it is then sent as the empty string. To send something else, add a default: {amount|cents|default:…}",
      },
    ]);
  });

  it("say null for an unquoted macro of a body, and the empty string inside its quotes", () => {
    expect(warn('{"p":{amount},"c":"{currency}"}', "body")).toEqual([
      expect.stringMatching(/^at character 6: \{amount\} is empty .* sent as null\./),
      expect.stringMatching(/^at character 20: \{currency\} is empty .* sent as the empty string\./),
    ]);
  });

  it("are silenced by a default anywhere after what may be empty, the empty default included", () => {
    expect(
      warn("{sub1|default:none|upper}{amount|cents|default:0}{user_id|sha256|default:}{meta.k|default:x}"),
    ).toEqual([]);
    expect(warn("{sub1|upper|default:none}")).toEqual([]);
    // Without an amount there is no currency either: the default must come after cents.
    expect(warn("{amount|default:0|cents}")).toEqual([expect.stringContaining("{amount|default:0|cents} is empty")]);
  });

  it("flag a map that misses some values, naming them", () => {
    expect(warn("{status|map:approved=1,declined=2}")).toEqual([
      expect.stringContaining("is empty for a value not in the map (pending, paid, reversed)"),
    ]);
    expect(warn("{status|map:pending=0,approved=1,paid=1,declined=2,reversed=2}")).toEqual([]);
    expect(warn("{status|map:approved=1|default:0}")).toEqual([]);
    expect(warn("{event_type|map:purchase=p}")).toEqual([expect.stringContaining("a value not in the map")]);
    expect(warn("{previous_status|map:pending=p}")).toEqual([
      expect.stringContaining("is empty for a new conversion, or for a value not in the map (approved, paid"),
    ]);
  });

  it("flag a meta value formatted as a time, and say nothing of a time every delivery has", () => {
    expect(warn("{meta.at|unix|default:0}{event_time|unix}{received_at|date:YYYY}")).toEqual([]);
    expect(warn("{meta.at|unix}")).toEqual([
      expect.stringContaining("a conversion whose meta has no at, or for a meta value that is not an RFC 3339 time"),
    ]);
  });

  it("warn once per macro as written, and never for an unknown macro or a chain that is an error", () => {
    expect(warn("{amount}{amount}{amount|cents}")).toHaveLength(2);
    expect(warn("{amout}{amount|centz}")).toEqual([]);
  });
});

describe("URL safety sees through functions", () => {
  const insecure = { allowInsecure: false };

  it.each([
    "https://{network_id|lower}.partner.example/pb",
    "https://partner.example{click_id|default:x}/pb",
    "https://{status|map:approved=partner.example}/pb",
    "https://{sub1|default:partner.example/x}/pb",
    "https://{sub1|default:a?b}partner.example/pb",
    "https://u:{sub1|default:p}@partner.example/pb",
    "https://partner.example:{attempt|default:443}/pb",
    "{sub1|default:https}://partner.example/pb",
  ])("refuses a macro with functions in the origin: %s", (template) => {
    const found = lintUrlTemplate(template, insecure).map((e) => e.message);
    expect(found.join("\n")).toContain("must not have a macro in the scheme or host");
  });

  it("accepts functions in the path and the query, with / and : in their arguments", () => {
    const template =
      "https://partner.example/pb/{event_time|date:YYYY/MM/DD}/{transaction_id|sha256}?t={event_time|date:HH:mm}&s={status|map:approved=a/b?c#d}";
    expect(lintUrlTemplate(template, insecure)).toEqual([]);
  });

  it.each([
    ["https://partner.example/api/{sub1|default:..}/x", '".." from {sub1} when they are empty'],
    ["https://partner.example/api/{click_id|sha256|default:.}/x", '"." from {click_id} when they are empty'],
    ["https://partner.example/api/{status|map:approved=..}/x", '".." from {status} for the sample conversion'],
  ])("refuses a template whose own text makes a . or .. path segment: %s", (template, problem) => {
    const found = lintUrlTemplate(template, insecure).map((e) => e.message);
    expect(found).toEqual([expect.stringContaining(`makes the path segment ${problem}`)]);
  });

  it("accepts a dot segment that only a network's value could make, which the send-time check refuses", () => {
    expect(lintUrlTemplate("https://partner.example/api/{transaction_id}/{sub1|default:x}/..", insecure)).toEqual([]);
  });

  it("finds a . or .. path segment that a function makes, and does not split a macro at its /", () => {
    const template = "https://p.example/api/{sub1|default:..}/x/{event_time|date:YYYY/MM}";
    expect(dotSegmentFromValues(template, values({ event_time: "2026-11-27T00:00:00Z" }))).toEqual({
      segment: "..",
      macros: ["sub1"],
    });
    expect(dotSegmentFromValues(template, values({ sub1: "s", event_time: "2026-11-27T00:00:00Z" }))).toBeNull();
    expect(dotSegmentFromValues("https://p.example/{status|map:approved=.}", values({ status: "approved" }))).toEqual({
      segment: ".",
      macros: ["status"],
    });
  });
});
