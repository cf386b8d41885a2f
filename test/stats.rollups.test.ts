/**
 * Stats from the roll-ups against a brute-force count over the raw rows: random conversions, their
 * status changes and clicks, delivered through the real EVENTS and CLICKS consumers twice and out of
 * order, then every way of grouping compared with what D1's conversions and clicks rows say.
 */
import { env } from "cloudflare:workers";
import Big from "big.js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ALLOWED_TRANSITIONS } from "../src/domain/conversion";
import type { EventMessage } from "../src/domain/messages";
import { STATS_DIMENSIONS } from "../src/domain/stats";
import { admin, createNetwork, createOffer, expectStatus, makeEventMessage, uniqueId } from "./support/helpers";
import { deliverAcked } from "./support/queues";

const EVENTS = env.EVENTS_QUEUE_NAME;
const CLICKS = env.CLICKS_QUEUE_NAME;
const MOBILE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148";
const DESKTOP = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";

/** A status path the lifecycle allows, from pending or from any first status. */
function pathArbitrary() {
  return fc
    .tuple(fc.constantFrom("pending", "approved", "paid", "declined"), fc.array(fc.nat(3), { maxLength: 3 }))
    .map(([first, picks]) => {
      const path: string[] = [first];
      for (const pick of picks) {
        const next = ALLOWED_TRANSITIONS[path.at(-1) as keyof typeof ALLOWED_TRANSITIONS];
        if (next.length === 0) break;
        path.push(next[pick % next.length] as string);
      }
      return path;
    });
}

const amountArbitrary = fc.oneof(
  fc
    .tuple(fc.bigInt({ min: 0n, max: 999_999_999_999_999n }), fc.nat(99_999_999), fc.integer({ min: 0, max: 8 }))
    .map(([whole, fraction, digits]) =>
      digits === 0 ? whole.toString() : `${whole}.${String(fraction).padStart(8, "0").slice(0, digits)}`,
    ),
  // The largest amounts and the limbs' edges (the integer part is split at 1e9, migration 0015).
  fc.constantFrom("999999999999999.99999999", "999999999999999", "999999999", "1000000000", "1000000000.00000001"),
);

const conversionArbitrary = fc.record({
  path: pathArbitrary(),
  amount: fc.option(amountArbitrary, { nil: undefined }),
  currency: fc.constantFrom("USD", "EUR", "JPY"),
  platform: fc.constantFrom("ios", "android", "web", undefined),
  event_type: fc.constantFrom("sale", "lead", "install", undefined),
  /** Hours after the scenario's start (three days, crossing Paris's and New York's midnights). */
  hour: fc.integer({ min: 0, max: 71 }),
  minute: fc.integer({ min: 0, max: 59 }),
  click: fc.option(fc.nat(5), { nil: undefined }),
});

const clickArbitrary = fc.record({
  hour: fc.integer({ min: 0, max: 71 }),
  country: fc.constantFrom("FR", "US", "DE", null),
  user_agent: fc.constantFrom(MOBILE, DESKTOP, null),
  sub1: fc.constantFrom("alpha", "beta", undefined),
});

const scenarioArbitrary = fc.record({
  conversions: fc.array(conversionArbitrary, { minLength: 1, maxLength: 10 }),
  clicks: fc.array(clickArbitrary, { maxLength: 6 }),
  /** Seeds for the order the messages arrive in and how they are cut into batches. */
  order: fc.array(fc.nat(1000), { minLength: 40, maxLength: 40 }),
  duplicates: fc.array(fc.nat(1000), { maxLength: 8 }),
  group_by: fc.subarray([...STATS_DIMENSIONS], { maxLength: 3 }),
  time_zone: fc.constantFrom("UTC", "Europe/Paris", "America/New_York"),
});

const START_MS = Date.parse("2026-03-28T00:00:00Z"); // Paris moves to summer time on the 29th.
const HOUR_MS = 3_600_000;

function eventMessages(
  networkId: string,
  c: typeof conversionArbitrary extends fc.Arbitrary<infer T> ? T : never,
  clickId: string | undefined,
) {
  const transactionId = uniqueId("tx");
  const firstSeen = new Date(START_MS + c.hour * HOUR_MS + c.minute * 60_000).toISOString();
  return c.path.map((status, index) => {
    const money = c.amount === undefined ? {} : { amount: c.amount, currency: c.currency };
    const fields = {
      status,
      ...money,
      ...(c.platform ? { platform: c.platform } : {}),
      ...(c.event_type ? { event_type: c.event_type } : {}),
      ...(clickId ? { click_id: clickId.toUpperCase() } : {}),
    };
    return makeEventMessage({
      network_id: networkId,
      transaction_id: transactionId,
      seq: index + 1,
      verdict: index === 0 ? "accepted" : "updated",
      received_at: firstSeen,
      event: fields as EventMessage["event"],
      conversion: {
        ...fields,
        event_time: firstSeen,
        first_seen_at: firstSeen,
        version: index + 1,
      } as EventMessage["conversion"],
    });
  });
}

interface RawConversion {
  status: string;
  amount: string | null;
  currency: string | null;
  revenue: string | null;
  revenue_currency: string | null;
  payout: string | null;
  payout_currency: string | null;
  platform: string | null;
  event_type: string | null;
  campaign_id: string | null;
  offer_id: string | null;
  attributed_partner_id: string | null;
  first_seen_at: string;
  country: string | null;
  device: string | null;
  sub1: string | null;
}

function localDay(zone: string, iso: string): string {
  return new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" }).format(
    new Date(iso),
  );
}

function localHour(zone: string, iso: string): string {
  const parts = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    hourCycle: "h23",
    timeZoneName: "longOffset",
  }).formatToParts(new Date(iso));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const offset = get("timeZoneName").replace("GMT", "") || "+00:00";
  return `${get("year")}-${get("month")}-${get("day")}T${get("hour")}:00:00${offset}`;
}

type Dimension = (typeof STATS_DIMENSIONS)[number];

function conversionValueOf(dimension: Dimension, zone: string, row: RawConversion, networkId: string): string | null {
  switch (dimension) {
    case "day":
      return localDay(zone, row.first_seen_at);
    case "hour":
      return localHour(zone, row.first_seen_at);
    case "network":
      return networkId;
    case "offer":
      return row.offer_id;
    case "campaign":
      return row.campaign_id;
    case "partner":
      return row.attributed_partner_id;
    case "platform":
      return row.platform;
    case "country":
      return row.country;
    case "device":
      return row.device;
    case "event_type":
      return row.event_type;
    case "status":
      return row.status;
    case "sub1":
      return row.sub1;
  }
}

interface RawClick {
  clicked_at: string;
  offer_id: string;
  partner_id: string;
  campaign_id: string | null;
  country: string | null;
  device: string | null;
  sub1: string | null;
}

/** A click's value of a dimension: it has no status, event type or platform. */
function clickValueOf(dimension: Dimension, zone: string, row: RawClick, networkId: string): string | null {
  switch (dimension) {
    case "day":
      return localDay(zone, row.clicked_at);
    case "hour":
      return localHour(zone, row.clicked_at);
    case "network":
      return networkId;
    case "offer":
      return row.offer_id;
    case "campaign":
      return row.campaign_id;
    case "partner":
      return row.partner_id;
    case "country":
      return row.country;
    case "device":
      return row.device;
    case "sub1":
      return row.sub1;
    default:
      throw new Error(`a click has no ${dimension}`);
  }
}

const STANDING = new Set(["pending", "approved", "paid"]);

interface Expected {
  clicks: number;
  conversions: number;
  statuses: Record<string, number>;
  amount: Map<string, Big>;
  revenue: Map<string, Big>;
  payout: Map<string, Big>;
}

function bruteForce(
  rows: RawConversion[],
  clicks: RawClick[] | null,
  groupBy: Dimension[],
  zone: string,
  networkId: string,
) {
  const groups = new Map<string, Expected>();
  const groupOf = (values: (string | null)[]) => {
    const key = JSON.stringify(values);
    let group = groups.get(key);
    if (!group) {
      group = { clicks: 0, conversions: 0, statuses: {}, amount: new Map(), revenue: new Map(), payout: new Map() };
      groups.set(key, group);
    }
    return group;
  };
  for (const click of clicks ?? []) groupOf(groupBy.map((d) => clickValueOf(d, zone, click, networkId))).clicks += 1;
  for (const row of rows) {
    const group = groupOf(groupBy.map((d) => conversionValueOf(d, zone, row, networkId)));
    group.conversions += 1;
    group.statuses[row.status] = (group.statuses[row.status] ?? 0) + 1;
    if (!STANDING.has(row.status)) continue;
    for (const [kind, value, currency] of [
      ["amount", row.amount, row.currency],
      ["revenue", row.revenue, row.revenue_currency],
      ["payout", row.payout, row.payout_currency],
    ] as const) {
      if (value === null || currency === null) continue;
      const sums = group[kind];
      sums.set(currency, (sums.get(currency) ?? new Big(0)).plus(value));
    }
  }
  return groups;
}

interface StatsBody {
  data: {
    group: Record<string, string | null>;
    conversions: number;
    clicks: number | null;
    statuses: Record<string, number>;
    amount: { currency: string; amount: string }[];
    revenue: { currency: string; amount: string }[];
    payout: { currency: string; amount: string }[] | null;
  }[];
  totals: { conversions: number; clicks: number | null };
}

async function stats(query: Record<string, string>): Promise<StatsBody> {
  return expectStatus<StatsBody>(await admin(`/v1/stats?${new URLSearchParams(query)}`), 200);
}

function shuffled<T>(items: T[], seeds: number[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = (seeds[i % seeds.length] ?? 0) % (i + 1);
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}

describe("stats from the roll-ups", () => {
  it("equal a brute-force count over the raw rows, whatever the order and the repeats of the messages", async () => {
    const network = await createNetwork();
    const offer = await createOffer({ network_id: network.id, campaign_id: uniqueId("cmp") });
    await fc.assert(
      fc.asyncProperty(scenarioArbitrary, async (scenario) => {
        const networkId = (await createNetwork()).id;
        const runOffer = await createOffer({ network_id: networkId, campaign_id: uniqueId("cmp") });
        const clickIds = scenario.clicks.map(() => uniqueId("clk").toLowerCase());
        const clickMessages = scenario.clicks.map((click, i) => ({
          v: 1,
          clicks: [
            {
              click_id: clickIds[i],
              offer_id: runOffer.id,
              partner_id: "ptn_stats",
              clicked_at: new Date(START_MS + click.hour * HOUR_MS).toISOString(),
              sub_ids: click.sub1 ? { sub1: click.sub1 } : {},
              country: click.country,
              user_agent: click.user_agent,
              referrer: null,
              ip_prefix: null,
            },
          ],
        }));
        const events = scenario.conversions.flatMap((c) =>
          eventMessages(
            networkId,
            c,
            c.click === undefined ? undefined : clickIds[c.click % Math.max(1, clickIds.length)],
          ),
        );
        const all: { queue: string; body: unknown }[] = [
          ...events.map((body) => ({ queue: EVENTS, body })),
          ...clickMessages.map((body) => ({ queue: CLICKS, body })),
        ];
        const withRepeats = [...all, ...scenario.duplicates.map((d) => all[d % all.length] as (typeof all)[number])];
        const arrivals = shuffled(withRepeats, scenario.order);
        // Cut into batches of one queue each, as a queue hands them over.
        let i = 0;
        while (i < arrivals.length) {
          const queue = arrivals[i]?.queue as string;
          const size = 1 + ((scenario.order[i % scenario.order.length] ?? 0) % 4);
          const batch: unknown[] = [];
          while (i < arrivals.length && batch.length < size && arrivals[i]?.queue === queue) {
            batch.push(arrivals[i]?.body);
            i++;
          }
          await deliverAcked(queue, batch);
        }

        const { results: rows } = await env.DB.prepare(
          `SELECT c.*, k.country, k.device, k.sub1 FROM conversions c
           LEFT JOIN clicks k ON k.click_id = lower(trim(c.click_id)) WHERE c.network_id = ? AND c.test = 0`,
        )
          .bind(networkId)
          .all<RawConversion>();
        expect(rows).toHaveLength(scenario.conversions.length);
        const groupBy = scenario.group_by as Dimension[];
        const body = await stats({
          network_id: networkId,
          group_by: groupBy.join(","),
          since: "2026-03-26",
          until: "2026-04-02",
          time_zone: scenario.time_zone,
        });
        const clickable = groupBy.every((d) => !["platform", "event_type", "status"].includes(d));
        const { results: clickRows } = await env.DB.prepare(
          `SELECT k.*, o.campaign_id FROM clicks k JOIN offers o ON o.id = k.offer_id WHERE k.offer_id = ?`,
        )
          .bind(runOffer.id)
          .all<RawClick>();
        expect(clickRows).toHaveLength(new Set(clickIds).size);
        const expected = bruteForce(rows, clickable ? clickRows : null, groupBy, scenario.time_zone, networkId);
        expect(body.data.length).toBe(expected.size);
        for (const row of body.data) {
          const want = expected.get(JSON.stringify(groupBy.map((d) => row.group[d] ?? null)));
          expect(want, `unexpected group ${JSON.stringify(row.group)}`).toBeDefined();
          if (!want) continue;
          expect(row.conversions).toBe(want.conversions);
          expect(row.clicks).toBe(clickable ? want.clicks : null);
          for (const status of ["pending", "approved", "paid", "declined", "reversed"]) {
            expect(row.statuses[status]).toBe(want.statuses[status] ?? 0);
          }
          for (const kind of ["amount", "revenue", "payout"] as const) {
            const got = new Map((row[kind] ?? []).map((m) => [m.currency, new Big(m.amount).toFixed()]));
            const exact = new Map([...want[kind]].map(([currency, sum]) => [currency, sum.toFixed()]));
            expect(got).toEqual(exact);
          }
        }
        expect(body.totals.conversions).toBe(rows.length);

        expect(body.totals.clicks).toBe(clickable ? clickRows.length : null);
      }),
      { numRuns: 15 },
    );
    // The file's other offer never received a click: nothing of the runs leaked into it.
    const other = await stats({ offer_id: offer.id, since: "2026-03-26", until: "2026-04-02" });
    expect(other.totals.clicks).toBe(0);
  });
});
