/**
 * Partners: the list, and a partner's page with its status, pace and breaker (as GET
 * /v1/partners/{id} shows them, from its coordinator), its signing secrets, disable and enable,
 * rotation (admin keys only; the new secret is shown once) and a preview of its request.
 */
import {
  disablePartnerNow,
  enablePartnerNow,
  partnerCoordinationOf,
  partnerNotFound,
  partnerView,
  previewPartner,
  rotatePartnerSigningSecret,
} from "../../operations/partners";
import { activePartnerSecrets, getPartner, listPartners } from "../../storage/partners";
import { type ConsoleApp, NotAllowed, NotFoundPage, pageOf, render } from "../context";
import { Result, runAction } from "../feedback";
import { ActionForm, Layout, StateBadge, Table, Time } from "../layout";
import { allows } from "../scopes";

const LIST_SIZE = 200;

export function registerPartnerPages(app: ConsoleApp): void {
  app.get("/partners", async (c) => {
    const page = pageOf(c);
    if (!allows(page.principal, "listPartners")) throw new NotAllowed("listPartners");
    const partners = (await listPartners(c.env.DB, LIST_SIZE, null)).map(partnerView);
    return render(
      c,
      <Layout title="Partners" page={page}>
        <h1>Partners</h1>
        <Table id="partners" caption={`Partners by id (${partners.length})`}>
          <thead>
            <tr>
              <th scope="col">Partner</th>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Routing</th>
              <th scope="col">Deliveries</th>
            </tr>
          </thead>
          <tbody>
            {partners.map((p) => (
              <tr>
                <th scope="row">
                  <a href={`/console/partners/${encodeURIComponent(p.id)}`}>{p.id}</a>
                </th>
                <td>{p.name}</td>
                <td>
                  <StateBadge state={p.status} />
                  {p.disabled_reason ? ` (${p.disabled_reason})` : p.paused_reason ? ` (${p.paused_reason})` : ""}
                </td>
                <td>{p.routing}</td>
                <td>
                  <a href={`/console/deliveries?partner_id=${encodeURIComponent(p.id)}`}>deliveries</a>
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      </Layout>,
    );
  });

  app.get("/partners/:partner_id", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("partner_id");
    if (!allows(page.principal, "getPartner", id)) throw new NotAllowed("getPartner");
    const stored = await getPartner(c.env.DB, id);
    if (!stored) throw new NotFoundPage(partnerNotFound(id).message);
    const partner = partnerView(stored);
    const [coordination, secrets] = await Promise.all([
      partnerCoordinationOf(c.env, id),
      activePartnerSecrets(c.env.DB, id, new Date().toISOString()),
    ]);
    const action = stored.status === "active" ? "disable" : "enable";
    const operation = action === "disable" ? "disablePartner" : "enablePartner";
    return render(
      c,
      <Layout title={`Partner ${id}`} page={page}>
        <h1>
          Partner <code>{id}</code>
        </h1>
        <dl class="facts">
          <dt>Name</dt>
          <dd>{partner.name}</dd>
          <dt>Status</dt>
          <dd>
            <StateBadge state={partner.status} />
            {partner.disabled_reason ? ` (${partner.disabled_reason})` : ""}
          </dd>
          <dt>Request</dt>
          <dd class="excerpt">
            {partner.method} {partner.url_template}
          </dd>
          <dt>Signed</dt>
          <dd>{partner.sign ? "yes (Standard Webhooks)" : "no"}</dd>
          <dt>Timeout</dt>
          <dd>{`${partner.timeout_ms} ms`}</dd>
          <dt>Retry schedule</dt>
          <dd>{partner.retry_schedule_seconds.map((s) => `${s} s`).join(", ")}</dd>
        </dl>
        <section aria-labelledby="pace-h" id="pace">
          <h2 id="pace-h">Pace and breaker</h2>
          {coordination.pace && coordination.health ? (
            <dl class="facts">
              <dt>Breaker</dt>
              <dd data-breaker={coordination.health.breaker}>
                <StateBadge state={coordination.health.breaker} />
                {coordination.health.reason ? ` ${coordination.health.reason}` : ""}
              </dd>
              <dt>Next probe</dt>
              <dd>
                <Time iso={coordination.health.probe_at} />
              </dd>
              <dt>Waiting</dt>
              <dd>{String(coordination.health.waiting)}</dd>
              <dt>In flight (limit now / max)</dt>
              <dd>{`${coordination.pace.in_flight_limit} / ${coordination.pace.max_in_flight}`}</dd>
              <dt>Per second (max)</dt>
              <dd>{coordination.pace.max_per_second === null ? "no cap" : String(coordination.pace.max_per_second)}</dd>
              <dt>Paused until</dt>
              <dd>
                <Time iso={coordination.pace.paused_until} />
              </dd>
            </dl>
          ) : (
            <p>The partner's coordinator cannot be asked right now.</p>
          )}
          {coordination.health && coordination.health.transitions.length > 0 ? (
            <Table caption="Breaker transitions, newest first">
              <thead>
                <tr>
                  <th scope="col">At</th>
                  <th scope="col">From</th>
                  <th scope="col">To</th>
                  <th scope="col">Why</th>
                </tr>
              </thead>
              <tbody>
                {coordination.health.transitions.map((t) => (
                  <tr>
                    <td>
                      <Time iso={t.at} />
                    </td>
                    <td>{t.from}</td>
                    <td>{t.to}</td>
                    <td>{t.reason ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </Table>
          ) : null}
        </section>
        {partner.sign ? (
          <Table id="credentials" caption="Signing secrets in use">
            <thead>
              <tr>
                <th scope="col">Secret</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
              </tr>
            </thead>
            <tbody>
              {secrets.map((s) => (
                <tr>
                  <th scope="row">
                    <code>{s.id}</code>
                  </th>
                  <td>
                    <Time iso={s.created_at} />
                  </td>
                  <td>{s.expires_at === null ? "current" : <Time iso={s.expires_at} />}</td>
                </tr>
              ))}
            </tbody>
          </Table>
        ) : null}
        <div class="actions">
          {allows(page.principal, "listDeliveries", id) ? (
            <a class="button" href={`/console/deliveries?partner_id=${encodeURIComponent(id)}`}>
              Deliveries
            </a>
          ) : null}
          {allows(page.principal, operation, id) ? (
            <ActionForm action={`/console/partners/${encodeURIComponent(id)}/${action}`} csrf={page.csrf}>
              <button type="submit" class={action === "disable" ? "danger" : undefined}>
                {action === "disable" ? "Disable partner" : "Enable partner"}
              </button>
            </ActionForm>
          ) : null}
          {allows(page.principal, "rotatePartnerSecret", id) && partner.sign ? (
            <ActionForm action={`/console/partners/${encodeURIComponent(id)}/rotate-secret`} csrf={page.csrf}>
              <button type="submit">Rotate signing secret</button>
            </ActionForm>
          ) : null}
          {allows(page.principal, "previewPartnerRequest", id) ? (
            <ActionForm action={`/console/partners/${encodeURIComponent(id)}/preview`} csrf={page.csrf}>
              <button type="submit">Preview its request</button>
            </ActionForm>
          ) : null}
        </div>
      </Layout>,
    );
  });

  for (const action of ["disable", "enable"] as const) {
    app.post(`/partners/:partner_id/${action}`, async (c) => {
      const page = pageOf(c);
      const id = c.req.param("partner_id");
      const operation = action === "disable" ? "disablePartner" : "enablePartner";
      return runAction(c, { operation, subject: id, target: { partner_id: id } }, async () => {
        const note =
          action === "disable"
            ? `Partner ${(await disablePartnerNow(c.env, id)).id} is disabled; its unfinished deliveries are parked.`
            : `Partner ${id} is active again; ${(await enablePartnerNow(c.env, id)).resumed} parked deliveries resumed.`;
        return (
          <Result
            title={`Partner ${action}d`}
            page={page}
            back={`/console/partners/${encodeURIComponent(id)}`}
            backLabel="Back to the partner"
          >
            <p>{note}</p>
          </Result>
        );
      });
    });
  }

  app.post("/partners/:partner_id/rotate-secret", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("partner_id");
    return runAction(c, { operation: "rotatePartnerSecret", subject: id, target: { partner_id: id } }, async () => {
      const rotated = await rotatePartnerSigningSecret(c.env, id, undefined);
      return (
        <Result
          title="New signing secret"
          page={page}
          back={`/console/partners/${encodeURIComponent(id)}`}
          backLabel="Back to the partner"
        >
          <p>
            The new signing secret of <code>{id}</code>, shown <strong>this once</strong>; copy it now:
          </p>
          <p>
            <label for="new-credential">New signing secret</label>
            <input id="new-credential" class="secret" readonly value={rotated.signing_secret} />
          </p>
          <p>
            Requests carry a signature by the previous ones too until <Time iso={rotated.previous_secrets_expire_at} />.
          </p>
        </Result>
      );
    });
  });

  app.post("/partners/:partner_id/preview", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("partner_id");
    return runAction(c, { operation: "previewPartnerRequest", subject: id, target: { partner_id: id } }, async () => {
      const preview = await previewPartner(c.env, id);
      return (
        <Result
          title="Request preview"
          page={page}
          back={`/console/partners/${encodeURIComponent(id)}`}
          backLabel="Back to the partner"
        >
          <p>What {id} would receive for a sample conversion (nothing was sent):</p>
          <pre id="preview" class="excerpt" tabindex={0}>
            {`${preview.method} ${preview.url}\n${Object.entries(preview.headers)
              .map(([k, v]) => `${k}: ${v}`)
              .join("\n")}${preview.body === null ? "" : `\n\n${preview.body}`}`}
          </pre>
          {preview.warnings.length > 0 ? (
            <ul>
              {preview.warnings.map((w) => (
                <li>{`${w.location}: ${w.message}`}</li>
              ))}
            </ul>
          ) : null}
        </Result>
      );
    });
  });
}
