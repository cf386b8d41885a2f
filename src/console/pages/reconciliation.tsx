/**
 * Reconciliation in the console (docs/reconciliation.md): upload the other side's report, watch the
 * diff, tick the differences to settle, dry-run, apply. Every page and button mirrors its API
 * operation and runs the same functions (reports/reconciliations.ts), so what the console allows,
 * records and refuses is what the API would.
 */
import type { FC } from "hono/jsx";
import { CONVERSION_STATUSES } from "../../domain/postback";
import {
  CORRECTABLE_CLASSES,
  CORRECTION_OUTCOMES,
  DIFFERENCE_CLASSES,
  type DifferenceClass,
  MAX_CORRECTIONS_PER_REQUEST,
  REPORT_FIELDS,
  REQUIRED_REPORT_FIELDS,
  type SideTotals,
} from "../../domain/reconciliation";
import { ProblemError, validationFailed } from "../../errors";
import { REPORT_DELIMITER_NAMES, REPORT_DELIMITERS, reportMapping } from "../../reports/reconciliation-upload";
import { applyCorrections, type CorrectionResult, requestReconciliation } from "../../reports/reconciliations";
import { listNetworks } from "../../storage/networks";
import {
  getReconciliation,
  listDifferences,
  listReconciliations,
  type ReconciliationRow,
  type StoredDifference,
  totalsOf,
} from "../../storage/reconciliations";
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
import { Result, runAction } from "../feedback";
import { ActionForm, Layout, StateBadge, Table, Time } from "../layout";
import { allows, type ConsoleOperation } from "../scopes";

const BASE = "/console/reports/reconciliations";
const DIFFERENCES_PER_PAGE = 100;

function require(c: ConsoleContext, operation: ConsoleOperation) {
  const page = pageOf(c);
  if (!allows(page.principal, operation)) throw new NotAllowed(operation);
  return page;
}

const money = (sums: Record<string, string>) => {
  const entries = Object.entries(sums).sort(([a], [b]) => (a < b ? -1 : 1));
  return entries.length === 0 ? "0" : entries.map(([currency, amount]) => `${amount} ${currency}`).join(" · ");
};

const sideMoney = (side: { amount: string | null; currency: string | null } | null) =>
  side === null ? "—" : side.amount === null ? "(none)" : `${side.amount} ${side.currency ?? ""}`;

const Totals: FC<{ report: SideTotals; hub: SideTotals }> = ({ report, hub }) => (
  <Table id="totals" caption="Totals per currency, exact, on both sides">
    <thead>
      <tr>
        <th scope="col">Side</th>
        <th scope="col">Conversions</th>
        <th scope="col">Amount</th>
        <th scope="col">Payout</th>
      </tr>
    </thead>
    <tbody>
      <tr>
        <th scope="row">Report</th>
        <td>{String(report.conversions)}</td>
        <td>{money(report.amount)}</td>
        <td>{money(report.payout)}</td>
      </tr>
      <tr>
        <th scope="row">Hub</th>
        <td>{String(hub.conversions)}</td>
        <td>{money(hub.amount)}</td>
        <td>{money(hub.payout)}</td>
      </tr>
    </tbody>
  </Table>
);

const UploadForm: FC<{ csrf: string; networks: string[] }> = ({ csrf, networks }) => (
  <ActionForm action={BASE} csrf={csrf} class="search" enctype="multipart/form-data">
    <div class="fields">
      <label>
        <span>Network</span>
        <select name="network_id" required>
          {networks.map((id) => (
            <option value={id}>{id}</option>
          ))}
        </select>
      </label>
      <label>
        <span>From (first seen, UTC)</span>
        <input type="date" name="since" required />
      </label>
      <label>
        <span>Until (excluded)</span>
        <input type="date" name="until" required />
      </label>
      <label>
        <span>Partner (a partner's report)</span>
        <input name="partner_id" placeholder="ptn_…" />
      </label>
      <label>
        <span>Report (CSV, UTF-8)</span>
        <input type="file" name="report" accept=".csv,text/csv" required />
      </label>
      <label>
        <span>Delimiter</span>
        <select name="delimiter">
          {REPORT_DELIMITER_NAMES.map((name) => (
            <option value={name}>{name}</option>
          ))}
        </select>
      </label>
    </div>
    <details>
      <summary>The report's column names and status words</summary>
      <div class="fields">
        {REPORT_FIELDS.map((name) => (
          <label>
            <span>
              Column for {name}
              {(REQUIRED_REPORT_FIELDS as readonly string[]).includes(name) ? "" : " (optional)"}
            </span>
            <input name={`${name}_column`} placeholder={name} />
          </label>
        ))}
        {CONVERSION_STATUSES.map((status) => (
          <label>
            <span>Words for {status}</span>
            <input name={`${status}_values`} placeholder={status === "declined" ? "Rejected, Cancelled" : status} />
          </label>
        ))}
      </div>
    </details>
    <button type="submit">Upload and reconcile</button>
  </ActionForm>
);

/** A date input's value as the period's boundary (UTC midnight), or a 422 naming the field. */
function dayField(form: Record<string, unknown>, name: string): string {
  const value = field(form, name);
  const ms =
    value !== undefined && /^\d{4}-\d{2}-\d{2}$/.test(value) ? Date.parse(`${value}T00:00:00.000Z`) : Number.NaN;
  if (Number.isNaN(ms)) throw validationFailed([{ location: `body.${name}`, message: "must be a day as YYYY-MM-DD" }]);
  return new Date(ms).toISOString();
}

const stateText = (row: ReconciliationRow) =>
  row.state === "finished"
    ? "finished"
    : `${row.state}: ${row.report_rows_done} of ${row.report_rows} report rows compared, ${row.hub_conversions_done} hub conversions walked`;

export function registerReconciliationPages(app: ConsoleApp): void {
  app.get("/reports/reconciliations", async (c) => {
    const page = require(c, "listReconciliations");
    const canUpload = allows(page.principal, "createReconciliation");
    const [rows, networks] = await Promise.all([
      listReconciliations(c.env.DB, undefined, 50, null),
      canUpload ? listNetworks(c.env.DB, 500, null) : Promise.resolve([]),
    ]);
    return render(
      c,
      <Layout title="Reconciliation" page={page}>
        <h1>Reconciliation</h1>
        <p>
          Compare an advertiser's or a partner's report with the hub's conversions of one network and period, then
          settle the differences you agree with. The API does the same: <code>POST /v1/reconciliations</code>.
        </p>
        {canUpload ? (
          <section aria-labelledby="upload-h">
            <h2 id="upload-h">Upload a report</h2>
            <UploadForm csrf={page.csrf} networks={networks.map((network) => network.id)} />
          </section>
        ) : null}
        <section aria-labelledby="recent-h">
          <h2 id="recent-h">Recent reconciliations</h2>
          <Table id="reconciliations" caption="Newest first">
            <thead>
              <tr>
                <th scope="col">Reconciliation</th>
                <th scope="col">Network</th>
                <th scope="col">Period</th>
                <th scope="col">State</th>
                <th scope="col">Report rows</th>
                <th scope="col">Uploaded</th>
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr>
                  <th scope="row">
                    <a href={`${BASE}/${encodeURIComponent(row.id)}`}>{row.id}</a>
                  </th>
                  <td>{row.network_id}</td>
                  <td>{`${row.since.slice(0, 10)} – ${row.until.slice(0, 10)}`}</td>
                  <td>
                    <StateBadge state={row.state} />
                  </td>
                  <td>{String(row.report_rows)}</td>
                  <td>
                    <Time iso={row.created_at} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </section>
      </Layout>,
    );
  });

  app.post("/reports/reconciliations", async (c) => {
    const page = require(c, "createReconciliation");
    const form = await formOf(c);
    return runAction(c, { operation: "createReconciliation", subject: null, target: {} }, async () => {
      const report = form.report;
      if (!(report instanceof File) || report.size === 0) {
        throw validationFailed([{ location: "body.report", message: "choose the report's CSV file" }]);
      }
      const networkId = field(form, "network_id");
      if (networkId === undefined)
        throw validationFailed([{ location: "body.network_id", message: "choose a network" }]);
      const since = dayField(form, "since");
      const until = dayField(form, "until");
      if (until <= since) throw validationFailed([{ location: "body.until", message: "must be after since" }]);
      const delimiter = field(form, "delimiter") ?? "comma";
      if (!(REPORT_DELIMITER_NAMES as readonly string[]).includes(delimiter)) {
        throw validationFailed([
          { location: "body.delimiter", message: `must be ${REPORT_DELIMITER_NAMES.join(", ")}` },
        ]);
      }
      const row = await requestReconciliation(
        { db: c.env.DB, runners: c.env.RECONCILIATION_JOBS },
        {
          network_id: networkId,
          partner_id: field(form, "partner_id") ?? null,
          since,
          until,
          mapping: reportMapping((name) => field(form, name), "body"),
          delimiter: REPORT_DELIMITERS[delimiter as keyof typeof REPORT_DELIMITERS],
        },
        report.stream(),
        page.principal,
      );
      return (
        <Result
          title="Report uploaded"
          page={page}
          back={`${BASE}/${encodeURIComponent(row.id)}`}
          backLabel="See the diff"
        >
          <p>
            {`${row.report_rows} rows read and checked. The hub is comparing them with network ${row.network_id}'s conversions in the background: `}
            <code>{row.id}</code>.
          </p>
        </Result>
      );
    });
  });

  app.get("/reports/reconciliations/:id", async (c) => {
    const page = require(c, "getReconciliation");
    const id = c.req.param("id");
    const row = await getReconciliation(c.env.DB, id);
    if (!row || row.state === "uploading") throw new NotFoundPage(`No reconciliation "${id}".`);
    const differenceClass = choiceParam(c, "class", DIFFERENCE_CLASSES);
    const after = param(c, "after") ?? null;
    const canList = allows(page.principal, "listReconciliationDifferences");
    const differences = canList
      ? await listDifferences(c.env.DB, id, differenceClass, after, DIFFERENCES_PER_PAGE + 1)
      : [];
    const more = differences.length > DIFFERENCES_PER_PAGE;
    const shown = differences.slice(0, DIFFERENCES_PER_PAGE);
    const counts =
      row.difference_counts === null ? null : (JSON.parse(row.difference_counts) as Record<string, number>);
    const totals = totalsOf(row);
    const canCorrect = allows(page.principal, "applyReconciliationCorrections") && row.state === "finished";
    const classLink = (name: DifferenceClass | undefined) =>
      `${BASE}/${encodeURIComponent(id)}${name ? `?class=${name}` : ""}`;
    const last = shown[shown.length - 1];
    return render(
      c,
      <Layout title={`Reconciliation ${id}`} page={page}>
        <h1>Reconciliation</h1>
        <p>
          <code>{id}</code>
          {` · network ${row.network_id}${row.partner_id ? ` · partner ${row.partner_id}` : ""} · first seen ${row.since.slice(0, 10)} to ${row.until.slice(0, 10)} (UTC)`}
        </p>
        <p role="status">
          <StateBadge state={row.state} /> {stateText(row)}
          {row.error ? ` · ${row.error}` : ""}
          {row.state === "finished" ? null : (
            <>
              {" · "}
              <a href={`${BASE}/${encodeURIComponent(id)}`}>Refresh</a>
            </>
          )}
        </p>
        <Totals report={totals.report} hub={totals.hub} />
        {counts ? (
          <nav aria-label="Differences by class" class="pills">
            <a href={classLink(undefined)} aria-current={differenceClass === undefined ? "page" : undefined}>
              {`all (${Object.values(counts).reduce((a, b) => a + b, 0)})`}
            </a>
            {DIFFERENCE_CLASSES.map((name) => (
              <a href={classLink(name)} aria-current={differenceClass === name ? "page" : undefined}>
                {`${name} (${counts[name] ?? 0})`}
              </a>
            ))}
          </nav>
        ) : null}
        {canList && row.state === "finished" ? (
          <section aria-labelledby="differences-h">
            <h2 id="differences-h">Differences{differenceClass ? `: ${differenceClass}` : ""}</h2>
            <DifferencesForm id={id} csrf={page.csrf} differences={shown} canCorrect={canCorrect} />
            {more && last ? (
              <p>
                <a
                  href={`${classLink(differenceClass)}${differenceClass ? "&" : "?"}after=${encodeURIComponent(last.id)}`}
                >
                  Next {DIFFERENCES_PER_PAGE}
                </a>
              </p>
            ) : null}
          </section>
        ) : null}
        <p>
          <a href={BASE}>All reconciliations</a>
        </p>
      </Layout>,
    );
  });

  app.post("/reports/reconciliations/:id/corrections", async (c) => {
    const page = require(c, "applyReconciliationCorrections");
    const id = c.req.param("id");
    const form = await formOf(c);
    const asked = form.difference_ids;
    const ids = (Array.isArray(asked) ? asked : asked === undefined ? [] : [asked]).filter(
      (value): value is string => typeof value === "string",
    );
    const dryRun = field(form, "confirm") !== "yes";
    return runAction(
      c,
      { operation: "applyReconciliationCorrections", subject: null, target: { reconciliation_id: id } },
      async () => {
        if (ids.length === 0)
          throw validationFailed([{ location: "body.difference_ids", message: "tick at least one difference" }]);
        if (ids.length > MAX_CORRECTIONS_PER_REQUEST) {
          throw new ProblemError("validation_failed", `At most ${MAX_CORRECTIONS_PER_REQUEST} corrections at a time.`, [
            { location: "body.difference_ids", message: `must be at most ${MAX_CORRECTIONS_PER_REQUEST}` },
          ]);
        }
        const results = await applyCorrections(
          { db: c.env.DB, conversions: c.env.CONVERSIONS },
          id,
          ids,
          dryRun,
          page.principal,
        );
        const summary = CORRECTION_OUTCOMES.map(
          (outcome) => `${results.filter((result) => result.outcome === outcome).length} ${outcome.replace("_", " ")}`,
        ).join(", ");
        return (
          <Result
            title={dryRun ? "Corrections: dry run" : "Corrections applied"}
            page={page}
            back={`${BASE}/${encodeURIComponent(id)}`}
            backLabel="Back to the reconciliation"
          >
            <p>
              {dryRun ? "Nothing was recorded. Would be: " : ""}
              {summary}.
            </p>
            <Outcomes results={results} />
            {dryRun && results.some((result) => result.outcome === "applied") ? (
              <ActionForm action={`${BASE}/${encodeURIComponent(id)}/corrections`} csrf={page.csrf}>
                {results
                  .filter((result) => result.outcome === "applied")
                  .map((result) => (
                    <input type="hidden" name="difference_ids" value={result.difference_id} />
                  ))}
                <input type="hidden" name="confirm" value="yes" />
                <button type="submit">Apply these</button>
              </ActionForm>
            ) : null}
          </Result>
        );
      },
    );
  });
}

const DifferencesForm: FC<{ id: string; csrf: string; differences: StoredDifference[]; canCorrect: boolean }> = (
  props,
) => {
  const table = (
    <Table id="differences" caption="Each difference, both sides as compared">
      <thead>
        <tr>
          {props.canCorrect ? <th scope="col">Settle</th> : null}
          <th scope="col">Transaction</th>
          <th scope="col">Class</th>
          <th scope="col">Line</th>
          <th scope="col">Hub</th>
          <th scope="col">Report</th>
          <th scope="col">Corrected</th>
        </tr>
      </thead>
      <tbody>
        {props.differences.map((difference) => {
          const open =
            difference.correction === null && (CORRECTABLE_CLASSES as readonly string[]).includes(difference.class);
          return (
            <tr>
              {props.canCorrect ? (
                <td>
                  {open ? (
                    <input
                      type="checkbox"
                      name="difference_ids"
                      value={difference.id}
                      aria-label={`Settle ${difference.class} of ${difference.transaction_id}`}
                    />
                  ) : null}
                </td>
              ) : null}
              <th scope="row">{difference.transaction_id}</th>
              <td>{difference.class}</td>
              <td>{difference.line === null ? "—" : String(difference.line)}</td>
              <td>{difference.hub ? `${difference.hub.status} · ${sideMoney(difference.hub)}` : "(none)"}</td>
              <td>{difference.report ? `${difference.report.status} · ${sideMoney(difference.report)}` : "(none)"}</td>
              <td>
                {difference.correction
                  ? `${difference.correction.outcome} ${difference.correction.applied_at.slice(0, 19)}Z`
                  : "—"}
              </td>
            </tr>
          );
        })}
      </tbody>
    </Table>
  );
  if (!props.canCorrect) return table;
  return (
    <ActionForm action={`${BASE}/${encodeURIComponent(props.id)}/corrections`} csrf={props.csrf} class="stack">
      {table}
      <p>
        <button type="submit" name="confirm" value="no">
          Dry run the ticked
        </button>{" "}
        <button type="submit" name="confirm" value="yes">
          Apply the ticked
        </button>
      </p>
    </ActionForm>
  );
};

const Outcomes: FC<{ results: CorrectionResult[] }> = ({ results }) => (
  <Table id="outcomes" caption="What each correction did">
    <thead>
      <tr>
        <th scope="col">Transaction</th>
        <th scope="col">Class</th>
        <th scope="col">Outcome</th>
        <th scope="col">Event</th>
        <th scope="col">Why</th>
      </tr>
    </thead>
    <tbody>
      {results.map((result) => (
        <tr>
          <th scope="row">{result.transaction_id}</th>
          <td>{result.class}</td>
          <td>
            <StateBadge state={result.outcome} />
          </td>
          <td>
            {result.event
              ? `${result.event.status}${result.event.amount ? ` · ${result.event.amount} ${result.event.currency ?? ""}` : ""}`
              : "—"}
          </td>
          <td>{result.reason ?? ""}</td>
        </tr>
      ))}
    </tbody>
  </Table>
);
