#!/usr/bin/env node
// `npm run bench:profile`: where the hub's CPU goes while it ingests new conversions (scenario 3 of
// `npm run bench`). Starts the hub under `wrangler dev` with its inspector on a free port, samples
// the Worker's isolate with the V8 profiler (Chrome DevTools protocol) during an autocannon load and
// while the pipeline behind it (alarm, queue, D1, receipts) catches up, then prints the functions
// with the most self and inclusive time, in ms per request. The raw profile is written next to the
// bench results; open it in Chrome DevTools (Performance → Load profile) for the flame chart.
// Settings (env): PROFILE_SECONDS (10), PROFILE_CONNECTIONS (10), PROFILE_TOP (25),
// PROFILE_DUPLICATES=1 to profile re-sent postbacks instead of new ones.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import autocannon from "autocannon";
import { messageId, signedPostback, signer } from "./lib/sign.mjs";
import { freePort, ROOT, sleep, startWranglerDev } from "./lib/wrangler.mjs";

const SECONDS = Number(process.env.PROFILE_SECONDS ?? 10);
const CONNECTIONS = Number(process.env.PROFILE_CONNECTIONS ?? 10);
const TOP = Number(process.env.PROFILE_TOP ?? 25);
const DUPLICATES = process.env.PROFILE_DUPLICATES === "1";
const NETWORKS = 20;
const SETTLE_MS = 4_000;

const inspectorPort = await freePort();
console.log("starting the hub (wrangler dev, migrated temp state)");
const hub = await startWranglerDev({ label: "bench-profile", args: ["--inspector-port", String(inspectorPort)] });
try {
  const networks = [];
  for (let i = 0; i < NETWORKS; i++) {
    const id = `profile-${i}`;
    const response = await fetch(`${hub.baseUrl}/v1/networks`, {
      method: "POST",
      headers: { authorization: `Bearer ${hub.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ id, name: id }),
    });
    if (response.status !== 201) throw new Error(`creating a network: ${response.status} ${await response.text()}`);
    networks.push({ id, sign: signer((await response.json()).secret) });
  }
  const body = (transactionId) =>
    JSON.stringify({ transaction_id: transactionId, status: "approved", amount: "29.90", currency: "USD" });
  // Duplicates: a fixed set of transactions, recorded once before the profile starts.
  const fixed = Array.from({ length: 200 }, (_, i) => `dup-${i}`);
  if (DUPLICATES) {
    for (const [i, id] of fixed.entries()) {
      const request = signedPostback(networks[i % NETWORKS], body(id));
      await (await fetch(`${hub.baseUrl}${request.path}`, request)).text();
    }
  }

  const inspector = await connectInspector(inspectorPort);
  await inspector.send("Profiler.enable");
  await inspector.send("Profiler.setSamplingInterval", { interval: 200 });
  await inspector.send("Profiler.start");
  const cpuBefore = hub.workerdCpuMs();
  let next = 0;
  console.log(
    `profiling ${SECONDS} s of ${DUPLICATES ? "duplicate" : "new"} postbacks over ${CONNECTIONS} connections`,
  );
  const load = await autocannon({
    url: hub.baseUrl,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        setupRequest: (request) => {
          const n = next++;
          const transactionId = DUPLICATES ? fixed[n % fixed.length] : `new-${n}`;
          const network = networks[(DUPLICATES ? n % fixed.length : n) % NETWORKS];
          return { ...request, ...signedPostback(network, body(transactionId), messageId()) };
        },
      },
    ],
  });
  await sleep(SETTLE_MS);
  const { profile } = await inspector.send("Profiler.stop");
  const cpuMs = hub.workerdCpuMs() === null ? null : hub.workerdCpuMs() - cpuBefore;
  inspector.close();

  const requests = load.requests.total;
  const statuses = Object.fromEntries(Object.entries(load.statusCodeStats ?? {}).map(([code, s]) => [code, s.count]));
  const outDir = path.join(ROOT, "bench", "results");
  await mkdir(outDir, { recursive: true });
  const file = path.join(outDir, `profile-${new Date().toISOString().replace(/[:.]/g, "-")}.cpuprofile`);
  await writeFile(file, JSON.stringify(profile));

  const { self, inclusive, activeUs } = summarise(profile);
  const perRequest = (us) => (us / 1000 / requests).toFixed(2).padStart(7);
  const table = (rows) =>
    rows
      .slice(0, TOP)
      .map(([name, us]) => `${perRequest(us)} ms  ${((100 * us) / activeUs).toFixed(1).padStart(5)} %  ${name}`)
      .join("\n");
  console.log(`\n${requests} requests (${JSON.stringify(statuses)}), ${(requests / SECONDS).toFixed(1)} req/s`);
  if (cpuMs !== null)
    console.log(`workerd CPU (all its processes, /proc): ${(cpuMs / requests).toFixed(2)} ms per request`);
  console.log(`sampled in the Worker's isolate, not idle: ${(activeUs / 1000 / requests).toFixed(2)} ms per request`);
  console.log(`\nself time, per request\n${table(self)}`);
  console.log(`\ninclusive time, per request\n${table(inclusive)}`);
  console.log(`\nprofile: ${path.relative(ROOT, file)}`);
} finally {
  await hub.stop();
}

/** The DevTools protocol over wrangler's inspector proxy (it wants a local Origin). */
async function connectInspector(port) {
  const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
  const target = targets[0];
  if (!target) throw new Error("the inspector lists no target");
  const socket = new WebSocket(target.webSocketDebuggerUrl, { headers: { origin: `http://localhost:${port}` } });
  await new Promise((resolve, reject) => {
    socket.onopen = resolve;
    socket.onerror = () => reject(new Error(`could not connect to the inspector at ${target.webSocketDebuggerUrl}`));
  });
  let id = 0;
  const pending = new Map();
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const settle = pending.get(message.id);
    if (!settle) return;
    pending.delete(message.id);
    if (message.error) settle.reject(new Error(`${message.error.message} (${message.error.code})`));
    else settle.resolve(message.result);
  };
  return {
    send: (method, params = {}) =>
      new Promise((resolve, reject) => {
        id += 1;
        pending.set(id, { resolve, reject });
        socket.send(JSON.stringify({ id, method, params }));
      }),
    close: () => socket.close(),
  };
}

/** Self and inclusive microseconds per function (name, file, line), idle excluded. */
function summarise(profile) {
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const label = (node) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || "(anonymous)"}${url ? ` ${url.split("/").slice(-2).join("/")}:${lineNumber + 1}` : ""}`;
  };
  const timeByNode = new Map();
  for (const [i, sample] of profile.samples.entries()) {
    timeByNode.set(sample, (timeByNode.get(sample) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const self = new Map();
  const inclusive = new Map();
  let activeUs = 0;
  for (const [nodeId, us] of timeByNode) {
    const node = nodes.get(nodeId);
    if (node.callFrame.functionName === "(idle)") continue;
    activeUs += us;
    self.set(label(node), (self.get(label(node)) ?? 0) + us);
    const seen = new Set();
    for (let at = nodeId; at !== undefined; at = parents.get(at)) {
      const name = label(nodes.get(at));
      if (name === "(root)" || seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + us);
    }
  }
  const sorted = (map) => [...map].sort((a, b) => b[1] - a[1]);
  return { self: sorted(self), inclusive: sorted(inclusive), activeUs };
}
