/** Network parameter mappings: tracker-style GET postbacks in, canonical postback bodies out. */
import { describe, expect, it } from "vitest";
import { PostbackSchema } from "../src/domain/postback";
import { zodFieldErrors } from "../src/errors";
import {
  describeMapping,
  type MappingResult,
  mapParams,
  type NetworkMapping,
  NetworkMappingSchema,
  PRESET_NAMES,
  PRESETS,
  RESERVED_PARAMS,
  type ResolvedMapping,
  resolveMapping,
} from "../src/ingest/mapping";

const HUB = "https://hub.test/v1/postbacks/acme";

/** Query parameters the way the route will see them: decoded, in order, repeats included. */
function pairs(query: string): [string, string][] {
  return [...new URL(`${HUB}?${query}`).searchParams];
}

function mapQuery(query: string, mapping: NetworkMapping = {}): MappingResult {
  return mapParams(pairs(query), resolveMapping(NetworkMappingSchema.parse(mapping)));
}

function bodyErrors(body: unknown): string[] {
  const result = PostbackSchema.safeParse(body);
  return result.success ? [] : zodFieldErrors("body", result.error).map((e) => e.location);
}

function mappingErrors(mapping: unknown): { location: string; message: string }[] {
  const result = NetworkMappingSchema.safeParse(mapping);
  return result.success ? [] : zodFieldErrors("mapping", result.error);
}

describe("presets map a tracker's postback URL to a valid canonical body", () => {
  it("generic: canonical names and common aliases, numeric statuses", () => {
    const result = mapQuery(
      "txid=ord_8812&status=1&payout=29.90&currency=usd&clickid=clk_1f3a9&offer_id=camp-987&sub1=spring&utm_source=x&token=tok_abc",
    );
    expect(result).toEqual({
      body: {
        transaction_id: "ord_8812",
        status: "approved",
        amount: "29.90",
        currency: "usd",
        campaign_id: "camp-987",
        click_id: "clk_1f3a9",
        meta: { sub1: "spring" },
      },
      used: {
        transaction_id: "txid",
        status: "status",
        amount: "payout",
        currency: "currency",
        campaign_id: "offer_id",
        click_id: "clickid",
      },
      meta_keys: ["sub1"],
      ignored: ["utm_source"],
    });
    expect(PostbackSchema.parse(result.body)).toMatchObject({ amount: "29.90", currency: "USD", status: "approved" });
  });

  it("keitaro: subid, status, payout, currency, tid", () => {
    const sale = mapQuery(
      "subid=51ts6sgr1cbkdhljnrv&status=sale&payout=21.0&currency=USD&tid=52949935&from=adcombo.com",
      { preset: "keitaro" },
    );
    expect(sale.body).toEqual({
      transaction_id: "52949935",
      status: "approved",
      amount: "21.0",
      currency: "USD",
      click_id: "51ts6sgr1cbkdhljnrv",
    });
    expect(sale.ignored).toEqual(["from"]);
    expect(bodyErrors(sale.body)).toEqual([]);

    // Without a tid, Keitaro keys the conversion by its subid, and so does the preset.
    const lead = mapQuery("subid=51ts6sgr1cbkdhljnrv&status=lead", { preset: "keitaro" });
    expect(lead.body).toEqual({
      transaction_id: "51ts6sgr1cbkdhljnrv",
      status: "pending",
      click_id: "51ts6sgr1cbkdhljnrv",
    });
    expect(lead.used).toEqual({ transaction_id: "subid", status: "status", click_id: "subid" });
    expect(bodyErrors(lead.body)).toEqual([]);
  });

  it("binom: cnv_id, payout, cnv_status, cnv_currency; its free-text statuses need status_values", () => {
    const query = "cnv_id=e2f3he2tfe65a1&payout=5&cnv_status=Hold&cnv_currency=EUR";
    const unmapped = mapQuery(query, { preset: "binom" });
    expect(unmapped.body).toEqual({
      transaction_id: "e2f3he2tfe65a1",
      status: "Hold",
      amount: "5",
      currency: "EUR",
      click_id: "e2f3he2tfe65a1",
    });
    expect(bodyErrors(unmapped.body)).toEqual(["body.status"]);

    const mapped = mapQuery(query, { preset: "binom", status_values: { hold: "pending" } });
    expect(mapped.body).toMatchObject({ status: "pending" });
    expect(bodyErrors(mapped.body)).toEqual([]);
  });

  it("voluum: cid, payout, txid, currency, et, param1…5", () => {
    const result = mapQuery("cid=VL8x2kq0&payout=1.25&txid=tx-9&currency=EUR&et=signup&param1=spring", {
      preset: "voluum",
    });
    expect(result.body).toEqual({
      transaction_id: "tx-9",
      amount: "1.25",
      currency: "EUR",
      event_type: "signup",
      click_id: "VL8x2kq0",
      meta: { param1: "spring" },
    });
    expect(bodyErrors(result.body)).toEqual([]);
  });

  it("everflow: transaction_id, payout_amount, sub1 as the click id, a default currency", () => {
    const result = mapQuery(
      "transaction_id=102f5a9c&payout_amount=4.50&sub1=clk_77&sub2=banner-a&offer_id=31&affiliate_id=7",
      {
        preset: "everflow",
        default_currency: "USD",
      },
    );
    expect(result.body).toEqual({
      transaction_id: "102f5a9c",
      amount: "4.50",
      currency: "USD",
      campaign_id: "31",
      click_id: "clk_77",
      meta: { sub2: "banner-a", affiliate_id: "7" },
    });
    expect(result.used).not.toHaveProperty("currency");
    expect(bodyErrors(result.body)).toEqual([]);
  });

  it("tune and hasoffers: transaction_id, payout, aff_sub, adv_sub kept in meta", () => {
    const query =
      "transaction_id=102ab3&payout=2.00&currency=USD&aff_sub=clk_9&offer_id=12&adv_sub=order-55&aff_sub2=spring&ip=203.0.113.7";
    const tune = mapQuery(query, { preset: "tune" });
    expect(tune.body).toEqual({
      transaction_id: "102ab3",
      amount: "2.00",
      currency: "USD",
      campaign_id: "12",
      click_id: "clk_9",
      meta: { adv_sub: "order-55", aff_sub2: "spring" },
    });
    expect(tune.ignored).toEqual(["ip"]);
    expect(bodyErrors(tune.body)).toEqual([]);
    expect(mapQuery(query, { preset: "hasoffers" })).toEqual(tune);
    expect(resolveMapping({ preset: "hasoffers" }).preset).toBe("hasoffers");
  });

  it("every preset could be written out as an explicit mapping", () => {
    for (const name of PRESET_NAMES) {
      const { fields, status_values, meta_params } = PRESETS[name];
      expect(mappingErrors({ preset: name, fields, status_values, meta_params }), name).toEqual([]);
    }
  });
});

describe("resolveMapping", () => {
  it("uses generic when no preset is named", () => {
    expect(resolveMapping({})).toEqual(PRESETS.generic);
  });

  it("lets explicit fields override a preset field by field, and [] turn one off", () => {
    const mapping: NetworkMapping = { preset: "keitaro", fields: { transaction_id: ["order"], click_id: [] } };
    const result = mapQuery("subid=s-1&order=o-1&tid=t-1&status=sale", mapping);
    expect(result.body).toEqual({ transaction_id: "o-1", status: "approved" });
    expect(result.used).toEqual({ transaction_id: "order", status: "status" });
    expect(result.ignored).toEqual(["subid", "tid"]);
  });

  it("merges status values over the preset's, case-insensitively", () => {
    const mapping: NetworkMapping = { preset: "keitaro", status_values: { Sale: "paid" } };
    expect(mapQuery("subid=s&status=SALE", mapping).body.status).toBe("paid");
    expect(mapQuery("subid=s&status=lead", mapping).body.status).toBe("pending");
  });

  it("does not let a caller's changes reach the presets", () => {
    const resolved = resolveMapping({ preset: "voluum" });
    (resolved.fields.click_id as string[]).push("changed");
    expect(PRESETS.voluum.fields.click_id).toEqual(["cid"]);
  });
});

describe("mapParams", () => {
  it("maps status values case-insensitively", () => {
    for (const [sent, status] of [
      ["1", "approved"],
      ["0", "pending"],
      ["-1", "declined"],
      ["APPROVED", "approved"],
      ["Rejected", "declined"],
    ]) {
      expect(mapQuery(`txid=t&status=${sent}`).body.status, sent).toBe(status);
    }
  });

  it("passes an unknown status through so that PostbackSchema names body.status", () => {
    // "2" is pending for some networks and rejected for others, so generic leaves it to the operator.
    for (const sent of ["2", "maybe", "constructor"]) {
      const { body } = mapQuery(`txid=t&status=${sent}`);
      expect(body.status).toBe(sent);
      expect(bodyErrors(body)).toEqual(["body.status"]);
    }
  });

  it("adds the default currency only to an amount", () => {
    const mapping: NetworkMapping = { default_currency: "EUR" };
    expect(mapQuery("txid=t&payout=3.50", mapping).body).toEqual({
      transaction_id: "t",
      amount: "3.50",
      currency: "EUR",
    });
    expect(mapQuery("txid=t", mapping).body).toEqual({ transaction_id: "t" });
    expect(mapQuery("txid=t&payout=3.50&currency=GBP", mapping).body.currency).toBe("GBP");
  });

  it("drops a currency sent without an amount, as templated URLs do", () => {
    const result = mapQuery("txid=t&status=declined&currency=USD&payout=");
    expect(result.body).toEqual({ transaction_id: "t", status: "declined" });
    expect(result.used).not.toHaveProperty("currency");
    expect(result.ignored).toEqual(["currency", "payout"]);
    expect(bodyErrors(result.body)).toEqual([]);
  });

  it("keeps an amount exactly as sent", () => {
    for (const amount of ["29.90", "0.10", "1000000.00000001"]) {
      const { body } = mapQuery(`txid=t&payout=${amount}&currency=USD`);
      expect(body.amount).toBe(amount);
      expect(PostbackSchema.parse(body).amount).toBe(amount);
    }
  });

  it("treats empty values as absent, so the next alias wins", () => {
    const result = mapQuery("transaction_id=&txid=&tid=t-3&order_id=o-4&status=&payout=");
    expect(result.body).toEqual({ transaction_id: "t-3" });
    expect(result.used).toEqual({ transaction_id: "tid" });
    expect(result.ignored).toEqual(["transaction_id", "txid", "order_id", "status", "payout"]);
    expect(PostbackSchema.parse(result.body).status).toBe("approved");
  });

  it("takes the first occurrence of a repeated parameter, even an empty one", () => {
    expect(mapQuery("txid=first&txid=second").body.transaction_id).toBe("first");
    expect(mapQuery("txid=t&payout=&payout=5").body).toEqual({ transaction_id: "t" });
  });

  it("reads Unix seconds and milliseconds as RFC 3339 with auto", () => {
    expect(mapQuery("txid=t&event_time=1767225600").body.event_time).toBe("2026-01-01T00:00:00.000Z");
    expect(mapQuery("txid=t&event_time=1767225600123").body.event_time).toBe("2026-01-01T00:00:00.123Z");
    for (const sent of ["2026-01-01T00:00:00Z", "20260101", "176722560012"]) {
      expect(mapQuery(`txid=t&event_time=${encodeURIComponent(sent)}`).body.event_time).toBe(sent);
    }
    expect(bodyErrors(mapQuery("txid=t&event_time=1767225600").body)).toEqual([]);
  });

  it("reads any digits as the configured unit, and leaves rfc3339 alone", () => {
    const at = (format: NetworkMapping["event_time_format"], sent: string) =>
      mapQuery(`txid=t&event_time=${sent}`, { event_time_format: format }).body.event_time;
    expect(at("unix_seconds", "86400")).toBe("1970-01-02T00:00:00.000Z");
    expect(at("unix_millis", "86400000")).toBe("1970-01-02T00:00:00.000Z");
    expect(at("unix_millis", "1767225600")).toBe("1970-01-21T10:53:45.600Z");
    expect(at("unix_seconds", "99999999999999999999")).toBe("99999999999999999999");
    expect(at("rfc3339", "1767225600")).toBe("1767225600");
    expect(bodyErrors(mapQuery("txid=t&event_time=1767225600", { event_time_format: "rfc3339" }).body)).toEqual([
      "body.event_time",
    ]);
  });

  it('keeps every unmapped parameter with "*", but never the authentication ones', () => {
    const query = "txid=t&sub1=a&utm_campaign=b&sub[2]=c&blank=&token=x&pb_id=i&pb_ts=1&pb_sig=s";
    const result = mapQuery(query, { meta_params: "*" });
    expect(result.body.meta).toEqual({ sub1: "a", utm_campaign: "b" });
    expect(result.meta_keys).toEqual(["sub1", "utm_campaign"]);
    // sub[2] cannot be a meta key and blank is empty: both are ignored, and said so.
    expect(result.ignored).toEqual(["sub[2]", "blank"]);
    expect(JSON.stringify(result)).not.toMatch(/token|pb_id|pb_ts|pb_sig/);
    expect(bodyErrors(result.body)).toEqual([]);
  });

  it("keeps only the listed parameters with a list", () => {
    const result = mapQuery("txid=t&sub1=a&utm_campaign=b&sub[2]=c", { meta_params: ["utm_campaign"] });
    expect(result.body.meta).toEqual({ utm_campaign: "b" });
    expect(result.ignored).toEqual(["sub1", "sub[2]"]);
  });

  it("keeps at most 32 meta keys and lists the rest as ignored", () => {
    const extra = Array.from({ length: 40 }, (_, i) => `p${i}=v${i}`).join("&");
    const result = mapQuery(`txid=t&${extra}`, { meta_params: "*" });
    expect(result.meta_keys).toEqual(Array.from({ length: 32 }, (_, i) => `p${i}`));
    expect(result.ignored).toEqual(Array.from({ length: 8 }, (_, i) => `p${i + 32}`));
    expect(bodyErrors(result.body)).toEqual([]);
  });

  it("puts every other parameter in exactly one place: a field, meta or ignored", () => {
    const query = "txid=t&tid=dup&status=1&payout=2.5&currency=USD&sub1=a&sub2=b&x[]=c&empty=&token=k";
    const result = mapQuery(query, { meta_params: ["sub1", "tid"] });
    const places = [...new Set(Object.values(result.used)), ...result.meta_keys, ...result.ignored];
    const names = [...new Set(pairs(query).map(([name]) => name))].filter(
      (name) => !(RESERVED_PARAMS as readonly string[]).includes(name),
    );
    expect(places.sort()).toEqual(names.sort());
    expect(result.meta_keys).toEqual(["tid", "sub1"]);
  });

  it("never reads an authentication parameter, even when a mapping names it", () => {
    const handMade: ResolvedMapping = {
      ...PRESETS.generic,
      fields: { ...PRESETS.generic.fields, click_id: ["token"] },
    };
    const result = mapParams(pairs("txid=t&token=secret"), handMade);
    expect(result.body).toEqual({ transaction_id: "t" });
    expect(result.ignored).toEqual([]);
  });
});

describe("describeMapping", () => {
  it("lists the fields that are read, in canonical order, with their parameters", () => {
    expect(describeMapping(resolveMapping({ preset: "keitaro", fields: { click_id: [] } }))).toEqual([
      { field: "transaction_id", params: ["tid", "subid"] },
      { field: "status", params: ["status"] },
      { field: "amount", params: ["payout"] },
      { field: "currency", params: ["currency"] },
    ]);
    expect(describeMapping(PRESETS.generic).map((d) => d.field)).toHaveLength(12);
  });
});

describe("NetworkMappingSchema", () => {
  it("accepts a full mapping", () => {
    expect(
      mappingErrors({
        preset: "keitaro",
        fields: { transaction_id: ["order[id]", "tid"], amount: ["sum"] },
        status_values: { "1": "approved", confirmed: "paid" },
        default_currency: "USD",
        meta_params: ["sub_id_1"],
        event_time_format: "unix_seconds",
      }),
    ).toEqual([]);
  });

  it("names each bad setting by its path", () => {
    const cases: [unknown, string][] = [
      [{ fields: { click_id: ["sub id"] } }, "mapping.fields.click_id[0]"],
      [{ fields: { click_id: Array.from({ length: 21 }, (_, i) => `p${i}`) } }, "mapping.fields.click_id"],
      [{ fields: { click_id: ["x".repeat(65)] } }, "mapping.fields.click_id[0]"],
      [{ fields: { meta: ["sub1"] } }, "mapping.fields.meta"],
      [{ status_values: { "1": "ok" } }, "mapping.status_values.1"],
      [{ status_values: { Sale: "approved", sale: "declined" } }, "mapping.status_values.sale"],
      [
        { status_values: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`s${i}`, "pending"])) },
        "mapping.status_values",
      ],
      [{ status_values: { ["x".repeat(65)]: "paid" } }, `mapping.status_values.${"x".repeat(65)}`],
      [{ default_currency: "usd" }, "mapping.default_currency"],
      [{ default_currency: "XYZ" }, "mapping.default_currency"],
      [{ meta_params: ["sub1", "sub[2]"] }, "mapping.meta_params[1]"],
      [{ meta_params: "all" }, "mapping.meta_params"],
      [{ meta_params: Array.from({ length: 51 }, (_, i) => `p${i}`) }, "mapping.meta_params"],
      [{ preset: "tracker9000" }, "mapping.preset"],
      [{ event_time_format: "iso" }, "mapping.event_time_format"],
      [{ extra: true }, "mapping.extra"],
    ];
    for (const [mapping, location] of cases) {
      expect(
        mappingErrors(mapping).map((e) => e.location),
        JSON.stringify(mapping),
      ).toEqual([location]);
    }
  });

  it("refuses the authentication parameters as field or meta names", () => {
    for (const name of RESERVED_PARAMS) {
      expect(mappingErrors({ fields: { transaction_id: [name] } })).toEqual([
        { location: "mapping.fields.transaction_id[0]", message: expect.stringContaining("reserved") },
      ]);
      expect(mappingErrors({ meta_params: [name] })).toEqual([
        { location: "mapping.meta_params[0]", message: expect.stringContaining("reserved") },
      ]);
    }
  });

  it("explains the rules in its messages", () => {
    expect(mappingErrors({ fields: { amount: ["pay out"] }, meta_params: "some" })).toEqual([
      { location: "mapping.fields.amount[0]", message: "must be 1 to 64 letters, digits, _ . - [ ]" },
      { location: "mapping.meta_params", message: 'must be "*" or a list of at most 50 parameter names' },
    ]);
  });
});
