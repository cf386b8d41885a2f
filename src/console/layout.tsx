/**
 * The console's page shell: one stylesheet and one script, both served from static assets
 * (public/assets/console/), the script with the response's nonce; the navigation shows only the
 * pages the key may open; sign-out is a form with the session's CSRF token.
 */
import type { Child, FC, PropsWithChildren } from "hono/jsx";
import type { Principal } from "../domain/access";
import { allows } from "./scopes";

export const STYLESHEET = "/assets/console/console.css";
export const SCRIPT = "/assets/console/console.js";

/** What every signed-in page knows. */
export interface PageContext {
  nonce: string;
  principal: Principal;
  csrf: string;
  path: string;
}

interface NavItem {
  href: string;
  label: string;
}

/** The pages this key may open, in the navigation's order. */
export function navigationFor(principal: Principal): NavItem[] {
  const own = principal.subject_id;
  const items: NavItem[] = [];
  if (allows(principal, "listConversions") && allows(principal, "listDeliveries")) {
    items.push({ href: "/console", label: "Overview" });
  }
  if (allows(principal, "listConversions", own)) items.push({ href: "/console/conversions", label: "Conversions" });
  if (allows(principal, "listDeliveries", own)) items.push({ href: "/console/deliveries", label: "Deliveries" });
  if (allows(principal, "listNetworks")) items.push({ href: "/console/networks", label: "Networks" });
  if (allows(principal, "listPartners")) items.push({ href: "/console/partners", label: "Partners" });
  else if (own !== null && allows(principal, "getPartner", own)) {
    items.push({ href: `/console/partners/${encodeURIComponent(own)}`, label: "My partner" });
  }
  if (allows(principal, "getStats", own)) items.push({ href: "/console/reports", label: "Reports" });
  if (allows(principal, "listInboundRequests", own) || allows(principal, "listNetworks")) {
    items.push({
      href:
        principal.scope === "network" && own
          ? `/console/inbound?network_id=${encodeURIComponent(own)}`
          : "/console/inbound",
      label: "Inbound log",
    });
  }
  return items;
}

const Head: FC<{ title: string; nonce: string }> = ({ title, nonce }) => (
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>{`${title} · Postback Hub console`}</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href={STYLESHEET} />
    <script nonce={nonce} src={SCRIPT} defer />
  </head>
);

export const Layout: FC<PropsWithChildren<{ title: string; page: PageContext }>> = ({ title, page, children }) => {
  const items = navigationFor(page.principal);
  return (
    <html lang="en">
      <Head title={title} nonce={page.nonce} />
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <span class="brand">Postback Hub</span>
          <nav aria-label="Console">
            <ul>
              {items.map((item) => (
                <li>
                  <a href={item.href} aria-current={isCurrent(item.href, page.path) ? "page" : undefined}>
                    {item.label}
                  </a>
                </li>
              ))}
            </ul>
          </nav>
          <div class="who">
            <span>
              {page.principal.name} <span class="scope">({page.principal.scope})</span>
            </span>
            <form method="post" action="/console/logout">
              <input type="hidden" name="csrf" value={page.csrf} />
              <button type="submit">Sign out</button>
            </form>
          </div>
        </header>
        <main id="main">{children}</main>
      </body>
    </html>
  );
};

function isCurrent(href: string, path: string): boolean {
  const base = href.split("?")[0] ?? href;
  return base === "/console" ? path === "/console" : path === base || path.startsWith(`${base}/`);
}

/** A page without navigation: sign-in, and errors before a session exists. */
export const Bare: FC<PropsWithChildren<{ title: string; nonce: string }>> = ({ title, nonce, children }) => (
  <html lang="en">
    <Head title={title} nonce={nonce} />
    <body>
      <main id="main" class="narrow">
        {children}
      </main>
    </body>
  </html>
);

/** A POST form with the session's CSRF token. */
export const ActionForm: FC<
  PropsWithChildren<{ action: string; csrf: string; class?: string; enctype?: "multipart/form-data" }>
> = (props) => (
  <form method="post" action={props.action} class={props.class ?? "inline"} enctype={props.enctype}>
    <input type="hidden" name="csrf" value={props.csrf} />
    {props.children}
  </form>
);

export const Time: FC<{ iso: string | null }> = ({ iso }) =>
  iso === null ? (
    <span class="muted">—</span>
  ) : (
    <time datetime={iso}>{iso.replace("T", " ").replace(/\.\d+Z$/, "Z")}</time>
  );

/** A table in its own scrolling box, so a wide table never widens the page. */
export const Table: FC<PropsWithChildren<{ id?: string; class?: string; caption: Child; label?: string }>> = (
  props,
) => (
  <section class="table-box" aria-label={props.label ?? String(props.caption)} tabindex={0}>
    <table id={props.id} class={props.class}>
      <caption>{props.caption}</caption>
      {props.children}
    </table>
  </section>
);

export const StateBadge: FC<{ state: string }> = ({ state }) => <span class={`badge s-${state}`}>{state}</span>;
