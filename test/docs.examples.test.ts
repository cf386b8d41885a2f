/**
 * The example outputs the documentation shows stay true: each `<!-- example: name -->` is sent to
 * the hub as the page writes it (the same method, path, headers and body), and the page's answer
 * is compared with the hub's. Values that differ from run to run (ids, secrets, times) are compared
 * by their form; everything else must be equal, key order included.
 *
 * The examples build on each other as a reader would run them (`acme` is created, then posted to),
 * so the tests of this file run in order and share its storage.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import attributionPage from "../docs/attribution.md?raw";
import mappingPage from "../docs/get-postbacks-mapping.md?raw";
import onboardingPage from "../docs/onboarding-a-network.md?raw";
import sendingPage from "../docs/sending-postbacks.md?raw";
import readme from "../README.md?raw";
import { OFFER_ID_PATTERN } from "../src/domain/offer";
import { signQuery } from "../src/ingest/signed-query";
import { importSigningKey } from "../src/lib/standard-webhooks";
import { BASE, expectStatus, signedRequest } from "./support/helpers";
import { signedQuery } from "./support/inbound";
import { example, exampleNames, type FencedBlock } from "./support/markdown";

const PAGES = {
  "README.md": readme,
  "onboarding-a-network.md": onboardingPage,
  "sending-postbacks.md": sendingPage,
  "attribution.md": attributionPage,
};
const CHECKED: Record<string, string[]> = {
  "README.md": ["health"],
  "onboarding-a-network.md": ["network-created", "signed-query-network", "signed-query"],
  "attribution.md": ["offer-created"],
  "sending-postbacks.md": ["postback-accepted", "postback-duplicate", "postback-invalid"],
  "get-postbacks-mapping.md": ["mapping-explained"],
};

// --- reading the page's request -----------------------------------------------------------------

/** The shell variables of the examples, as the test has them. */
const shell: Record<string, string> = { HUB: BASE, ADMIN_TOKEN: env.ADMIN_TOKEN };

function expand(text: string): string {
  return text
    .replace(/\$\{?([A-Z_]+)\}?/g, (whole, name: string) => shell[name] ?? whole)
    .replace("http://127.0.0.1:8787", BASE);
}

/** The commands of a shell block, continuation lines joined, comments and blank lines dropped. */
function commands(block: FencedBlock): string[] {
  return block.text
    .replace(/\\\n\s*/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

/** Single- or double-quoted arguments after `flag`, in order. */
function quoted(command: string, flag: string): string[] {
  return [...command.matchAll(new RegExp(`${flag} (?:'([^']*)'|"([^"]*)")`, "g"))].map((m) => m[1] ?? m[2] ?? "");
}

/** The Request a `curl` command of the page sends. */
function curlRequest(command: string): Request {
  expect(command.startsWith("curl "), command).toBe(true);
  const url =
    /"(\$HUB[^"]*|http:\/\/127\.0\.0\.1:8787[^"]*)"|'(http:\/\/127\.0\.0\.1:8787[^']*)'| (http:\/\/127\.0\.0\.1:8787\S*)/.exec(
      command,
    );
  const target = url?.[1] ?? url?.[2] ?? url?.[3];
  if (target === undefined) throw new Error(`no hub URL in ${command}`);
  const headers = new Headers();
  for (const header of quoted(command, "-H")) {
    const colon = header.indexOf(":");
    headers.set(header.slice(0, colon).trim(), expand(header.slice(colon + 1).trim()));
  }
  const body = quoted(command, "-d")[0];
  const method = /-X (\w+)/.exec(command)?.[1] ?? (body === undefined ? "GET" : "POST");
  return new Request(expand(target), { method, headers, ...(body === undefined ? {} : { body }) });
}

/** A `post <network> '<body>'` line: the network and the exact body the `post` function signs. */
function postCommand(command: string): { network: string; body: string } {
  const match = /^post (\S+) '([^']*)'/.exec(command);
  if (!match?.[1] || match[2] === undefined) throw new Error(`not a post command: ${command}`);
  return { network: match[1], body: match[2] };
}

function blocksOf(page: string, name: string, count: number): FencedBlock[] {
  const blocks = example(page, name);
  expect(blocks.length, `example ${name}: its fenced blocks`).toBeGreaterThanOrEqual(count);
  return blocks;
}

function json(block: FencedBlock | undefined): unknown {
  expect(block?.lang).toBe("json");
  return JSON.parse(block?.text ?? "");
}

// --- comparing the page's answer ----------------------------------------------------------------

/** Keys whose values change from run to run: compared by their form. */
const VOLATILE: Record<string, RegExp> = {
  time: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
  created_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
  updated_at: /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
  event_id: /^evt_[0-9a-hjkmnp-tv-z]{26}$/,
  request_id: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
  secret: /^whsec_[A-Za-z0-9+/]{43}=$/,
};

/**
 * `actual` is what the page documents: the same keys in the same order (with `excerpt`, the
 * documented keys only), equal values, and volatile values of the same form.
 */
function expectDocumented(actual: unknown, documented: unknown, { excerpt = false, path = "$" } = {}): void {
  if (Array.isArray(documented)) {
    expect(Array.isArray(actual), `${path} is an array`).toBe(true);
    expect((actual as unknown[]).length, `${path}: its length`).toBe(documented.length);
    documented.forEach((item, i) => {
      expectDocumented((actual as unknown[])[i], item, { path: `${path}[${i}]` });
    });
    return;
  }
  if (documented !== null && typeof documented === "object") {
    expect(actual !== null && typeof actual === "object" && !Array.isArray(actual), `${path} is an object`).toBe(true);
    const record = actual as Record<string, unknown>;
    const keys = Object.keys(documented);
    if (!excerpt) expect(Object.keys(record), `${path}: its keys`).toEqual(keys);
    for (const key of keys) {
      const value = (documented as Record<string, unknown>)[key];
      const form = VOLATILE[key];
      if (form && typeof value === "string") {
        expect(value, `${path}.${key} as documented`).toMatch(form);
        expect(record[key], `${path}.${key}`).toMatch(form);
      } else {
        expectDocumented(record[key], value, { excerpt, path: `${path}.${key}` });
      }
    }
    return;
  }
  expect(actual, path).toEqual(documented);
}

// --- the examples -------------------------------------------------------------------------------

describe("the documentation's examples", () => {
  it("marks exactly the examples this file checks", () => {
    for (const [file, page] of Object.entries({ ...PAGES, "get-postbacks-mapping.md": mappingPage })) {
      expect(exampleNames(page), file).toEqual(CHECKED[file]);
    }
  });

  it("README: /health", async () => {
    const [request, answer] = blocksOf(readme, "health", 2);
    const [command = ""] = commands(request as FencedBlock);
    const response = await exports.default.fetch(curlRequest(command));
    expectDocumented(await expectStatus(response, 200), json(answer));
  });

  let acmeSecret = "";

  it("onboarding: a network created", async () => {
    const [request, answer] = blocksOf(onboardingPage, "network-created", 2);
    const [command = ""] = commands(request as FencedBlock);
    const created = await expectStatus<{ secret: string }>(await exports.default.fetch(curlRequest(command)), 201);
    expectDocumented(created, json(answer));
    acmeSecret = created.secret;
  });

  it("attribution: an offer created for acme", async () => {
    const [request, answer] = blocksOf(attributionPage, "offer-created", 2);
    const [command = ""] = commands(request as FencedBlock);
    const created = await expectStatus<{ id: string; tracking_link: string }>(
      await exports.default.fetch(curlRequest(command)),
      201,
    );
    const documented = json(answer) as { id: string; tracking_link: string };
    // The id is new on every run, and the tracking link carries it and the hub's address.
    expect(created.id).toMatch(OFFER_ID_PATTERN);
    expect(documented.id).toMatch(OFFER_ID_PATTERN);
    expect(created.tracking_link).toBe(`${BASE}/c/${created.id}?p={partner_id}`);
    expect(documented.tracking_link).toBe(`http://127.0.0.1:8787/c/${documented.id}?p={partner_id}`);
    expectDocumented({ ...created, id: documented.id, tracking_link: documented.tracking_link }, documented);
  });

  /** A `post` line of the page, signed with the network's secret as the `post` function does. */
  async function post(block: FencedBlock | undefined): Promise<Response> {
    const [command = ""] = commands(block as FencedBlock);
    const { network, body } = postCommand(command);
    expect(network).toBe("acme");
    return exports.default.fetch(await signedRequest(network, body, acmeSecret));
  }

  let acceptedEventId = "";
  let documentedEventId = "";

  it("sending postbacks: a postback accepted", async () => {
    const [request, answer] = blocksOf(sendingPage, "postback-accepted", 2);
    const accepted = await expectStatus<{ event_id: string }>(await post(request), 200);
    const documented = json(answer) as { event_id: string };
    expectDocumented(accepted, documented);
    acceptedEventId = accepted.event_id;
    documentedEventId = documented.event_id;
  });

  it("sending postbacks: the same postback again, a duplicate with the original event id", async () => {
    const [request, answer] = blocksOf(sendingPage, "postback-duplicate", 2);
    expect(commands(request as FencedBlock)[0]).toMatch(/ -i$/);
    expect(answer?.lang).toBe("http");
    const [head = "", body = ""] = (answer?.text ?? "").split("\n\n");
    const [statusLine = "", ...headerLines] = head.split("\n");
    const response = await post(request);
    expect(statusLine).toBe(`HTTP/1.1 ${response.status} OK`);
    for (const line of headerLines) {
      const [name = "", value = ""] = line.split(": ");
      if (name.toLowerCase() === "x-request-id")
        expect(response.headers.get(name)).toMatch(VOLATILE.request_id as RegExp);
      else expect(response.headers.get(name), name).toBe(value);
    }
    const duplicate = await expectStatus<{ event_id: string }>(response, 200);
    const documented = JSON.parse(body) as { event_id: string };
    expectDocumented(duplicate, documented);
    expect(duplicate.event_id).toBe(acceptedEventId);
    expect(documented.event_id, "the page's duplicate replays its accepted event id").toBe(documentedEventId);
  });

  it("sending postbacks: a 422 naming every field", async () => {
    const [request, answer] = blocksOf(sendingPage, "postback-invalid", 2);
    const response = await post(request);
    expect(response.headers.get("content-type")).toBe("application/problem+json");
    expectDocumented(await expectStatus(response, 422), json(answer));
  });

  it("GET and form postbacks: explain shows the mapping", async () => {
    const [request, answer] = blocksOf(mappingPage, "mapping-explained", 2);
    const [create = "", explain = ""] = commands(request as FencedBlock);
    const created = await expectStatus<{ token: string }>(await exports.default.fetch(curlRequest(create)), 201);
    shell.GENMOB_TOKEN = created.token;
    const explained = await expectStatus(await exports.default.fetch(curlRequest(explain)), 200);
    expectDocumented(explained, json(answer), { excerpt: true });
  });

  let sigmobSecret = "";

  it("onboarding: a signed-query network created", async () => {
    const [request] = blocksOf(onboardingPage, "signed-query-network", 1);
    const [command = ""] = commands(request as FencedBlock);
    sigmobSecret = (await expectStatus<{ secret: string }>(await exports.default.fetch(curlRequest(command)), 201))
      .secret;
  });

  it("onboarding: a signed query, with a real signature, accepted", async () => {
    const [block] = blocksOf(onboardingPage, "signed-query", 1);
    expect(block?.lang).toBe("console");
    const [command = "", signedUrl = "", answer = ""] = (block?.text ?? "").split("\n");
    const run = /^\$ HUB_SECRET='(whsec_[^']+)' node fire\.mjs '([^']+)'$/.exec(command);
    if (!run?.[1] || !run[2]) throw new Error(`not the fire.mjs command: ${command}`);
    const [, documentedSecret, unsignedUrl] = run;

    // The printed URL is the fired one plus pb_id, pb_ts and a pb_sig that the documented secret really makes.
    expect(signedUrl.startsWith(`${unsignedUrl}&pb_id=`), signedUrl).toBe(true);
    const pairs = [...new URL(signedUrl).searchParams];
    const param = (name: string) => pairs.find(([n]) => n === name)?.[1] ?? "";
    expect(param("pb_id")).toMatch(/^[0-9a-f-]{36}$/);
    expect(param("pb_ts")).toMatch(/^\d{10}$/);
    const key = await importSigningKey(documentedSecret);
    expect(param("pb_sig")).toBe(await signQuery(key, param("pb_id"), param("pb_ts"), pairs));

    // Fired now with this hub's secret, it gets the documented answer.
    const fired = [...new URL(unsignedUrl).searchParams];
    const signed = await signedQuery(sigmobSecret, fired);
    const url = `${BASE}${new URL(unsignedUrl).pathname}?${new URLSearchParams(signed)}`;
    const response = await exports.default.fetch(url);
    const [status = "", ...rest] = answer.split(" ");
    expect(Number(status)).toBe(response.status);
    expectDocumented(await expectStatus(response, 200), JSON.parse(rest.join(" ")));
  });
});
