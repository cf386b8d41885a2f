/**
 * The overview: postbacks by verdict and delivery attempts by outcome over the last hour (per
 * minute) or day (per 15 minutes), each partner's success rate and latency, the backlog, partners
 * held back, networks gone silent, and the latest conversions. The live part refreshes itself every
 * 15 s (public/assets/console/console.js fetches /console/overview/live and swaps it in).
 */
import type { FC } from "hono/jsx";
import { type IncidentRow, openIncidents } from "../../storage/alert-rules";
import { type ConversionRow, listConversions } from "../../storage/d1";
import {
  ATTEMPT_OUTCOMES,
  type AttemptOutcome,
  attemptsByOutcome,
  type Backlog,
  type BucketCount,
  deliveryBacklog,
  type HeldPartner,
  heldPartners,
  type PartnerDeliveryStats,
  POSTBACK_VERDICTS,
  type PostbackVerdict,
  partnerDeliveryStats,
  postbacksByVerdict,
  type SilentNetwork,
  silentNetworks,
} from "../../storage/overview";
import { StackedBars } from "../charts";
import { type ConsoleApp, type ConsoleContext, NotAllowed, pageOf, render } from "../context";
import { Layout, navigationFor, Table, Time } from "../layout";
import { allows } from "../scopes";

/** A network that sent accepted postbacks before and none for this long is listed as silent. */
export const SILENT_AFTER_HOURS = 6;
export const REFRESH_SECONDS = 15;

const RANGES = {
  hour: { seconds: 3600, bucket: 60, label: "Last hour", bucketLabel: "1 minute" },
  day: { seconds: 86_400, bucket: 900, label: "Last day", bucketLabel: "15 minutes" },
} as const;
type Range = keyof typeof RANGES;

export interface OverviewData {
  range: Range;
  buckets: number[];
  postbacks: BucketCount<PostbackVerdict>[];
  attempts: BucketCount<AttemptOutcome>[];
  partners: PartnerDeliveryStats[];
  backlog: Backlog;
  held: HeldPartner[];
  silent: SilentNetwork[];
  recent: ConversionRow[];
  /** The alert rules' open incidents (listAlerts), oldest first. */
  alerts: IncidentRow[];
  nowMs: number;
}

async function overviewData(db: D1Database, range: Range, nowMs = Date.now()): Promise<OverviewData> {
  const { seconds, bucket } = RANGES[range];
  const count = seconds / bucket;
  const last = Math.floor(nowMs / 1000 / bucket) * bucket;
  const buckets = Array.from({ length: count }, (_, i) => last - (count - 1 - i) * bucket);
  const since = new Date((buckets[0] ?? last) * 1000).toISOString();
  const [postbacks, attempts, partners, backlog, held, silent, recent, alerts] = await Promise.all([
    postbacksByVerdict(db, since, bucket),
    attemptsByOutcome(db, since, bucket),
    partnerDeliveryStats(db, since),
    deliveryBacklog(db),
    heldPartners(db),
    silentNetworks(db, new Date(nowMs - SILENT_AFTER_HOURS * 3_600_000).toISOString()),
    listConversions(db, {}, 10, null),
    openIncidents(db),
  ]);
  return { range, buckets, postbacks, attempts, partners, backlog, held, silent, recent, alerts, nowMs };
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "—" : `${((100 * part) / whole).toFixed(1)} %`;
}

function age(fromIso: string | null, nowMs: number): string {
  if (fromIso === null) return "—";
  const seconds = Math.max(0, Math.round((nowMs - Date.parse(fromIso)) / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const Live: FC<{ data: OverviewData }> = ({ data }) => {
  const range = RANGES[data.range];
  const waiting = data.backlog.pending + data.backlog.retrying;
  return (
    <div
      id="live"
      data-refresh={`/console/overview/live?range=${data.range}`}
      data-refresh-seconds={String(REFRESH_SECONDS)}
    >
      <p class="muted">
        As of <Time iso={new Date(data.nowMs).toISOString()} />; refreshes every {String(REFRESH_SECONDS)} s.
      </p>
      <div class="charts">
        <section aria-labelledby="postbacks-h">
          <h2 id="postbacks-h">Postbacks by verdict</h2>
          <StackedBars
            id="postbacks-chart"
            title={`Postbacks per ${range.bucketLabel}, ${range.label.toLowerCase()}`}
            description="Postback requests by verdict, stacked per bar."
            series={POSTBACK_VERDICTS}
            counts={data.postbacks}
            buckets={data.buckets}
            bucketLabel={range.bucketLabel}
          />
        </section>
        <section aria-labelledby="attempts-h">
          <h2 id="attempts-h">Delivery attempts by outcome</h2>
          <StackedBars
            id="attempts-chart"
            title={`Delivery attempts per ${range.bucketLabel}, ${range.label.toLowerCase()}`}
            description="Attempts to deliver to partners by outcome, stacked per bar."
            series={ATTEMPT_OUTCOMES}
            counts={data.attempts}
            buckets={data.buckets}
            bucketLabel={range.bucketLabel}
          />
        </section>
      </div>

      <div class="cards">
        <section class="card" aria-labelledby="backlog-h">
          <h2 id="backlog-h">Backlog</h2>
          <dl id="backlog">
            <dt>Waiting</dt>
            <dd data-backlog="waiting">{String(waiting)}</dd>
            <dt>Pending</dt>
            <dd data-backlog="pending">{String(data.backlog.pending)}</dd>
            <dt>Retrying</dt>
            <dd data-backlog="retrying">{String(data.backlog.retrying)}</dd>
            <dt>Oldest</dt>
            <dd data-backlog="oldest">{age(data.backlog.oldest_created_at, data.nowMs)}</dd>
          </dl>
        </section>
        <section class="card" aria-labelledby="held-h">
          <h2 id="held-h">Partners paused or disabled</h2>
          {data.held.length === 0 ? (
            <p>None.</p>
          ) : (
            <ul id="held-partners">
              {data.held.map((p) => (
                <li>
                  <a href={`/console/partners/${encodeURIComponent(p.id)}`}>{p.id}</a>:{" "}
                  {p.status === "disabled"
                    ? `disabled (${p.disabled_reason ?? "operator"})`
                    : `paused (${p.paused_reason})`}
                </li>
              ))}
            </ul>
          )}
        </section>
        <section class="card" aria-labelledby="alerts-h">
          <h2 id="alerts-h">Open alerts</h2>
          <p class="muted">What the alert rules found, until it ends (GET /v1/alerts).</p>
          {data.alerts.length === 0 ? (
            <p>None.</p>
          ) : (
            <ul id="open-alerts">
              {data.alerts.slice(0, 20).map((incident) => (
                <li>
                  <strong>{incident.rule}</strong>: {incident.summary} Since <Time iso={incident.started_at} />.
                </li>
              ))}
            </ul>
          )}
        </section>
        <section class="card" aria-labelledby="silent-h">
          <h2 id="silent-h">Networks gone silent</h2>
          <p class="muted">No accepted postback for {String(SILENT_AFTER_HOURS)} h, though they sent before.</p>
          {data.silent.length === 0 ? (
            <p>None.</p>
          ) : (
            <ul id="silent-networks">
              {data.silent.map((n) => (
                <li>
                  <a href={`/console/networks/${encodeURIComponent(n.id)}`}>{n.id}</a>: last accepted{" "}
                  <Time iso={n.last_accepted_at} />
                </li>
              ))}
            </ul>
          )}
        </section>
      </div>

      <Table id="partner-stats" caption={`Delivery by partner, ${range.label.toLowerCase()}`}>
        <thead>
          <tr>
            <th scope="col">Partner</th>
            <th scope="col">Attempts</th>
            <th scope="col">Delivered</th>
            <th scope="col">Success rate</th>
            <th scope="col">p50 latency</th>
            <th scope="col">p95 latency</th>
          </tr>
        </thead>
        <tbody>
          {data.partners.length === 0 ? (
            <tr>
              <td colspan={6}>No attempts in this range.</td>
            </tr>
          ) : (
            data.partners.map((p) => (
              <tr data-partner={p.partner_id}>
                <th scope="row">
                  <a href={`/console/partners/${encodeURIComponent(p.partner_id)}`}>{p.partner_id}</a>
                </th>
                <td data-stat="attempts">{String(p.attempts)}</td>
                <td data-stat="delivered">{String(p.delivered)}</td>
                <td data-stat="success">{percent(p.delivered, p.attempts)}</td>
                <td data-stat="p50">{`${p.p50_ms} ms`}</td>
                <td data-stat="p95">{`${p.p95_ms} ms`}</td>
              </tr>
            ))
          )}
        </tbody>
      </Table>

      <Table id="recent-conversions" caption="Most recent conversions">
        <thead>
          <tr>
            <th scope="col">Transaction</th>
            <th scope="col">Network</th>
            <th scope="col">Status</th>
            <th scope="col">Amount</th>
            <th scope="col">First seen</th>
          </tr>
        </thead>
        <tbody>
          {data.recent.length === 0 ? (
            <tr>
              <td colspan={5}>No conversions yet.</td>
            </tr>
          ) : (
            data.recent.map((row) => (
              <tr>
                <th scope="row">
                  <a href={conversionHref(row)}>{row.transaction_id}</a>
                  {row.test === 1 ? <span class="badge s-test">test</span> : null}
                </th>
                <td>{row.network_id}</td>
                <td>{row.status}</td>
                <td>{row.amount === null ? "—" : `${row.amount} ${row.currency ?? ""}`}</td>
                <td>
                  <Time iso={row.first_seen_at} />
                </td>
              </tr>
            ))
          )}
        </tbody>
      </Table>
    </div>
  );
};

export function conversionHref(row: { network_id: string; transaction_id: string; test: number }): string {
  return `/console/conversions/${encodeURIComponent(row.network_id)}/${encodeURIComponent(row.transaction_id)}${row.test === 1 ? "?test=true" : ""}`;
}

function rangeOf(c: ConsoleContext): Range {
  return c.req.query("range") === "day" ? "day" : "hour";
}

/** The overview reads every network's and partner's numbers: keys that may list both, unscoped. */
function requireOverview(c: ConsoleContext): void {
  const { principal } = pageOf(c);
  if (!allows(principal, "listConversions")) throw new NotAllowed("listConversions");
  if (!allows(principal, "listDeliveries")) throw new NotAllowed("listDeliveries");
  if (!allows(principal, "listAlerts")) throw new NotAllowed("listAlerts");
}

export function registerOverview(app: ConsoleApp): void {
  app.get("/", async (c) => {
    const page = pageOf(c);
    // A network or partner key has no overview of everything: its first page instead.
    const first = navigationFor(page.principal)[0];
    if (!allows(page.principal, "listConversions") || !allows(page.principal, "listDeliveries")) {
      if (first && first.href !== "/console") return c.redirect(first.href, 303);
      requireOverview(c);
    }
    const range = rangeOf(c);
    const data = await overviewData(c.env.DB, range);
    return render(
      c,
      <Layout title="Overview" page={page}>
        <h1>Overview</h1>
        <nav aria-label="Range" class="range">
          {(Object.keys(RANGES) as Range[]).map((key) => (
            <a href={`/console?range=${key}`} aria-current={key === range ? "page" : undefined}>
              {RANGES[key].label}
            </a>
          ))}
        </nav>
        <Live data={data} />
      </Layout>,
    );
  });

  app.get("/overview/live", async (c) => {
    requireOverview(c);
    const data = await overviewData(c.env.DB, rangeOf(c));
    return c.html(await (<Live data={data} />));
  });
}
