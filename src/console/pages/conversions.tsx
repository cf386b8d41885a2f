/**
 * Conversions: a search over the API's listConversions query (and every conversion it selects as
 * the API's CSV or NDJSON export, /console/conversions/export), and a conversion's page with its
 * history and verdicts, its hash-chain check (the proof route's), its attribution, and every delivery
 * with its attempts and a Replay button where one can be replayed.
 */
import type { FC } from "hono/jsx";
import type { Proof } from "../../conversions/chain";
import { proveConversion } from "../../conversions/proof";
import { REPLAYABLE_STATES } from "../../domain/delivery";
import { CONVERSION_STATUSES, normalizeIdentifier } from "../../domain/postback";
import { fromBase64Url, toBase64Url, utf8 } from "../../lib/bytes";
import {
  CONVERSION_COLUMNS,
  conversionKey,
  seesPayouts,
  toConversion,
  withoutPayout,
} from "../../reports/conversion-export";
import { getConversionWithArchive } from "../../storage/archive";
import { type ConversionFilter, type ConversionListKey, type ConversionRow, listConversions } from "../../storage/d1";
import { type AttemptRow, attemptsOfDeliveries, type DeliveryRow, listDeliveries } from "../../storage/deliveries";
import {
  type ConsoleApp,
  type ConsoleContext,
  choiceParam,
  dayParam,
  NotAllowed,
  NotFoundPage,
  pageOf,
  param,
  render,
} from "../context";
import { DownloadLinks, exportAnswer, formatParam } from "../downloads";
import { ActionForm, Layout, type PageContext, StateBadge, Table, Time } from "../layout";
import { allows } from "../scopes";
import { conversionHref } from "./overview";

const PAGE_SIZE = 50;

/** A list cursor for a link: the last row's sort key, as base64url JSON. */
export function encodeCursor(key: readonly string[]): string {
  return toBase64Url(utf8(JSON.stringify(key)));
}

export function decodeCursor(value: string | undefined, length: number): string[] | null {
  if (!value) return null;
  const bytes = fromBase64Url(value);
  if (!bytes) return null;
  try {
    const key = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
    return Array.isArray(key) && key.length === length && key.every((k) => typeof k === "string") ? key : null;
  } catch {
    return null;
  }
}

/** A date input's day as the start of that day (UTC); `end`: the start of the next day. */
export function dayBound(value: string | undefined, end: boolean): string | undefined {
  if (!value || !/^\d{4}-\d{2}-\d{2}$/.test(value)) return undefined;
  const ms = Date.parse(`${value}T00:00:00.000Z`);
  if (Number.isNaN(ms)) return undefined;
  return new Date(ms + (end ? 86_400_000 : 0)).toISOString();
}

function searchOf(c: ConsoleContext, ownNetwork: string | null) {
  const transaction = param(c, "transaction_id");
  return {
    transaction_id: transaction === undefined ? undefined : normalizeIdentifier(transaction),
    click_id: param(c, "click_id"),
    network_id: ownNetwork ?? param(c, "network_id"),
    partner_id: param(c, "partner_id"),
    status: choiceParam(c, "status", CONVERSION_STATUSES),
    from: dayParam(c, "from"),
    to: dayParam(c, "to"),
  };
}

/** The list query the search selects (the API's listConversions filter); the days as UTC bounds. */
function filterOf(search: ReturnType<typeof searchOf>): ConversionFilter {
  return {
    transaction_id: search.transaction_id,
    click_id: search.click_id,
    network_id: search.network_id,
    partner_id: search.partner_id,
    status: search.status,
    since: dayBound(search.from, false),
    until: dayBound(search.to, true),
  };
}

/** The search as the form sends it, for the download links: a network key's own network is implied. */
function searchParams(search: ReturnType<typeof searchOf>, ownNetwork: string | null) {
  const { network_id, ...rest } = search;
  return ownNetwork === null ? { ...rest, network_id } : rest;
}

const SearchForm: FC<{ search: ReturnType<typeof searchOf>; ownNetwork: string | null }> = ({ search, ownNetwork }) => (
  <form method="get" action="/console/conversions" class="search" aria-label="Search conversions">
    <div class="fields">
      <label>
        <span>Transaction id</span>
        <input name="transaction_id" value={search.transaction_id ?? ""} autocomplete="off" />
      </label>
      <label>
        <span>Click id</span>
        <input name="click_id" value={search.click_id ?? ""} autocomplete="off" />
      </label>
      {ownNetwork === null ? (
        <label>
          <span>Network</span>
          <input name="network_id" value={search.network_id ?? ""} autocomplete="off" />
        </label>
      ) : null}
      <label>
        <span>Partner (credited)</span>
        <input name="partner_id" value={search.partner_id ?? ""} autocomplete="off" />
      </label>
      <label>
        <span>Status</span>
        <select name="status">
          <option value="">any</option>
          {CONVERSION_STATUSES.map((s) => (
            <option value={s} selected={s === search.status}>
              {s}
            </option>
          ))}
        </select>
      </label>
      <label>
        <span>First seen from</span>
        <input type="date" name="from" value={search.from ?? ""} />
      </label>
      <label>
        <span>First seen to</span>
        <input type="date" name="to" value={search.to ?? ""} />
      </label>
    </div>
    <button type="submit">Search</button>
  </form>
);

export function registerConversionPages(app: ConsoleApp): void {
  // The page's search, every matching conversion, as the API's export of listConversions writes it:
  // a network key held to its own network and without payouts, as on the page and in the API.
  app.get("/conversions/export", async (c) => {
    const page = pageOf(c);
    const own = page.principal.scope === "network" ? page.principal.subject_id : null;
    if (!allows(page.principal, "listConversions", own)) throw new NotAllowed("listConversions");
    const filter = filterOf(searchOf(c, own));
    const format = formatParam(c);
    const payouts = seesPayouts(page.principal);
    return exportAnswer(c, {
      name: "conversions",
      format,
      columns: CONVERSION_COLUMNS,
      fetchPage: (after: ConversionListKey | null, limit) => listConversions(c.env.DB, filter, limit, after),
      keyOf: conversionKey,
      toItem: (row: ConversionRow) => (payouts ? toConversion(row) : withoutPayout(toConversion(row))),
    });
  });

  app.get("/conversions", async (c) => {
    const page = pageOf(c);
    const own = page.principal.scope === "network" ? page.principal.subject_id : null;
    if (!allows(page.principal, "listConversions", own)) throw new NotAllowed("listConversions");
    const search = searchOf(c, own);
    const filter = filterOf(search);
    const after = decodeCursor(param(c, "after"), 4) as ConversionListKey | null;
    const rows = await listConversions(c.env.DB, filter, PAGE_SIZE + 1, after);
    const shown = rows.slice(0, PAGE_SIZE);
    const last = shown.at(-1);
    const next = new URL(c.req.url);
    if (rows.length > PAGE_SIZE && last) {
      next.searchParams.set(
        "after",
        encodeCursor([last.first_seen_at, last.network_id, last.transaction_id, last.test === 1 ? "1" : "0"]),
      );
    }
    return render(
      c,
      <Layout title="Conversions" page={page}>
        <h1>Conversions</h1>
        {own ? <p class="muted">Network {own}'s conversions.</p> : null}
        <SearchForm search={search} ownNetwork={own} />
        <DownloadLinks
          path="/console/conversions/export"
          filters={searchParams(search, own)}
          note="Every conversion the search selects, newest first, not only this page."
        />
        <Table id="conversions" caption={`Conversions, newest first (${shown.length} shown)`}>
          <thead>
            <tr>
              <th scope="col">Transaction</th>
              <th scope="col">Network</th>
              <th scope="col">Status</th>
              <th scope="col">Amount</th>
              <th scope="col">Click id</th>
              <th scope="col">Partner</th>
              <th scope="col">First seen</th>
            </tr>
          </thead>
          <tbody>
            {shown.length === 0 ? (
              <tr>
                <td colspan={7}>No conversion matches.</td>
              </tr>
            ) : (
              shown.map((row) => (
                <tr>
                  <th scope="row">
                    <a href={conversionHref(row)}>{row.transaction_id}</a>
                    {row.test === 1 ? <span class="badge s-test">test</span> : null}
                  </th>
                  <td>{row.network_id}</td>
                  <td>{row.status}</td>
                  <td>{row.amount === null ? "—" : `${row.amount} ${row.currency ?? ""}`}</td>
                  <td>{row.click_id ?? "—"}</td>
                  <td>{row.attributed_partner_id ?? "—"}</td>
                  <td>
                    <Time iso={row.first_seen_at} />
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </Table>
        {rows.length > PAGE_SIZE ? (
          <p>
            <a href={`${next.pathname}${next.search}`}>Older conversions</a>
          </p>
        ) : null}
      </Layout>,
    );
  });

  app.get("/conversions/:network_id/:transaction_id", async (c) => {
    const page = pageOf(c);
    const networkId = c.req.param("network_id");
    const transactionId = normalizeIdentifier(c.req.param("transaction_id"));
    if (!allows(page.principal, "getConversion", networkId)) throw new NotAllowed("getConversion");
    const test = c.req.query("test") === "true";
    const showDeliveries = allows(page.principal, "listDeliveries");
    const { conversion, events, archivedDeliveries } = await getConversionWithArchive(
      c.env.DB,
      c.env.ARCHIVE,
      networkId,
      transactionId,
      test,
      { deliveries: showDeliveries },
    );
    if (!conversion && events.length === 0)
      throw new NotFoundPage(`No conversion "${transactionId}" from "${networkId}".`);
    const proof = allows(page.principal, "getConversionProof", networkId)
      ? (await proveConversion(c.env, networkId, transactionId, test)).proof
      : undefined;
    const hotDeliveries = showDeliveries
      ? (await listDeliveries(c.env.DB, { network_id: networkId, transaction_id: transactionId }, 200, null)).filter(
          (d) => isTestDelivery(d) === test,
        )
      : [];
    // Newest first, as the list: the archived ones (finished, older than ARCHIVE_AFTER_DAYS) after D1's.
    const archived = archivedDeliveries.toReversed();
    const deliveries: DeliveryRow[] = [...hotDeliveries, ...archived];
    const attempts = [
      ...(await attemptsOfDeliveries(
        c.env.DB,
        hotDeliveries.map((d) => d.id),
      )),
      ...archived.flatMap((d) => d.attempts_log),
    ];
    const title = `Conversion ${transactionId}`;
    return render(
      c,
      <Layout title={title} page={page}>
        <h1>
          Conversion <code>{transactionId}</code>
          {test ? <span class="badge s-test">test</span> : null}
        </h1>
        <p class="muted">
          Network <a href={`/console/conversions?network_id=${encodeURIComponent(networkId)}`}>{networkId}</a>
        </p>
        {conversion ? (
          <section aria-labelledby="state-h">
            <h2 id="state-h">Current state</h2>
            <dl class="facts">
              <dt>Status</dt>
              <dd>{conversion.status}</dd>
              <dt>Amount</dt>
              <dd>{conversion.amount === null ? "—" : `${conversion.amount} ${conversion.currency ?? ""}`}</dd>
              <dt>Event type</dt>
              <dd>{conversion.event_type ?? "—"}</dd>
              <dt>Click id</dt>
              <dd>{conversion.click_id ?? "—"}</dd>
              <dt>First seen</dt>
              <dd>
                <Time iso={conversion.first_seen_at} />
              </dd>
              <dt>Updated</dt>
              <dd>
                <Time iso={conversion.updated_at} />
              </dd>
              <dt>Version</dt>
              <dd>{String(conversion.version)}</dd>
            </dl>
            <h2 id="attribution-h">Attribution</h2>
            {conversion.attribution === null ? (
              <p id="attribution">Not attributed.</p>
            ) : (
              <dl class="facts" id="attribution">
                <dt>Verdict</dt>
                <dd>{conversion.attribution}</dd>
                <dt>Detail</dt>
                <dd>{conversion.attribution_detail ?? "—"}</dd>
                <dt>Partner</dt>
                <dd>{conversion.attributed_partner_id ?? "—"}</dd>
                <dt>Offer</dt>
                <dd>{conversion.offer_id ?? "—"}</dd>
                <dt>Clicked</dt>
                <dd>
                  <Time iso={conversion.clicked_at} />
                </dd>
                {/* What the hub pays the partner is not the network's to see: with the revenue, it is the operator's margin. */}
                {page.principal.scope === "network" ? null : (
                  <>
                    <dt>Payout</dt>
                    <dd>
                      {conversion.payout === null ? "—" : `${conversion.payout} ${conversion.payout_currency ?? ""}`}
                    </dd>
                  </>
                )}
                <dt>Revenue</dt>
                <dd>
                  {conversion.revenue === null ? "—" : `${conversion.revenue} ${conversion.revenue_currency ?? ""}`}
                </dd>
              </dl>
            )}
          </section>
        ) : (
          <p>The conversion row is not in D1 yet; its events are.</p>
        )}
        <Table id="events" caption="History, oldest first">
          <thead>
            <tr>
              <th scope="col">Seq</th>
              <th scope="col">Verdict</th>
              <th scope="col">Status</th>
              <th scope="col">Event time</th>
              <th scope="col">Received</th>
              <th scope="col">Event id</th>
            </tr>
          </thead>
          <tbody>
            {events.map((e) => (
              <tr>
                <td>{String(e.seq)}</td>
                <td>
                  <StateBadge state={e.verdict} />
                </td>
                <td>{e.status}</td>
                <td>
                  <Time iso={e.event_time} />
                </td>
                <td>
                  <Time iso={e.received_at} />
                </td>
                <td>
                  <code>{e.event_id}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
        <Chain proof={proof} />
        <section id="deliveries" aria-labelledby="deliveries-h">
          <h2 id="deliveries-h">Deliveries</h2>
          {!showDeliveries ? (
            <p>This key's scope does not reach deliveries.</p>
          ) : deliveries.length === 0 ? (
            <p>No delivery for this conversion.</p>
          ) : (
            deliveries.map((d) => (
              <DeliverySection delivery={d} attempts={attempts.filter((a) => a.delivery_id === d.id)} page={page} />
            ))
          )}
        </section>
      </Layout>,
    );
  });
}

function isTestDelivery(delivery: DeliveryRow): boolean {
  return (JSON.parse(delivery.payload) as { test?: boolean }).test === true;
}

const Chain: FC<{ proof: Proof | null | undefined }> = ({ proof }) => (
  <section id="chain" aria-labelledby="chain-h">
    <h2 id="chain-h">Hash chain</h2>
    {proof === undefined ? (
      <p>This key's scope does not reach the proof.</p>
    ) : proof === null ? (
      <p>No events to check.</p>
    ) : proof.verified ? (
      <p class="ok" data-chain="verified">
        <strong>verified</strong>: {String(proof.events.length)} event{proof.events.length === 1 ? "" : "s"}, each
        linked to the one before; D1 agrees with the conversion's Durable Object.
      </p>
    ) : (
      <div data-chain={proof.status}>
        <p class="bad">
          <strong>{proof.status}</strong>
          {proof.breaks.length > 0 ? `: breaks at ${proof.breaks.length} place(s).` : "."}
        </p>
        <ul>
          {proof.breaks.map((b) => (
            <li>
              {b.seq === null ? "" : `seq ${b.seq}: `}
              {b.reason}
            </li>
          ))}
        </ul>
      </div>
    )}
    {proof ? (
      <details>
        <summary>Notes</summary>
        <ul>
          {proof.notes.map((n) => (
            <li>{n}</li>
          ))}
          {proof.anchor ? <li>{proof.anchor.note}</li> : null}
        </ul>
      </details>
    ) : null}
  </section>
);

export const replayable: readonly string[] = REPLAYABLE_STATES.filter((s) => s !== "superseded");

export const AttemptsTable: FC<{ attempts: readonly AttemptRow[]; id?: string; caption: string }> = (props) => (
  <Table id={props.id} class="attempts" caption={props.caption}>
    <thead>
      <tr>
        <th scope="col">#</th>
        <th scope="col">Started</th>
        <th scope="col">Status</th>
        <th scope="col">Outcome</th>
        <th scope="col">Latency</th>
        <th scope="col">Answer</th>
      </tr>
    </thead>
    <tbody>
      {props.attempts.length === 0 ? (
        <tr>
          <td colspan={6}>No attempt yet.</td>
        </tr>
      ) : (
        props.attempts.map((a) => (
          <tr>
            <td>{String(a.attempt)}</td>
            <td>
              <Time iso={a.started_at} />
            </td>
            <td>{a.http_status === null ? (a.error_class ?? "—") : String(a.http_status)}</td>
            <td>
              <StateBadge state={a.outcome} />
            </td>
            <td>{`${a.latency_ms} ms`}</td>
            <td class="excerpt">{a.response_excerpt ?? a.error ?? ""}</td>
          </tr>
        ))
      )}
    </tbody>
  </Table>
);

export const ReplayButton: FC<{ delivery: DeliveryRow; page: PageContext }> = ({ delivery, page }) =>
  replayable.includes(delivery.state) && allows(page.principal, "replayDelivery", delivery.partner_id) ? (
    <ActionForm action={`/console/deliveries/${encodeURIComponent(delivery.id)}/replay`} csrf={page.csrf}>
      {/* Named "Replay" alone: the row or the section it sits in names the delivery. */}
      <button type="submit">Replay</button>
    </ActionForm>
  ) : null;

const DeliverySection: FC<{ delivery: DeliveryRow; attempts: readonly AttemptRow[]; page: PageContext }> = ({
  delivery,
  attempts,
  page,
}) => (
  <section class="delivery" aria-label={`Delivery ${delivery.id}`} data-delivery={delivery.id}>
    <h3>
      <a href={`/console/deliveries/${encodeURIComponent(delivery.id)}`}>{delivery.id}</a> to {delivery.partner_id}{" "}
      <StateBadge state={delivery.state} />
    </h3>
    <AttemptsTable attempts={attempts} caption={`Attempts of ${delivery.id}`} />
    <ReplayButton delivery={delivery} page={page} />
  </section>
);
