/**
 * The only outbound destination tests may reach: a fake partner at https://partner.test, served by
 * Miniflare's outbound service in Node. It answers by path and records every request so tests
 * (inside workerd) can read them back from https://partner.test/__log/<prefix>.
 *
 *   /ok/…       200          /fail/…   500           /gone/…   410
 *   /slow/…     hangs 5 s    /flaky/N/… 500 for the first N requests to that path, then 200
 *
 * Any other outbound request fails loudly with 599, and is recorded too, so that a test can prove
 * that nothing left for a host it never arranged: https://partner.test/__unexpected/<prefix>.
 */
export const FAKE_PARTNER_ORIGIN = "https://partner.test";

interface Recorded {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  at: number;
}

const log: Recorded[] = [];
const unexpected: Recorded[] = [];
const counts = new Map<string, number>();

export async function fakePartner(request: Request): Promise<Response> {
  const url = new URL(request.url);
  if (url.origin !== FAKE_PARTNER_ORIGIN) {
    unexpected.push(await recorded(request));
    return new Response(`unexpected outbound request in a test: ${request.method} ${request.url}`, { status: 599 });
  }
  for (const [route, entries] of [
    ["/__log", log],
    ["/__unexpected", unexpected],
  ] as const) {
    if (url.pathname.startsWith(`${route}/`)) {
      const prefix = url.pathname.slice(route.length);
      return Response.json(entries.filter((entry) => new URL(entry.url).pathname.startsWith(prefix)));
    }
  }
  log.push(await recorded(request));
  const seen = (counts.get(url.pathname) ?? 0) + 1;
  counts.set(url.pathname, seen);
  const [, kind, arg] = url.pathname.split("/");
  switch (kind) {
    case "ok":
      return new Response("ok");
    case "fail":
      return new Response("partner is down", { status: 500 });
    case "gone":
      return new Response("no such endpoint any more", { status: 410 });
    case "slow":
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      return new Response("too late");
    case "flaky":
      return seen <= Number(arg) ? new Response("not yet", { status: 500 }) : new Response("ok");
    default:
      return new Response("not found", { status: 404 });
  }
}

async function recorded(request: Request): Promise<Recorded> {
  return {
    method: request.method,
    url: request.url,
    headers: Object.fromEntries(request.headers),
    body: await request.text(),
    at: Date.now(),
  };
}
