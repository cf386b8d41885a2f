/**
 * Networks: the list, and a network's page with its status, its credentials and when each was last
 * used (who still signs with an old secret), disable and enable, and rotation (admin keys only; the
 * new value is shown once, on the result page).
 */
import type { CredentialKind } from "../../domain/network";
import { networkNotFound, rotateNetworkCredential, setNetworkStatusNow } from "../../operations/networks";
import { getNetwork, listNetworks, listSecretMetadata } from "../../storage/networks";
import { type ConsoleApp, NotAllowed, NotFoundPage, pageOf, render } from "../context";
import { Result, runAction } from "../feedback";
import { ActionForm, Layout, StateBadge, Table, Time } from "../layout";
import { allows } from "../scopes";

const LIST_SIZE = 200;

export function registerNetworkPages(app: ConsoleApp): void {
  app.get("/networks", async (c) => {
    const page = pageOf(c);
    if (!allows(page.principal, "listNetworks")) throw new NotAllowed("listNetworks");
    const networks = await listNetworks(c.env.DB, LIST_SIZE, null);
    return render(
      c,
      <Layout title="Networks" page={page}>
        <h1>Networks</h1>
        <Table id="networks" caption={`Networks by id (${networks.length})`}>
          <thead>
            <tr>
              <th scope="col">Network</th>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Authentication</th>
              <th scope="col">Inbound log</th>
            </tr>
          </thead>
          <tbody>
            {networks.map((n) => (
              <tr>
                <th scope="row">
                  <a href={`/console/networks/${encodeURIComponent(n.id)}`}>{n.id}</a>
                </th>
                <td>{n.name}</td>
                <td>
                  <StateBadge state={n.status} />
                </td>
                <td>{n.auth.methods.join(", ")}</td>
                <td>
                  <a href={`/console/inbound?network_id=${encodeURIComponent(n.id)}`}>rejections</a>
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
      </Layout>,
    );
  });

  app.get("/networks/:network_id", async (c) => {
    const page = pageOf(c);
    const id = c.req.param("network_id");
    if (!allows(page.principal, "getNetwork", id)) throw new NotAllowed("getNetwork");
    const network = await getNetwork(c.env.DB, id);
    if (!network) throw new NotFoundPage(networkNotFound(id).message);
    const secrets = await listSecretMetadata(c.env.DB, id, new Date().toISOString());
    const action = network.status === "active" ? "disable" : "enable";
    const operation = action === "disable" ? "disableNetwork" : "enableNetwork";
    return render(
      c,
      <Layout title={`Network ${id}`} page={page}>
        <h1>
          Network <code>{id}</code>
        </h1>
        <dl class="facts">
          <dt>Name</dt>
          <dd>{network.name}</dd>
          <dt>Status</dt>
          <dd>
            <StateBadge state={network.status} />
          </dd>
          <dt>Authentication</dt>
          <dd>{network.auth.methods.join(", ")}</dd>
          <dt>IP allowlist</dt>
          <dd>{network.auth.ip_allowlist.length === 0 ? "any address" : network.auth.ip_allowlist.join(", ")}</dd>
          <dt>Test mode</dt>
          <dd>{network.test_mode ? "on" : "off"}</dd>
        </dl>
        <div class="actions">
          {allows(page.principal, operation, id) ? (
            <ActionForm action={`/console/networks/${encodeURIComponent(id)}/${action}`} csrf={page.csrf}>
              <button type="submit" class={action === "disable" ? "danger" : undefined}>
                {action === "disable" ? "Disable network" : "Enable network"}
              </button>
            </ActionForm>
          ) : null}
          {allows(page.principal, "rotateNetworkSecret", id) ? (
            <ActionForm action={`/console/networks/${encodeURIComponent(id)}/rotate-secret`} csrf={page.csrf}>
              <button type="submit">Rotate signing secret</button>
            </ActionForm>
          ) : null}
          {allows(page.principal, "rotateNetworkToken", id) && network.auth.methods.includes("token") ? (
            <ActionForm action={`/console/networks/${encodeURIComponent(id)}/rotate-token`} csrf={page.csrf}>
              <button type="submit">Rotate token</button>
            </ActionForm>
          ) : null}
        </div>
        <Table id="credentials" caption="Credentials: which are live, and when each was last used">
          <thead>
            <tr>
              <th scope="col">Credential</th>
              <th scope="col">Kind</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
            </tr>
          </thead>
          <tbody>
            {secrets.map((s) => (
              <tr>
                <th scope="row">
                  <code>{s.id}</code>
                </th>
                <td>{s.kind}</td>
                <td>
                  <Time iso={s.created_at} />
                </td>
                <td>{s.expires_at === null ? "current" : <Time iso={s.expires_at} />}</td>
                <td>
                  <Time iso={s.last_used_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </Table>
        {allows(page.principal, "listInboundRequests", id) ? (
          <p>
            <a href={`/console/inbound?network_id=${encodeURIComponent(id)}`}>Rejected requests of {id}</a>
          </p>
        ) : null}
      </Layout>,
    );
  });

  for (const action of ["disable", "enable"] as const) {
    app.post(`/networks/:network_id/${action}`, async (c) => {
      const page = pageOf(c);
      const id = c.req.param("network_id");
      const operation = action === "disable" ? "disableNetwork" : "enableNetwork";
      return runAction(c, { operation, subject: id, target: { network_id: id } }, async () => {
        const network = await setNetworkStatusNow(c.env, id, action === "disable" ? "disabled" : "active");
        return (
          <Result
            title={`Network ${network.status}`}
            page={page}
            back={`/console/networks/${encodeURIComponent(id)}`}
            backLabel="Back to the network"
          >
            <p>
              Network <code>{id}</code> is {network.status}
              {network.status === "disabled" ? "; its postbacks are answered 403." : "."}
            </p>
          </Result>
        );
      });
    });
  }

  const rotations: [string, CredentialKind, "rotateNetworkSecret" | "rotateNetworkToken", string][] = [
    ["rotate-secret", "signing", "rotateNetworkSecret", "signing secret"],
    ["rotate-token", "token", "rotateNetworkToken", "token"],
  ];
  for (const [path, kind, operation, label] of rotations) {
    app.post(`/networks/:network_id/${path}`, async (c) => {
      const page = pageOf(c);
      const id = c.req.param("network_id");
      return runAction(c, { operation, subject: id, target: { network_id: id } }, async () => {
        const rotated = await rotateNetworkCredential(c.env, id, undefined, kind);
        return (
          <Result
            title={`New ${label}`}
            page={page}
            back={`/console/networks/${encodeURIComponent(id)}`}
            backLabel="Back to the network"
          >
            <p>
              The new {label} of <code>{id}</code>, shown <strong>this once</strong>; copy it now:
            </p>
            <p>
              <label for="new-credential">New {label}</label>
              <input id="new-credential" class="secret" readonly value={rotated.value} />
            </p>
            <p>
              The previous ones keep working until <Time iso={rotated.endsAt} />.
            </p>
          </Result>
        );
      });
    });
  }
}
