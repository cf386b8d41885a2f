/**
 * The inbound log, per network: the requests the hub refused and why (the API's
 * listInboundRequests query with `rejected`), or every request when asked. A network key sees its own.
 */
import { listNetworks } from "../../storage/networks";
import { listInboundRequests } from "../../storage/requests";
import { type ConsoleApp, NotAllowed, pageOf, param, render } from "../context";
import { Layout, StateBadge, Table, Time } from "../layout";
import { allows } from "../scopes";

const PAGE_SIZE = 100;

export function registerInboundPages(app: ConsoleApp): void {
  app.get("/inbound", async (c) => {
    const page = pageOf(c);
    const own = page.principal.scope === "network" ? page.principal.subject_id : null;
    const networkId = own ?? param(c, "network_id");
    const all = c.req.query("all") === "1";
    // Without a network the page offers the list of networks to pick from (listNetworks).
    if (networkId === undefined) {
      if (!allows(page.principal, "listNetworks")) throw new NotAllowed("listInboundRequests");
    } else if (!allows(page.principal, "listInboundRequests", networkId)) {
      throw new NotAllowed("listInboundRequests");
    }
    const networks =
      own === null && allows(page.principal, "listNetworks") ? await listNetworks(c.env.DB, 200, null) : [];
    const rows =
      networkId === undefined
        ? []
        : await listInboundRequests(
            c.env.DB,
            { network_id: networkId, rejected: all ? undefined : true },
            PAGE_SIZE,
            null,
          );
    return render(
      c,
      <Layout title="Inbound log" page={page}>
        <h1>Inbound log</h1>
        <form method="get" action="/console/inbound" class="search" aria-label="Choose a network">
          <div class="fields">
            {own === null ? (
              <label>
                <span>Network</span>
                <select name="network_id">
                  <option value="">choose…</option>
                  {networks.map((n) => (
                    <option value={n.id} selected={n.id === networkId}>
                      {n.id}
                    </option>
                  ))}
                </select>
              </label>
            ) : (
              <input type="hidden" name="network_id" value={own} />
            )}
            <label class="check">
              <input type="checkbox" name="all" value="1" checked={all} />
              <span>Every request, not only the rejected</span>
            </label>
          </div>
          <button type="submit">Show</button>
        </form>
        {networkId === undefined ? (
          <p>Choose a network.</p>
        ) : (
          <Table
            id="inbound"
            caption={`${all ? "Requests" : "Rejected requests"} of ${networkId}, newest first (${rows.length} shown)`}
          >
            <thead>
              <tr>
                <th scope="col">Received</th>
                <th scope="col">Verdict</th>
                <th scope="col">Status</th>
                <th scope="col">Why</th>
                <th scope="col">Route</th>
                <th scope="col">Credential</th>
                <th scope="col">Transaction</th>
                <th scope="col">Request id</th>
              </tr>
            </thead>
            <tbody>
              {rows.length === 0 ? (
                <tr>
                  <td colspan={8}>Nothing logged.</td>
                </tr>
              ) : (
                rows.map((r) => (
                  <tr data-request={r.request_id}>
                    <td>
                      <Time iso={r.received_at} />
                    </td>
                    <td>
                      <StateBadge state={r.verdict} />
                    </td>
                    <td>{String(r.status)}</td>
                    <td class="excerpt">
                      {(JSON.parse(r.errors) as { location: string; message: string }[])
                        .map((e) => `${e.location} ${e.message}`)
                        .join("; ")}
                    </td>
                    <td>{`${r.method} ${r.route}`}</td>
                    <td>{r.auth_method ?? "—"}</td>
                    <td>{r.transaction_id ?? "—"}</td>
                    <td>
                      <code>{r.request_id}</code>
                    </td>
                  </tr>
                ))
              )}
            </tbody>
          </Table>
        )}
      </Layout>,
    );
  });
}
