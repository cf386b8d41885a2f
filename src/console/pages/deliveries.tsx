/**
 * Deliveries: failing and dead first, filtered by partner and state over the API's listDeliveries
 * query (and every delivery the filter selects as the API's CSV or NDJSON export,
 * /console/deliveries/export); a delivery's page with every attempt and Replay; and a bulk replay
 * that shows the dry run's count before it replays (a partner's: replayPartnerDeliveries; any other
 * filter: a bulk job, createReplay).
 */
import { DELIVERY_STATES, REPLAYABLE_STATES } from "../../domain/delivery";
import { BULK_REPLAY_DEFAULT_STATES, type ReplayFilter } from "../../domain/replay";
import { deliveryNotFound, replayOneDelivery } from "../../operations/deliveries";
import { replayPartnerDeliveries } from "../../operations/partners";
import { requestBulkReplay } from "../../operations/replays";
import { DELIVERY_COLUMNS, deliveryKey, toDelivery } from "../../reports/delivery-export";
import { type DeliveryRow, getDelivery, listDeliveries } from "../../storage/deliveries";
import {
  type ConsoleApp,
  type ConsoleContext,
  choiceParam,
  field,
  formOf,
  NotAllowed,
  NotFoundPage,
  pageOf,
  param,
  render,
} from "../context";
import { DownloadLinks, exportAnswer, formatParam } from "../downloads";
import { Result, runAction } from "../feedback";
import { ActionForm, Layout, type PageContext, StateBadge, Table, Time } from "../layout";
import { allows } from "../scopes";
import { AttemptsTable, ReplayButton } from "./conversions";

/** Failing first: the order the list shows states in when no state is asked for. */
const STATE_RANK: Record<string, number> = {
  dead: 0,
  failed: 1,
  retrying: 2,
  parked: 3,
  pending: 4,
  delivered: 5,
  superseded: 6,
};
const FAILING: readonly string[] = ["dead", "failed", "retrying", "parked"];
const PER_FAILING_STATE = 25;
const NEWEST = 50;
const STATES: readonly string[] = DELIVERY_STATES;
const REPLAY_STATES: readonly string[] = REPLAYABLE_STATES;

async function deliveriesToShow(db: D1Database, partnerId: string | undefined, state: string | undefined) {
  if (state !== undefined) return listDeliveries(db, { partner_id: partnerId, state }, NEWEST * 2, null);
  // Each failing state's newest, then the newest of all: a failing delivery is never pushed off the
  // page by newer ones that went well.
  const lists = await Promise.all([
    ...FAILING.map((s) => listDeliveries(db, { partner_id: partnerId, state: s }, PER_FAILING_STATE, null)),
    listDeliveries(db, { partner_id: partnerId }, NEWEST, null),
  ]);
  const byId = new Map<string, DeliveryRow>();
  for (const row of lists.flat()) byId.set(row.id, row);
  return [...byId.values()].sort(
    (a, b) =>
      (STATE_RANK[a.state] ?? 9) - (STATE_RANK[b.state] ?? 9) ||
      (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0),
  );
}

/** A partner key's own partner; anyone else's choice. */
function partnerFilter(page: PageContext, c: ConsoleContext): string | undefined {
  return page.principal.scope === "partner" ? (page.principal.subject_id ?? undefined) : param(c, "partner_id");
}

export function registerDeliveryPages(app: ConsoleApp): void {
  // The page's filter, every matching delivery (newest first, as the API's export of listDeliveries
  // writes them): a partner key held to its own partner, as on the page. Before /deliveries/:id.
  app.get("/deliveries/export", async (c) => {
    const page = pageOf(c);
    const partnerId = partnerFilter(page, c);
    if (!allows(page.principal, "listDeliveries", partnerId)) throw new NotAllowed("listDeliveries");
    const state = choiceParam(c, "state", DELIVERY_STATES);
    const format = formatParam(c);
    return exportAnswer(c, {
      name: "deliveries",
      format,
      columns: DELIVERY_COLUMNS,
      fetchPage: (after: [string, string] | null, limit) =>
        listDeliveries(c.env.DB, { partner_id: partnerId, state }, limit, after),
      keyOf: deliveryKey,
      toItem: toDelivery,
    });
  });

  app.get("/deliveries", async (c) => {
    const page = pageOf(c);
    const partnerId = partnerFilter(page, c);
    if (!allows(page.principal, "listDeliveries", partnerId)) throw new NotAllowed("listDeliveries");
    const state = choiceParam(c, "state", DELIVERY_STATES);
    const rows = await deliveriesToShow(c.env.DB, partnerId, state);
    const ownPartner = page.principal.scope === "partner";
    const canBulk = partnerId
      ? allows(page.principal, "replayPartnerDeliveries", partnerId)
      : allows(page.principal, "createReplay");
    return render(
      c,
      <Layout title="Deliveries" page={page}>
        <h1>Deliveries</h1>
        {ownPartner ? <p class="muted">Partner {partnerId}'s deliveries.</p> : null}
        <form method="get" action="/console/deliveries" class="search" aria-label="Filter deliveries">
          <div class="fields">
            {ownPartner ? null : (
              <label>
                <span>Partner</span>
                <input name="partner_id" value={partnerId ?? ""} autocomplete="off" />
              </label>
            )}
            <label>
              <span>State</span>
              <select name="state">
                <option value="">any (failing first)</option>
                {STATES.map((s) => (
                  <option value={s} selected={s === state}>
                    {s}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <button type="submit">Filter</button>
        </form>
        <DownloadLinks
          path="/console/deliveries/export"
          filters={{ partner_id: ownPartner ? undefined : partnerId, state }}
          note="Every delivery the filter selects, newest first, not only those shown."
        />
        <Table
          id="deliveries"
          caption={`Deliveries${state ? ` (${state})` : ", failing and dead first"}: ${rows.length} shown`}
        >
          <thead>
            <tr>
              <th scope="col">Delivery</th>
              <th scope="col">Partner</th>
              <th scope="col">State</th>
              <th scope="col">Conversion</th>
              <th scope="col">Attempts</th>
              <th scope="col">Last status</th>
              <th scope="col">Created</th>
              <th scope="col">
                <span class="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {rows.length === 0 ? (
              <tr>
                <td colspan={8}>No delivery matches.</td>
              </tr>
            ) : (
              rows.map((d) => (
                <tr data-delivery={d.id}>
                  <th scope="row">
                    <a href={`/console/deliveries/${encodeURIComponent(d.id)}`}>{d.id}</a>
                  </th>
                  <td>{d.partner_id}</td>
                  <td>
                    <StateBadge state={d.state} />
                  </td>
                  <td>
                    {allows(page.principal, "getConversion", d.network_id) ? (
                      <a
                        href={`/console/conversions/${encodeURIComponent(d.network_id)}/${encodeURIComponent(d.transaction_id)}`}
                      >
                        {d.transaction_id}
                      </a>
                    ) : (
                      d.transaction_id
                    )}
                  </td>
                  <td>{String(d.attempts)}</td>
                  <td>{d.last_status === null ? (d.last_error ?? "—") : String(d.last_status)}</td>
                  <td>
                    <Time iso={d.created_at} />
                  </td>
                  <td>
                    <ReplayButton delivery={d} page={page} />
                  </td>
                </tr>
              ))
            )}
          </tbody>
        </Table>
        {canBulk ? <BulkReplayForm page={page} partnerId={partnerId} ownPartner={ownPartner} /> : null}
      </Layout>,
    );
  });

  app.get("/deliveries/:delivery_id", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("delivery_id");
    const { delivery, attempts } = await getDelivery(c.env.DB, id);
    // Another partner's delivery and no delivery get the same answer for a partner key (as the API's).
    if (!allows(page.principal, "getDelivery", delivery?.partner_id)) throw new NotAllowed("getDelivery");
    if (!delivery) throw new NotFoundPage(deliveryNotFound(id).message);
    return render(
      c,
      <Layout title={`Delivery ${id}`} page={page}>
        <h1>
          Delivery <code>{id}</code>
        </h1>
        <dl class="facts">
          <dt>State</dt>
          <dd>
            <StateBadge state={delivery.state} />
          </dd>
          <dt>Partner</dt>
          <dd>
            {allows(page.principal, "getPartner", delivery.partner_id) ? (
              <a href={`/console/partners/${encodeURIComponent(delivery.partner_id)}`}>{delivery.partner_id}</a>
            ) : (
              delivery.partner_id
            )}
          </dd>
          <dt>Conversion</dt>
          <dd>
            {delivery.network_id} / {delivery.transaction_id}
          </dd>
          <dt>Event</dt>
          <dd>
            <code>{delivery.event_id}</code>
          </dd>
          <dt>Next attempt</dt>
          <dd>
            <Time iso={delivery.next_attempt_at} />
          </dd>
          <dt>Last error</dt>
          <dd>{delivery.last_error ?? "—"}</dd>
          <dt>Created</dt>
          <dd>
            <Time iso={delivery.created_at} />
          </dd>
          <dt>Delivered</dt>
          <dd>
            <Time iso={delivery.delivered_at} />
          </dd>
        </dl>
        <ReplayButton delivery={delivery} page={page} />
        <AttemptsTable id="attempts" attempts={attempts} caption="Every attempt" />
      </Layout>,
    );
  });

  app.post("/deliveries/:delivery_id/replay", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("delivery_id");
    const { delivery } = await getDelivery(c.env.DB, id);
    if (!allows(page.principal, "replayDelivery", delivery?.partner_id)) throw new NotAllowed("replayDelivery");
    return runAction(
      c,
      { operation: "replayDelivery", subject: delivery?.partner_id ?? null, target: { delivery_id: id } },
      async () => {
        const replayed = await replayOneDelivery({ db: c.env.DB, deliveries: c.env.DELIVERIES }, id);
        return (
          <Result
            title="Replay queued"
            page={page}
            back={`/console/deliveries/${encodeURIComponent(id)}`}
            backLabel="Back to the delivery"
          >
            <p>
              Delivery <code>{replayed.id}</code> is {replayed.state} again and will be sent with the same id.
            </p>
          </Result>
        );
      },
    );
  });

  app.post("/deliveries/replay", async (c) => {
    const page = pageOf(c);
    const form = await formOf(c);
    const partnerId =
      page.principal.scope === "partner" ? (page.principal.subject_id ?? undefined) : field(form, "partner_id");
    const asked = form.states;
    const states = (Array.isArray(asked) ? asked : asked === undefined ? [] : [asked]).filter(
      (s): s is (typeof REPLAYABLE_STATES)[number] => typeof s === "string" && REPLAY_STATES.includes(s),
    );
    const dryRun = field(form, "confirm") !== "yes";
    const chosen = states.length > 0 ? states : [...BULK_REPLAY_DEFAULT_STATES];
    const hidden = (
      <>
        {partnerId && page.principal.scope !== "partner" ? (
          <input type="hidden" name="partner_id" value={partnerId} />
        ) : null}
        {chosen.map((s) => (
          <input type="hidden" name="states" value={s} />
        ))}
      </>
    );
    const back = `/console/deliveries${partnerId ? `?partner_id=${encodeURIComponent(partnerId)}` : ""}`;
    if (partnerId) {
      return runAction(
        c,
        { operation: "replayPartnerDeliveries", subject: partnerId, target: { partner_id: partnerId } },
        async () => {
          const result = await replayPartnerDeliveries(c.env, partnerId, { states: chosen, dry_run: dryRun });
          return (
            <Result
              title={dryRun ? "Replay: dry run" : "Replayed"}
              page={page}
              back={back}
              backLabel="Back to the deliveries"
            >
              {dryRun ? (
                <>
                  <p id="replay-count" data-matched={String(result.matched)}>
                    {`${result.matched} deliveries of ${partnerId} in ${chosen.join(", ")} would be replayed.`}
                  </p>
                  {result.matched > 0 ? (
                    <ActionForm action="/console/deliveries/replay" csrf={page.csrf}>
                      {hidden}
                      <input type="hidden" name="confirm" value="yes" />
                      <button type="submit">{`Replay ${result.matched} deliveries`}</button>
                    </ActionForm>
                  ) : null}
                </>
              ) : (
                <p id="replay-count" data-replayed={String(result.replayed)}>
                  {`Replayed ${result.replayed} deliveries; ${result.remaining} left (replay again for the rest).`}
                </p>
              )}
            </Result>
          );
        },
      );
    }
    const filter: ReplayFilter = {
      partner_id: null,
      network_id: null,
      states: chosen,
      since: null,
      until: null,
      conversion_status: null,
    };
    return runAction(c, { operation: "createReplay", subject: null, target: {} }, async () => {
      const answer = await requestBulkReplay(c.env, filter, dryRun);
      return (
        <Result
          title={dryRun ? "Replay: dry run" : "Replay job started"}
          page={page}
          back={back}
          backLabel="Back to the deliveries"
        >
          {answer.dry_run ? (
            <>
              <p id="replay-count" data-matched={String(answer.total)}>
                {`${answer.total} deliveries in ${chosen.join(", ")}, of every active partner, would be replayed.`}
              </p>
              {answer.total > 0 ? (
                <ActionForm action="/console/deliveries/replay" csrf={page.csrf}>
                  {hidden}
                  <input type="hidden" name="confirm" value="yes" />
                  <button type="submit">{`Replay ${answer.total} deliveries`}</button>
                </ActionForm>
              ) : null}
            </>
          ) : (
            <p id="replay-count" data-job={answer.job.id}>
              {`Job ${answer.job.id} replays ${answer.job.total} deliveries in the background, oldest first.`}
            </p>
          )}
        </Result>
      );
    });
  });
}

const BulkReplayForm = (props: { page: PageContext; partnerId: string | undefined; ownPartner: boolean }) => (
  <section aria-labelledby="bulk-h" class="card">
    <h2 id="bulk-h">Replay a set</h2>
    <p class="muted">Counts first (a dry run); nothing is sent until you confirm.</p>
    <ActionForm action="/console/deliveries/replay" csrf={props.page.csrf} class="search">
      <div class="fields">
        {props.ownPartner ? null : (
          <label>
            <span>Partner (empty: every active partner)</span>
            <input name="partner_id" value={props.partnerId ?? ""} autocomplete="off" />
          </label>
        )}
        <fieldset>
          <legend>States</legend>
          {REPLAY_STATES.map((s) => (
            <label class="check">
              <input type="checkbox" name="states" value={s} checked={s === "failed" || s === "dead"} />
              <span>{s}</span>
            </label>
          ))}
        </fieldset>
      </div>
      <button type="submit">Count deliveries to replay</button>
    </ActionForm>
  </section>
);
