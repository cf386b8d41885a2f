/**
 * Reports: the stats of a period (the API's getStats, over the same roll-ups) as a chart of
 * conversions per day by status and a table grouped as asked, with the groups as a CSV or NDJSON
 * file. A network key sees its own network's numbers, without payouts, as the API answers it.
 */
import { STATS_DIMENSIONS, type StatsColumnDimension, type StatsDimension } from "../../domain/stats";
import { EXPORT_MEDIA_TYPES, exportStream } from "../../lib/export-stream";
import { type Money, offsetMinutes, queryStats, type StatsAnswer, statsExportColumns } from "../../reports/stats";
import { StackedBars } from "../charts";
import {
  type ConsoleApp,
  type ConsoleContext,
  choiceParam,
  dayParam,
  NotAllowed,
  pageOf,
  param,
  render,
} from "../context";
import { Layout, Table } from "../layout";
import { allows } from "../scopes";

const STATUSES = ["pending", "approved", "paid", "declined", "reversed"] as const;
const GROUPINGS = STATS_DIMENSIONS.filter((d) => d !== "hour");
const FILTERS = ["network_id", "offer_id", "partner_id", "country", "status"] as const;
const FILTER_DIMENSIONS: Record<(typeof FILTERS)[number], StatsColumnDimension> = {
  network_id: "network",
  offer_id: "offer",
  partner_id: "partner",
  country: "country",
  status: "status",
};

interface ReportQuery {
  since: string | undefined;
  until: string | undefined;
  time_zone: string;
  group_by: StatsDimension;
  filters: Partial<Record<StatsColumnDimension, string>>;
  own: string | null;
}

function reportQuery(c: ConsoleContext): ReportQuery {
  const page = pageOf(c);
  const own = page.principal.scope === "network" ? page.principal.subject_id : null;
  const filters: Partial<Record<StatsColumnDimension, string>> = {};
  for (const name of FILTERS) {
    const value = name === "network_id" ? (own ?? param(c, name)) : param(c, name);
    if (value !== undefined) filters[FILTER_DIMENSIONS[name]] = value;
  }
  if (!allows(page.principal, "getStats", filters.network ?? null)) throw new NotAllowed("getStats");
  return {
    since: dayParam(c, "since"),
    until: dayParam(c, "until"),
    time_zone: param(c, "time_zone") ?? "UTC",
    group_by: choiceParam(c, "group_by", GROUPINGS) ?? "day",
    filters,
    own,
  };
}

function ask(c: ConsoleContext, query: ReportQuery, groupBy: StatsDimension[]): Promise<StatsAnswer> {
  return queryStats(
    c.env.DB,
    {
      group_by: groupBy,
      since: query.since,
      until: query.until,
      time_zone: query.time_zone,
      test: false,
      filters: query.filters,
      hide_payout: query.own !== null,
    },
    Date.now(),
  );
}

const moneyText = (money: readonly Money[] | null) =>
  money === null ? "—" : money.length === 0 ? "0" : money.map((m) => `${m.amount} ${m.currency}`).join(" · ");

const rate = (value: number | null) => (value === null ? "—" : `${(value * 100).toFixed(2)} %`);

export function registerReportPages(app: ConsoleApp): void {
  app.get("/reports", async (c) => {
    const page = pageOf(c);
    const query = reportQuery(c);
    const [answer, daily] = await Promise.all([ask(c, query, [query.group_by]), ask(c, query, ["day", "status"])]);
    // The local days of the period, each as its date's UTC midnight (what the bars are keyed by).
    const localDate = (ms: number) =>
      new Date(ms + offsetMinutes(daily.time_zone, ms) * 60_000).toISOString().slice(0, 10);
    const days: number[] = [];
    const last = Date.parse(`${localDate(Date.parse(daily.until) - 1)}T00:00:00Z`);
    for (let ms = Date.parse(`${localDate(Date.parse(daily.since))}T00:00:00Z`); ms <= last; ms += 86_400_000) {
      days.push(ms / 1000);
    }
    const counts = daily.data.map((row) => ({
      bucket: Date.parse(`${row.group.day}T00:00:00Z`) / 1000,
      series: (row.group.status ?? "pending") as (typeof STATUSES)[number],
      n: row.conversions,
    }));
    const exportQuery = new URLSearchParams(c.req.query());
    const exportHref = (format: string) => {
      const params = new URLSearchParams(exportQuery);
      params.set("format", format);
      return `/console/reports/export?${params}`;
    };
    return render(
      c,
      <Layout title="Reports" page={page}>
        <h1>Reports</h1>
        <form method="get" action="/console/reports" class="search" aria-label="Choose the report">
          <div class="fields">
            <label>
              <span>From</span>
              <input type="date" name="since" value={query.since ?? ""} />
            </label>
            <label>
              <span>Until (excluded)</span>
              <input type="date" name="until" value={query.until ?? ""} />
            </label>
            <label>
              <span>Time zone</span>
              <input name="time_zone" value={query.time_zone} />
            </label>
            <label>
              <span>Group by</span>
              <select name="group_by">
                {GROUPINGS.map((d) => (
                  <option value={d} selected={d === query.group_by}>
                    {d}
                  </option>
                ))}
              </select>
            </label>
            {FILTERS.filter((name) => !(name === "network_id" && query.own !== null)).map((name) => (
              <label>
                <span>{name}</span>
                <input name={name} value={query.filters[FILTER_DIMENSIONS[name]] ?? ""} />
              </label>
            ))}
          </div>
          <button type="submit">Show</button>
        </form>
        <p>
          {`${answer.since} to ${answer.until} (${answer.time_zone}), live conversions. `}
          {answer.complete ? "" : "Older conversions are still being counted: the numbers will grow. "}
          <a href={exportHref("csv")}>Download CSV</a> · <a href={exportHref("ndjson")}>Download NDJSON</a>
        </p>
        {allows(page.principal, "listReconciliations") ? (
          <p>
            Settling a month with an advertiser or a partner?{" "}
            <a href="/console/reports/reconciliations">Reconcile their report</a>.
          </p>
        ) : null}
        <section aria-labelledby="daily-h">
          <h2 id="daily-h">Conversions per day by status</h2>
          <StackedBars
            id="daily-chart"
            title="Conversions per day by status"
            description="Conversions by the day they were first seen, stacked by their current status."
            series={STATUSES}
            counts={counts}
            buckets={days}
            bucketLabel="day"
            label={(seconds) => new Date(seconds * 1000).toISOString().slice(5, 10)}
          />
        </section>
        <section aria-labelledby="groups-h">
          <h2 id="groups-h">By {query.group_by}</h2>
          <Table id="stats" caption={`Totals by ${query.group_by}; money per currency, exact`}>
            <thead>
              <tr>
                <th scope="col">{query.group_by}</th>
                <th scope="col">Clicks</th>
                <th scope="col">Conversions</th>
                <th scope="col">Rate</th>
                <th scope="col">Approved</th>
                <th scope="col">Pending</th>
                <th scope="col">Declined</th>
                <th scope="col">Amount</th>
                <th scope="col">Revenue</th>
                {query.own === null ? <th scope="col">Payout</th> : null}
                <th scope="col">Delivered</th>
              </tr>
            </thead>
            <tbody>
              {[...answer.data, { ...answer.totals, group: { [query.group_by]: "Total" } }].map((row) => (
                <tr>
                  <th scope="row">{row.group[query.group_by] ?? "(none)"}</th>
                  <td>{row.clicks === null ? "—" : String(row.clicks)}</td>
                  <td>{String(row.conversions)}</td>
                  <td>{rate(row.conversion_rate)}</td>
                  <td>{String(row.statuses.approved + row.statuses.paid)}</td>
                  <td>{String(row.statuses.pending)}</td>
                  <td>{String(row.statuses.declined + row.statuses.reversed)}</td>
                  <td>{moneyText(row.amount)}</td>
                  <td>{moneyText(row.revenue)}</td>
                  {query.own === null ? <td>{moneyText(row.payout)}</td> : null}
                  <td>{row.deliveries === null ? "—" : rate(row.deliveries.success_rate)}</td>
                </tr>
              ))}
            </tbody>
          </Table>
        </section>
      </Layout>,
    );
  });

  app.get("/reports/export", async (c) => {
    const query = reportQuery(c);
    const format = choiceParam(c, "format", ["csv", "ndjson"] as const) ?? "csv";
    const answer = await ask(c, query, [query.group_by]);
    const body = await exportStream({
      format,
      columns: statsExportColumns(answer.group_by, answer.totals),
      pages: (async function* () {
        yield answer.data;
      })(),
    });
    return new Response(body, {
      headers: {
        "content-type": EXPORT_MEDIA_TYPES[format],
        "content-disposition": `attachment; filename="stats-${answer.since.slice(0, 10)}.${format}"`,
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
    });
  });
}
