import { describe, expect, it } from "vitest";
import {
  defaultBody,
  dotSegmentFromValues,
  KNOWN_MACROS,
  lintBodyTemplate,
  lintTemplate,
  type MacroValues,
  renderBody,
  renderUrl,
  SAMPLE_VALUES,
} from "../src/delivery/template";

function makeValues(overrides: Partial<MacroValues> = {}): MacroValues {
  return { values: { transaction_id: "ord-1", amount: "29.99", attempt: 2, test: false }, meta: {}, ...overrides };
}

const HOSTILE = [
  'say "hi"',
  "back\\slash",
  "two\nlines\r\n",
  "tab\there",
  "line\u2028separator\u2029",
  "</script><script>alert(1)</script>",
  "lone \ud800 surrogate",
  "é 漢字 🎉",
  '","admin":true,"x":"',
];

describe("renderUrl and renderBody", () => {
  it("render every known macro from values", () => {
    const values = Object.fromEntries(KNOWN_MACROS.map((name) => [name, `v-${name}`]));
    for (const name of KNOWN_MACROS) {
      expect(renderUrl(`{${name}}`, { values, meta: {} }), name).toBe(`v-${name}`);
      expect(renderBody(`{${name}}`, { values, meta: {} }), name).toBe(`v-${name}`);
    }
  });

  it("render meta.KEY from meta, numbers and booleans included", () => {
    const values = makeValues({ meta: { sub1: "spring", "sub.id-2_X": "k", score: 7.5, vip: true } });
    expect(renderUrl("{meta.sub1}|{meta.sub.id-2_X}|{meta.score}|{meta.vip}", values)).toBe("spring|k|7.5|true");
  });

  it("render missing, null and undefined values as the empty string", () => {
    const values = makeValues({ values: { status: null, click_id: undefined } });
    expect(renderUrl("a={status}&b={click_id}&c={user_id}&d={meta.nope}", values)).toBe("a=&b=&c=&d=");
  });

  it("never reach the prototype through a macro name", () => {
    expect(renderUrl("{constructor}{__proto__}{meta.__proto__}{meta.toString}", makeValues())).toBe("");
    // With functions too (which look the macro's currency up by its name).
    expect(
      renderUrl("{constructor|upper}{constructor|cents}{__proto__|cents}{meta.__proto__|default:x}", makeValues()),
    ).toBe("x");
  });

  it("leave braces that are not macros as literal text", () => {
    const template = '{"a":1} {Transaction_ID} {meta.} { status } {} {meta} {{attempt}}';
    expect(renderUrl(template, makeValues())).toBe('{"a":1} {Transaction_ID} {meta.} { status } {}  {2}');
  });

  it("percent-encode URL values so they stay inside their query parameter", () => {
    for (const [value, encoded] of [
      ["a&b=c", "a%26b%3Dc"],
      ["x y", "x%20y"],
      ["é", "%C3%A9"],
      ["#frag", "%23frag"],
      ["a/b", "a%2Fb"],
      ["?q", "%3Fq"],
    ] as const) {
      const rendered = renderUrl(
        "https://p.example/pb?tx={transaction_id}&n=1",
        makeValues({ values: { transaction_id: value } }),
      );
      expect(rendered).toBe(`https://p.example/pb?tx=${encoded}&n=1`);
      const url = new URL(rendered);
      expect(url.searchParams.get("tx")).toBe(value);
      expect(url.searchParams.get("n")).toBe("1");
      expect(url.hash).toBe("");
    }
  });

  it("JSON-escape body values so the body parses back to the exact original strings", () => {
    for (const value of HOSTILE) {
      const values = makeValues({ values: { transaction_id: value, amount: "29.99" }, meta: { note: value } });
      const body = renderBody('{"txid":"{transaction_id}","note":"{meta.note}","payout":{amount}}', values);
      expect(JSON.parse(body), JSON.stringify(value)).toEqual({ txid: value, note: value, payout: 29.99 });
    }
  });
});

describe("dotSegmentFromValues", () => {
  const values = (transaction_id: string, click_id = "") => makeValues({ values: { transaction_id, click_id } });

  it("finds a value that makes a . or .. path segment, however the segment is put together", () => {
    const template = "https://p.example/api/{transaction_id}/confirm";
    expect(dotSegmentFromValues(template, values(".."))).toEqual({ segment: "..", macros: ["transaction_id"] });
    expect(dotSegmentFromValues(template, values("."))).toEqual({ segment: ".", macros: ["transaction_id"] });
    // Next to a literal %2e, or to another macro: the URL parser sees .. all the same.
    expect(dotSegmentFromValues("https://p.example/a/%2E{transaction_id}/b", values("."))?.segment).toBe("%2E.");
    expect(dotSegmentFromValues("https://p.example/a/{transaction_id}{click_id}", values(".", "."))).toEqual({
      segment: "..",
      macros: ["transaction_id", "click_id"],
    });
    // A backslash separates segments in an https URL.
    expect(dotSegmentFromValues("https://p.example\\a\\{transaction_id}", values(".."))?.segment).toBe("..");
  });

  it("leaves alone values that stay themselves: other text, encoded dots, the query, the template's own text", () => {
    const template = "https://p.example/api/{transaction_id}/confirm?tx={transaction_id}#{transaction_id}";
    for (const value of ["...", "a..", "%2e%2e", ".%2E", "../..", ""]) {
      expect(dotSegmentFromValues(template, values(value)), value).toBeNull();
    }
    expect(dotSegmentFromValues("https://p.example/pb?tx={transaction_id}", values(".."))).toBeNull();
    expect(dotSegmentFromValues("https://p.example/a/../{transaction_id}", values("x"))).toBeNull();
    expect(new URL(renderUrl("https://p.example/api/{transaction_id}/confirm", values("%2e%2e"))).pathname).toBe(
      "/api/%252e%252e/confirm",
    );
  });
});

describe("defaultBody", () => {
  it("is the conversion as JSON, with amount as an exact string, attempt a number and test a boolean", () => {
    const body = defaultBody({
      values: { ...SAMPLE_VALUES.values, amount: "1234567890.12345678", attempt: "3", test: "true" },
      meta: SAMPLE_VALUES.meta,
    });
    const parsed: unknown = JSON.parse(body);
    expect(parsed).toMatchObject({
      transaction_id: SAMPLE_VALUES.values.transaction_id,
      amount: "1234567890.12345678",
      attempt: 3,
      test: true,
      meta: SAMPLE_VALUES.meta,
    });
    expect(body).toContain('"amount":"1234567890.12345678"');
  });

  it("keeps the documented key order, omits undefined and keeps null", () => {
    const body = defaultBody({
      values: { transaction_id: "t-1", previous_status: null, amount: undefined, attempt: 1, event_id: "evt_1" },
      meta: {},
    });
    expect(body).toBe('{"event_id":"evt_1","attempt":1,"transaction_id":"t-1","previous_status":null,"meta":{}}');
  });

  it("has every default field for a full conversion", () => {
    expect(Object.keys(JSON.parse(defaultBody(SAMPLE_VALUES)))).toEqual([
      "event_id",
      "delivery_id",
      "attempt",
      "verdict",
      "network_id",
      "transaction_id",
      "status",
      "previous_status",
      "amount",
      "currency",
      "event_time",
      "event_type",
      "campaign_id",
      "click_id",
      "user_id",
      "device_id",
      "platform",
      "partner_id",
      "meta",
      "received_at",
      "test",
      "attribution",
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
      "source",
    ]);
  });
});

describe("lintTemplate", () => {
  it("accepts every known macro and any meta key", () => {
    const template = `${KNOWN_MACROS.map((name) => `{${name}}`).join("")}{meta.sub1}{meta.a.b-c_D}`;
    expect(lintTemplate(template, "body.url_template")).toEqual([]);
  });

  it("reports each unknown macro once, at the given location, and nothing else", () => {
    const errors = lintTemplate('{amout}{amout}{transaction_id}{clickid}{"a":1}{meta.ok}', "body.body_template");
    expect(errors.map((e) => e.location)).toEqual(["body.body_template", "body.body_template"]);
    expect(errors.map((e) => e.message.split(";")[0])).toEqual(["unknown macro {amout}", "unknown macro {clickid}"]);
    expect(errors[0]?.message).toContain("{transaction_id}");
    expect(errors[0]?.message).toContain("{meta.KEY}");
  });
});

describe("lintBodyTemplate", () => {
  it("accepts quoted text macros and bare numbers and booleans", () => {
    expect(lintBodyTemplate('{"a":"{transaction_id}","p":{amount}}', "body.body_template")).toEqual([]);
    expect(lintBodyTemplate('{"n":{attempt},"t":{test},"m":"{meta.sub1}"}', "body.body_template")).toEqual([]);
  });

  it("rejects a text macro outside quotes, because the sample renders invalid JSON", () => {
    const errors = lintBodyTemplate('{"a": {transaction_id}}', "body.body_template");
    expect(errors).toHaveLength(1);
    expect(errors[0]?.location).toBe("body.body_template");
    expect(errors[0]?.message).toMatch(/valid JSON/);
  });

  it("rejects text that is not JSON, and reports unknown macros too", () => {
    expect(lintBodyTemplate("tx={transaction_id}", "body.body_template")).toHaveLength(1);
    expect(lintBodyTemplate('{"a":"{amout}"}', "body.body_template").map((e) => e.message.split(";")[0])).toEqual([
      "unknown macro {amout}",
    ]);
  });
});

describe("SAMPLE_VALUES", () => {
  it("fills every known macro, with hostile characters and amount 29.99", () => {
    for (const name of KNOWN_MACROS) expect(renderBody(`{${name}}`, SAMPLE_VALUES), name).not.toBe("");
    expect(SAMPLE_VALUES.values.amount).toBe("29.99");
    const strings = Object.values(SAMPLE_VALUES.values).join("");
    for (const needle of ['"', "\\"]) expect(strings).toContain(needle);
    expect([...strings].some((char) => char.charCodeAt(0) > 0x7f)).toBe(true);
  });
});
