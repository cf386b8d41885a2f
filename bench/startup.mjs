#!/usr/bin/env node
// `npm run bench:startup`: how long a fresh workerd takes to answer its first request with the hub's
// bundle, against a trivial Worker in the same run. The bundle is what `wrangler deploy` uploads
// (`wrangler deploy --dry-run --env= --outdir`, built from this tree unless `--bundle` names one);
// workerd (node_modules/.bin/workerd, the one wrangler runs) serves it straight from a Cap'n Proto
// configuration, with the hub's vars and two test secrets as text bindings and no other binding, so
// nothing of wrangler or Miniflare is timed. Each run spawns workerd, connects until its socket
// accepts (listen), then sends `GET /v1/conversions` (the hub: the router, its vars parsed, the
// admin guard, a 401 problem+json; the baseline: a 200), and reads workerd's CPU time from /proc
// right after the answer. workerd listens before it runs a script's top level (a Worker whose top
// level spins for a second listens in ~50 ms and answers after the second), so the first request
// holds the script's start-up: its module evaluation and what it defers to a first request.
// Subjects alternate run by run, after one warm-up round that is not counted.
//   --runs N (default 15)   --bundle name=path/to/index.js (repeatable: e.g. a bundle of another commit)
import { execFile, execFileSync, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";
import { parse } from "smol-toml";
import { startupRows, workerdConfig } from "./lib/startup.mjs";
import { fmt, printTable } from "./lib/table.mjs";
import { freePort, ROOT, sleep } from "./lib/wrangler.mjs";

const args = process.argv.slice(2);
const option = (name) => args.flatMap((arg, i) => (arg === `--${name}` ? [args[i + 1]] : []));
const RUNS = Number(option("runs")[0] ?? process.env.BENCH_STARTUP_RUNS ?? 15);
const WORKERD = path.join(ROOT, "node_modules/.bin/workerd");
const PATH_ASKED = "/v1/conversions";
const BASELINE = 'export default { fetch() { return new Response("ok"); } };\n';

const hubToml = parse(await readFile(path.join(ROOT, "wrangler.toml"), "utf8"));
const bindings = {
  ...hubToml.vars,
  ADMIN_TOKEN: "bench-startup-admin-token-0123456789",
  ENCRYPTION_KEY: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
};
const work = await mkdtemp(path.join(os.tmpdir(), "bench-startup-"));

async function buildBundle() {
  const outdir = path.join(work, "build");
  await promisify(execFile)(
    path.join(ROOT, "node_modules/.bin/wrangler"),
    ["deploy", "--dry-run", "--env=", "--outdir", outdir],
    { cwd: ROOT, env: { ...process.env, CI: "true" }, maxBuffer: 16 * 1024 * 1024 },
  );
  return path.join(outdir, "index.js");
}

async function subject(name, source, { expectStatus }) {
  const dir = path.join(work, name);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, "index.js"), source);
  const bytes = Buffer.byteLength(source);
  return { name, dir, expectStatus, kib: bytes / 1024, gzipKib: gzipSync(source).length / 1024 };
}

async function untilListening(port, deadlineMs) {
  while (performance.now() < deadlineMs) {
    const ok = await new Promise((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => resolve(socket.end() && true));
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    await sleep(2);
  }
  throw new Error(`workerd did not listen on ${port}`);
}

async function runOnce(s) {
  const port = await freePort();
  const compatibilityFlags = hubToml.compatibility_flags ?? [];
  const config = workerdConfig({
    modules: ["index.js"],
    port,
    bindings,
    compatibilityDate: hubToml.compatibility_date,
    compatibilityFlags,
  });
  await writeFile(path.join(s.dir, "config.capnp"), config);
  const started = performance.now();
  const child = spawn(WORKERD, ["serve", "config.capnp"], { cwd: s.dir, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  try {
    await untilListening(port, started + 30_000);
    const listenMs = performance.now() - started;
    const response = await fetch(`http://127.0.0.1:${port}${PATH_ASKED}`);
    await response.arrayBuffer();
    const answerMs = performance.now() - started;
    const cpuMs = cpuMsOf(child.pid);
    if (response.status !== s.expectStatus) {
      throw new Error(`${s.name}: ${PATH_ASKED} answered ${response.status}, not ${s.expectStatus}\n${stderr}`);
    }
    return { subject: s.name, listenMs, answerMs, firstRequestMs: answerMs - listenMs, cpuMs };
  } finally {
    child.kill("SIGKILL");
    await exited;
  }
}

let ticksPerSecond;

/** CPU time (user + system, ms) process `pid` has used, from /proc/<pid>/stat; NaN off Linux. */
function cpuMsOf(pid) {
  if (process.platform !== "linux") return Number.NaN;
  ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

try {
  const bundles = option("bundle").map((spec) => spec.split("="));
  if (!bundles.some(([name]) => name === "hub")) bundles.unshift(["hub", await buildBundle()]);
  const subjects = [await subject("baseline", BASELINE, { expectStatus: 200 })];
  for (const [name, file] of bundles)
    subjects.push(await subject(name, await readFile(file, "utf8"), { expectStatus: 401 }));

  const runs = [];
  for (let round = 0; round <= RUNS; round++) {
    // Alternate the order each round, so neither side always follows the other.
    const order = round % 2 ? [...subjects].reverse() : subjects;
    for (const s of order) {
      const run = await runOnce(s);
      if (round > 0) runs.push(run);
    }
  }
  const rows = startupRows(runs);
  const sizes = Object.fromEntries(subjects.map((s) => [s.name, s]));
  console.log(
    `\nworkerd start-up, ${RUNS} fresh processes per subject, alternating (${os.cpus().length} CPUs, Node ${process.version}); medians:\n`,
  );
  printTable(
    [
      { header: "subject", cell: (r) => r.subject },
      { header: "bundle KiB", cell: (r) => fmt(sizes[r.subject].kib, 1) },
      { header: "gzip KiB", cell: (r) => fmt(sizes[r.subject].gzipKib, 1) },
      { header: "listen ms", cell: (r) => fmt(r.listenMs, 1) },
      { header: "1st answer ms", cell: (r) => fmt(r.answerMs, 1) },
      { header: "p90", cell: (r) => fmt(r.answerP90Ms, 1) },
      { header: "1st request ms", cell: (r) => fmt(r.firstRequestMs, 1) },
      { header: "workerd CPU ms", cell: (r) => fmt(r.cpuMs, 0) },
      { header: "÷ baseline", cell: (r) => fmt(r.ratio, 2) },
      { header: "− baseline ms", cell: (r) => fmt(r.overBaselineMs, 1) },
      { header: "CPU − baseline ms", cell: (r) => fmt(r.cpuOverBaselineMs, 0) },
    ],
    rows,
  );
  const results = path.join(ROOT, "bench/results");
  await mkdir(results, { recursive: true });
  const file = path.join(results, `startup-${new Date().toISOString().replaceAll(":", "-")}.json`);
  await writeFile(file, JSON.stringify({ runs: RUNS, path: PATH_ASKED, sizes, rows, raw: runs }, null, 2));
  console.log(`\n${path.relative(ROOT, file)}`);
} finally {
  await rm(work, { recursive: true, force: true });
}
