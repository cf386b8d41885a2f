#!/usr/bin/env node
// `npm run demo`: the whole flow in about a minute, against a hub started with `npm run dev`.
// Creates a demo network and a demo partner (a small HTTP server on 127.0.0.1 that this script
// starts and that fails its first request once), fires signed postbacks (new, duplicate, status
// update, another new one, a bad signature), then follows each delivery until the partner has it.
// Then attribution: an offer, two affiliates' tracking links, a click, and the conversion that
// only the clicking affiliate hears of, with its payout and sub ids. It ends with the console's URL
// and an operator key to sign in with (the demo's own key, rotated on every run, expiring in 7 days).
// HUB_URL (default http://127.0.0.1:8787) and ADMIN_TOKEN (default: .dev.vars, else
// .dev.vars.example) point it elsewhere. Exits non-zero on any failure or after about a minute.
import { randomBytes, randomUUID } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Webhook } from "standardwebhooks";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const HUB = (process.env.HUB_URL ?? "http://127.0.0.1:8787").replace(/\/+$/, "");
const DELIVERY_DEADLINE_MS = 60_000;
const POLL_MS = 1_000;
const HEARTBEAT_MS = 5_000;
const REQUEST_TIMEOUT_MS = 10_000;
const RETRY_SCHEDULE_SECONDS = [2, 5, 10];
const FINAL_STATES = new Set(["delivered", "failed", "dead", "parked"]);

class DemoError extends Error {}

const startedAt = Date.now();
const elapsed = () => `${((Date.now() - startedAt) / 1000).toFixed(1).padStart(5)}s`;
const say = (line = "") => console.log(line);
const STEPS = 8;
const step = (n, text) => say(`\n[${n}/${STEPS}] ${text}`);

/** Whatever the demo started, so that it can be stopped on every way out. */
const cleanup = { server: null, partnerId: null, affiliates: null, affiliateIds: [], done: false };

// ---------------------------------------------------------------------------------------------
// The hub's admin API
// ---------------------------------------------------------------------------------------------

function readAdminToken() {
  if (process.env.ADMIN_TOKEN) return { token: process.env.ADMIN_TOKEN, source: "$ADMIN_TOKEN" };
  for (const name of [".dev.vars", ".dev.vars.example"]) {
    const file = path.join(ROOT, name);
    if (!existsSync(file)) continue;
    const line = readFileSync(file, "utf8")
      .split(/\r?\n/)
      .find((l) => /^\s*(export\s+)?ADMIN_TOKEN\s*=/.test(l));
    if (line) {
      const value = line.slice(line.indexOf("=") + 1).trim();
      return { token: value.replace(/^(["'])(.*)\1$/, "$2"), source: name };
    }
  }
  throw new DemoError("No admin token: set ADMIN_TOKEN, or run `npm run dev` once (it creates .dev.vars).");
}

let adminToken = "";
let adminTokenSource = "";

async function hub(method, pathname, { body, headers = {}, auth = true } = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) };
  if (auth) init.headers.authorization = `Bearer ${adminToken}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`${HUB}${pathname}`, init);
  } catch (error) {
    throw new DemoError(`${method} ${pathname}: no answer from the hub at ${HUB} (${causeOf(error)}).`);
  }
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // Not JSON: kept as text below.
  }
  return { status: response.status, headers: response.headers, json, text };
}

/** Calls the admin API and insists on `expected`, explaining the usual local mistakes. */
async function admin(method, pathname, expected, body) {
  const answer = await hub(method, pathname, { body });
  if (answer.status === expected) return answer.json;
  if (answer.status === 401) {
    throw new DemoError(
      `${method} ${pathname}: 401, the hub refused the admin token. It was started with another ADMIN_TOKEN than ` +
        "this script read: run `ADMIN_TOKEN=<the hub's token> npm run demo`.",
    );
  }
  throw new DemoError(`${method} ${pathname}: expected ${expected}, got ${answer.status}: ${answer.text}`);
}

function causeOf(error) {
  const cause = error?.cause;
  return cause?.code ?? cause?.message ?? error?.message ?? String(error);
}

// ---------------------------------------------------------------------------------------------
// The demo partner: a real HTTP server that fails its first request once, then accepts
// ---------------------------------------------------------------------------------------------

async function startDemoPartner() {
  const received = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const failing = received.length === 0;
      const status = failing ? 500 : 200;
      received.push({
        at: elapsed(),
        method: req.method,
        url: req.url,
        headers: Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]),
        ),
        body: Buffer.concat(chunks).toString("utf8"),
        status,
      });
      res.writeHead(status, { "content-type": "text/plain" });
      res.end(failing ? "demo partner: simulated outage, please retry" : "ok, thanks");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanup.server = server;
  return { url: `http://127.0.0.1:${server.address().port}`, received };
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

async function checkHealth() {
  step(1, `checking the hub at ${HUB}`);
  let answer;
  try {
    answer = await hub("GET", "/health", { auth: false });
  } catch {
    throw new DemoError(
      [
        `No hub answers at ${HUB}.`,
        "  Start it in another terminal with:  npm run dev",
        `  wait for “Ready on ${HUB}”, then run \`npm run demo\` again.`,
        "  (A hub on another port: HUB_URL=http://127.0.0.1:8788 npm run demo)",
      ].join("\n"),
    );
  }
  if (answer.status === 503) {
    throw new DemoError(
      `The hub answers, but its database is not ready (${answer.text}). Run: npm run db:migrate:local`,
    );
  }
  if (answer.status !== 200 || answer.json?.status !== "ok") {
    throw new DemoError(`GET /health answered ${answer.status}: ${answer.text}`);
  }
  say(`      ✓ healthy (GET /health → 200); admin token from ${adminTokenSource}`);
}

async function createNetwork() {
  const stamp = new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const id = `demo-${stamp}-${randomBytes(2).toString("hex")}`;
  step(2, `creating the demo network "${id}" (POST /v1/networks)`);
  const network = await admin("POST", "/v1/networks", 201, { id, name: "Demo network" });
  say("      ✓ created; the answer carries its signing secret (shown only once), which the demo signs with");
  return { id, secret: network.secret };
}

async function createPartner(network, partnerUrl) {
  step(3, "starting a demo partner and registering it (POST /v1/partners)");
  say(`      • listening on ${partnerUrl}: it answers its first request 500, then 200`);
  const body = {
    name: "Demo partner",
    url_template: `${partnerUrl}/postback?tx={transaction_id}&status={status}&amount={amount}&currency={currency}`,
    method: "GET",
    sign: true,
    retry_schedule_seconds: RETRY_SCHEDULE_SECONDS,
    timeout_ms: 5_000,
    filters: { networks: [network.id] },
  };
  const answer = await hub("POST", "/v1/partners", { body });
  if (answer.status === 422 && /ALLOW_INSECURE_PARTNER_URLS/.test(answer.text)) {
    throw new DemoError(
      [
        "The hub refuses a partner on http://127.0.0.1 because ALLOW_INSECURE_PARTNER_URLS is not true in it.",
        "  Your .dev.vars predates that setting: add this line to it (as in .dev.vars.example),",
        "    ALLOW_INSECURE_PARTNER_URLS=true",
        "  then restart `npm run dev` (or start it with `npm run dev -- --var ALLOW_INSECURE_PARTNER_URLS:true`).",
      ].join("\n"),
    );
  }
  if (answer.status !== 201) {
    throw new DemoError(`POST /v1/partners: expected 201, got ${answer.status}: ${answer.text}`);
  }
  const partner = answer.json;
  cleanup.partnerId = partner.id;
  say(`      ✓ partner ${partner.id}: GET ${body.url_template}`);
  say(
    "        signed (Standard Webhooks; its signing_secret comes only in this answer), retries after " +
      `${RETRY_SCHEDULE_SECONDS.join(" s, ")} s (±20 %), only events from ${network.id}`,
  );
  return partner;
}

/** Posts `body` byte for byte, signed with the Standard Webhooks library as a network would. */
async function postback(network, body, secret = network.secret) {
  const payload = JSON.stringify(body);
  const msgId = `msg_${randomUUID()}`;
  const timestamp = new Date(Math.floor(Date.now() / 1000) * 1000);
  return hub("POST", `/v1/postbacks/${network.id}`, {
    auth: false,
    body: payload,
    headers: {
      "webhook-id": msgId,
      "webhook-timestamp": String(timestamp.getTime() / 1000),
      "webhook-signature": new Webhook(secret).sign(msgId, timestamp, payload),
    },
  });
}

async function firePostbacks(network) {
  step(4, `firing signed postbacks at POST /v1/postbacks/${network.id}`);
  const first = {
    transaction_id: "ord-1001",
    status: "pending",
    amount: "25.00",
    currency: "EUR",
    event_type: "purchase",
    campaign_id: "spring-sale",
  };
  const second = { transaction_id: "ord-1002", status: "approved", amount: "9.99", currency: "USD" };
  const forged = { transaction_id: "ord-1003", status: "approved", amount: "1000.00", currency: "USD" };
  const wrongSecret = `whsec_${randomBytes(32).toString("base64")}`;
  const shots = [
    { label: "a new conversion ord-1001 (pending, 25.00 EUR)", body: first, expect: "accepted" },
    { label: "the very same postback again", body: first, expect: "duplicate" },
    { label: "ord-1001 again: pending → approved", body: { ...first, status: "approved" }, expect: "updated" },
    { label: "another new conversion ord-1002 (approved, 9.99 USD)", body: second, expect: "accepted" },
    { label: "ord-1003 signed with a wrong secret", body: forged, secret: wrongSecret, expect: 401 },
  ];
  const results = [];
  for (const [index, shot] of shots.entries()) {
    const answer = await postback(network, shot.body, shot.secret);
    const letter = String.fromCharCode(97 + index);
    let outcome;
    if (answer.status === 200) {
      const replayed = answer.headers.get("idempotent-replayed") === "true" ? ", idempotent-replayed: true" : "";
      outcome = `200 ${answer.json.status} (${answer.json.event_id}, conversion ${answer.json.conversion_status}${replayed})`;
    } else {
      const first = answer.json?.errors?.[0];
      const where = first ? `: ${first.location} ${first.message}` : "";
      outcome = `${answer.status} ${answer.json?.code ?? answer.text}${where}`;
    }
    say(`      ${letter}) ${shot.label.padEnd(54)} → ${outcome}`);
    const got = answer.status === 200 ? answer.json.status : answer.status;
    if (got !== shot.expect) throw new DemoError(`expected ${shot.expect} for (${letter}), got ${answer.text}`);
    results.push({ ...shot, answer });
  }
  return results;
}

async function listDeliveries(partnerId) {
  const page = await admin("GET", `/v1/deliveries?partner_id=${partnerId}&limit=50`, 200);
  return page.data;
}

async function waitForDeliveries(partner, expected, received) {
  step(5, `waiting for the ${expected} deliveries (accepted + updated events; duplicates and rejects notify no one)`);
  const deadline = Date.now() + DELIVERY_DEADLINE_MS;
  let lastLine = "";
  let lastPrintMs = 0;
  for (;;) {
    const deliveries = await listDeliveries(partner.id);
    const byState = {};
    for (const d of deliveries) byState[d.state] = (byState[d.state] ?? 0) + 1;
    const delivered = byState.delivered ?? 0;
    const others = Object.entries(byState)
      .filter(([state]) => state !== "delivered")
      .map(([state, n]) => `${n} ${state}`);
    const failures = received.filter((r) => r.status !== 200).length;
    const line =
      `${delivered}/${expected} delivered${others.length ? `, ${others.join(", ")}` : ""}` +
      ` · the partner got ${received.length} request${received.length === 1 ? "" : "s"}` +
      (failures ? ` (${failures} answered 500)` : "");
    if (line !== lastLine || Date.now() - lastPrintMs >= HEARTBEAT_MS) {
      say(`      [${elapsed()}] ${line}`);
      lastLine = line;
      lastPrintMs = Date.now();
    }
    if (deliveries.length >= expected && deliveries.every((d) => FINAL_STATES.has(d.state))) return deliveries;
    if (Date.now() > deadline) {
      throw new DemoError(
        `Not every delivery finished within ${DELIVERY_DEADLINE_MS / 1000} s (${line}). Look at the \`npm run dev\` ` +
          `terminal for errors, and at GET /v1/deliveries?partner_id=${partner.id}.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function report(network, partner, shots, deliveries, received) {
  step(6, "what happened to each conversion");
  const transactions = [...new Set(shots.filter((s) => s.answer.status === 200).map((s) => s.body.transaction_id))];
  for (const tx of transactions) {
    const conversion = await admin("GET", `/v1/conversions/${network.id}/${tx}`, 200);
    const history = conversion.events.map((e) => `${e.verdict} (${e.status})`).join(" → ");
    say(`\n   ${tx}: ${conversion.status}, ${conversion.amount} ${conversion.currency}; history: ${history}`);
    // In the order of the conversion's history, oldest event first.
    const position = (d) => conversion.events.findIndex((e) => e.event_id === d.event_id);
    const ofTx = deliveries.filter((d) => d.transaction_id === tx).sort((a, b) => position(a) - position(b));
    for (const delivery of ofTx) {
      const detail = await admin("GET", `/v1/deliveries/${delivery.id}`, 200);
      say(`     delivery ${detail.id} (status ${detail.conversion_status}, event ${detail.event_id}): ${detail.state}`);
      for (const attempt of detail.attempts_log) {
        const what = attempt.http_status !== null ? `HTTP ${attempt.http_status}` : `${attempt.error_class} error`;
        say(`       attempt ${attempt.attempt}: ${what} in ${attempt.latency_ms} ms → ${attempt.outcome}`);
      }
      for (const request of received.filter((r) => r.headers["webhook-id"] === delivery.id)) {
        let signature = "signature ✓ (standardwebhooks verify)";
        try {
          // A GET is signed over its request line as received (`GET /postback?tx=…`), a POST over its body.
          const signed = request.method === "GET" ? `${request.method} ${request.url}` : request.body;
          new Webhook(partner.signing_secret).verify(signed, request.headers, { jsonParse: false });
        } catch (error) {
          signature = `signature ✗ (${error.message})`;
        }
        say(`       the partner got [${request.at}] ${request.method} ${request.url}`);
        say(`         webhook-id ${request.headers["webhook-id"]}, ${signature}; it answered ${request.status}`);
      }
    }
    const lastAccepted = received
      .filter((r) => r.status === 200 && new URL(r.url, "http://partner").searchParams.get("tx") === tx)
      .at(-1);
    const lastStatus = lastAccepted && new URL(lastAccepted.url, "http://partner").searchParams.get("status");
    if (lastStatus) {
      say(
        lastStatus === conversion.status
          ? `     the partner's last word on ${tx} is "${lastStatus}", the conversion's status ✓ (its deliveries go in order)`
          : `     unexpected: the last request the partner took (200) for ${tx} said "${lastStatus}", not ` +
              `"${conversion.status}"; look for a superseded or failed delivery above.`,
      );
    }
  }
  const counts = {};
  for (const shot of shots) {
    const key = shot.answer.status === 200 ? shot.answer.json.status : `rejected (${shot.answer.status})`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  const delivered = deliveries.filter((d) => d.state === "delivered").length;
  const ids = new Set(received.map((r) => r.headers["webhook-id"]));
  say("\nSummary");
  say(
    `   ${shots.length} postbacks: ${Object.entries(counts)
      .map(([k, n]) => `${n} ${k}`)
      .join(", ")}`,
  );
  say(
    `   ${delivered}/${deliveries.length} deliveries delivered; the partner got ${received.length} requests for ` +
      `${ids.size} webhook-ids (every retry of a delivery keeps its webhook-id, so the partner can deduplicate)`,
  );
  say(`   took ${elapsed().trim()}`);
  say(
    "\nExplore (docs/sending-postbacks.md, docs/signing-postbacks.md, docs/conversion-records.md; the API reference: GET /docs, its schema: GET /openapi.json)",
  );
  const tokenHint =
    adminTokenSource === "$ADMIN_TOKEN" ? "" : `; ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' ${adminTokenSource})`;
  say(`   HUB=${HUB}${tokenHint}`);
  say(`   curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$HUB/v1/conversions?network_id=${network.id}"`);
  say(`   curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$HUB/v1/deliveries?partner_id=${partner.id}"`);
  say(`   curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$HUB/v1/partners/${partner.id}"`);
  if (delivered !== deliveries.length) throw new DemoError("Not every delivery was delivered: see above.");
}

// ---------------------------------------------------------------------------------------------
// Attribution: whose conversion it is, and what it pays
// ---------------------------------------------------------------------------------------------

/** Two affiliates' postback endpoints on one server, by path; every request answered 200. */
async function startAffiliates() {
  const received = [];
  const server = createServer((req, res) => {
    received.push({ at: elapsed(), url: req.url });
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("ok");
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  cleanup.affiliates = server;
  return { url: `http://127.0.0.1:${server.address().port}`, received };
}

async function attribution(network) {
  step(7, "attribution: an offer, two affiliates' tracking links, and whose conversion it is");
  const server = await startAffiliates();
  const template = (name) =>
    `${server.url}/${name}?tx={transaction_id}&status={status}&payout={payout}&cur={payout_currency}&s1={sub1}&by={attribution}`;
  const affiliates = {};
  for (const name of ["alice", "bob"]) {
    const created = await admin("POST", "/v1/partners", 201, {
      name: `Demo affiliate ${name}`,
      url_template: template(name),
      routing: "attributed",
      retry_schedule_seconds: RETRY_SCHEDULE_SECONDS,
    });
    affiliates[name] = created.id;
    cleanup.affiliateIds.push(created.id);
  }
  say(`      ✓ two attributed partners (routing "attributed": they hear only of their own conversions)`);
  const offer = await admin("POST", "/v1/offers", 201, {
    network_id: network.id,
    name: "Demo spring sale",
    landing_url: "https://shop.example/spring?clickid={click_id}&aff={partner_id}",
    payouts: { default: [{ fixed: { amount: "2.50", currency: "USD" }, percent: "5" }] },
  });
  say(`      ✓ offer ${offer.id}: pays 2.50 USD + 5 % of the sale; tracking link ${offer.tracking_link}`);

  const link = `${offer.tracking_link.replace("{partner_id}", affiliates.alice)}&sub1=demo-banner`;
  const clicked = await fetch(link, {
    redirect: "manual",
    headers: { "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36" },
  });
  const location = clicked.headers.get("location") ?? "";
  if (clicked.status !== 302 || !location) throw new DemoError(`the tracking link answered ${clicked.status}`);
  const clickId = new URL(location).searchParams.get("clickid");
  say(`      a) a visitor follows Alice's link → 302 ${location.slice(0, 60)}…`);
  say(
    `         the click id (${clickId.length} chars) proves offer, partner and time; a warm isolate redirects from its cache alone`,
  );

  const tx = "ord-2001";
  const answer = await postback(network, {
    transaction_id: tx,
    status: "approved",
    amount: "40.00",
    currency: "USD",
    click_id: clickId,
  });
  if (answer.status !== 200) throw new DemoError(`the attributed postback answered ${answer.status}: ${answer.text}`);
  say(`      b) the shop's network posts ${tx} (40.00 USD) with that click id → 200 ${answer.json.status}`);

  const deadline = Date.now() + DELIVERY_DEADLINE_MS;
  while (!server.received.some((r) => r.url.startsWith("/alice"))) {
    if (Date.now() > deadline) throw new DemoError("Alice's postback did not arrive within a minute.");
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  for (const request of server.received) say(`      c) [${request.at}] affiliate got GET ${request.url}`);
  const toBob = server.received.filter((r) => r.url.startsWith("/bob")).length;
  say(`         Bob got ${toBob} requests: the conversion is not his`);
  const conversion = await admin("GET", `/v1/conversions/${network.id}/${tx}`, 200);
  const a = conversion.attribution;
  say(
    `      d) the record: ${a.verdict} by ${a.partner_id}, payout ${a.payout?.amount} ${a.payout?.currency}` +
      ` (2.50 + 5 % of 40.00), sub1 ${a.click?.sub1 ?? "(the click's record is still on its way)"}; docs/attribution.md`,
  );
  if (toBob !== 0 || a.partner_id !== affiliates.alice) throw new DemoError("the conversion was credited wrongly");
}

/** Closes the partner server and disables the demo partner, whose address is gone with it. */
async function stopEverything() {
  if (cleanup.done) return;
  cleanup.done = true;
  if (cleanup.partnerId) {
    const answer = await hub("POST", `/v1/partners/${cleanup.partnerId}/disable`).catch(() => null);
    say(
      answer?.status === 200
        ? `\n• disabled the demo partner ${cleanup.partnerId} (its server is gone; its deliveries stay in the log)`
        : `\n• could not disable the demo partner ${cleanup.partnerId}; POST /v1/partners/${cleanup.partnerId}/disable does it`,
    );
  }
  for (const id of cleanup.affiliateIds) await hub("POST", `/v1/partners/${id}/disable`).catch(() => null);
  if (cleanup.affiliates) {
    cleanup.affiliates.closeAllConnections();
    await new Promise((resolve) => cleanup.affiliates.close(() => resolve()));
  }
  if (cleanup.server) {
    cleanup.server.closeAllConnections();
    await new Promise((resolve) => cleanup.server.close(() => resolve()));
    say("• stopped the demo partner server");
  }
}

async function main() {
  say(`Postback Hub demo: a network posts conversions, the hub dedupes them and relays them to a partner.`);
  const { token, source } = readAdminToken();
  adminToken = token;
  adminTokenSource = source;
  await checkHealth();
  const network = await createNetwork();
  const demoPartner = await startDemoPartner();
  const partner = await createPartner(network, demoPartner.url);
  const shots = await firePostbacks(network);
  const expected = shots.filter((s) => s.expect === "accepted" || s.expect === "updated").length;
  const deliveries = await waitForDeliveries(partner, expected, demoPartner.received);
  await report(network, partner, shots, deliveries, demoPartner.received);
  await attribution(network);
  await consoleKey(network);
}

const DEMO_KEY_NAME = "Demo console (npm run demo)";
const DEMO_KEY_DAYS = 7;

/**
 * An operator key to sign in to the console with: the one an earlier run made, rotated (a value is
 * shown only once, so a new one is the only way to print it again), or a new one.
 */
async function consoleKey(network) {
  step(8, "the console: sign in and look");
  const expires_at = new Date(Date.now() + DEMO_KEY_DAYS * 86_400_000).toISOString();
  const existing = (await admin("GET", "/v1/keys?scope=operator&limit=200", 200)).data.find(
    (key) => key.name === DEMO_KEY_NAME,
  );
  let key;
  if (existing) {
    await admin("PATCH", `/v1/keys/${existing.id}`, 200, { status: "active", expires_at });
    key = await admin("POST", `/v1/keys/${existing.id}/rotate`, 200, {});
    say(`      ✓ rotated the demo's operator key ${key.id} (the previous run's value no longer works)`);
  } else {
    key = await admin("POST", "/v1/keys", 201, { name: DEMO_KEY_NAME, scope: "operator", expires_at });
    say(`      ✓ created an operator key ${key.id}, expiring in ${DEMO_KEY_DAYS} days`);
  }
  say(`\n   Console: ${HUB}/console (the demo's conversions: ${HUB}/console/conversions?network_id=${network.id})`);
  say(`   Sign in with this operator key (shown once; admin actions such as rotating secrets need an admin key):`);
  say(`   ${key.key}`);
}

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.once(signal, () => {
    say(`\n✗ interrupted (${signal})`);
    stopEverything().finally(() => process.exit(130));
  });
}

try {
  await main();
  await stopEverything();
  say("\n✓ demo finished");
} catch (error) {
  console.error(`\n✗ ${error instanceof DemoError ? error.message : (error?.stack ?? error)}`);
  await stopEverything();
  process.exitCode = 1;
}
