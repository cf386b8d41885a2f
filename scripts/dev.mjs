#!/usr/bin/env node
// `npm run dev`: everything a fresh clone needs, then `wrangler dev` on http://127.0.0.1:8787.
// 1. creates .dev.vars from .dev.vars.example when missing (dev-only admin token and key), and puts
//    the /docs page's bundle in place (scripts/docs-assets.mjs);
// 2. applies the D1 migrations to the local database;
// 3. starts wrangler dev with local D1, Durable Objects and Queues. Extra arguments are passed on;
// 4. runs the 15-minute cron (alerts sent again, the sweep of stranded deliveries) once the hub
//    answers and every 15 minutes, as the deployed trigger would: wrangler dev never runs crons, and
//    its queues live in memory, so after a crash the sweep is what brings lost deliveries back.
import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const wrangler = path.join(root, "node_modules", ".bin", "wrangler");
const args = process.argv.slice(2);
const persistIndex = args.indexOf("--persist-to");
const persist = persistIndex >= 0 ? ["--persist-to", args[persistIndex + 1]] : [];

const devVars = path.join(root, ".dev.vars");
const example = path.join(root, ".dev.vars.example");
if (!existsSync(devVars)) {
  copyFileSync(example, devVars);
  console.log("• created .dev.vars from .dev.vars.example (dev-only admin token and encryption key)");
} else {
  // A .dev.vars made before a setting existed gets that setting, so a pull never breaks `npm run dev`.
  const keysOf = (text) => new Set([...text.matchAll(/^([A-Z0-9_]+)=/gm)].map((m) => m[1]));
  const current = readFileSync(devVars, "utf8");
  const have = keysOf(current);
  const missing = readFileSync(example, "utf8")
    .split("\n")
    .filter((line) => /^[A-Z0-9_]+=/.test(line) && !have.has(line.split("=")[0]));
  if (missing.length > 0) {
    appendFileSync(devVars, `${current.endsWith("\n") ? "" : "\n"}${missing.join("\n")}\n`);
    console.log(`• added to .dev.vars from .dev.vars.example: ${missing.map((l) => l.split("=")[0]).join(", ")}`);
  }
}

// /docs's browser bundle, in wrangler.toml's [assets] directory (npm install put it there; this keeps it current).
const assets = spawnSync(process.execPath, [path.join(root, "scripts", "docs-assets.mjs")], { stdio: "inherit" });
if (assets.status !== 0) process.exit(assets.status ?? 1);

console.log("• applying D1 migrations to the local database");
const migrate = spawnSync(wrangler, ["d1", "migrations", "apply", "DB", "--local", ...persist], {
  cwd: root,
  stdio: "inherit",
  env: { ...process.env, CI: "true" },
});
if (migrate.status !== 0) {
  console.error("✗ applying the local migrations failed; see above");
  process.exit(migrate.status ?? 1);
}

const hasPort = args.includes("--port");
const hasIp = args.includes("--ip");
const devArgs = ["dev", ...(hasIp ? [] : ["--ip", "127.0.0.1"]), ...(hasPort ? [] : ["--port", "8787"]), ...args];
console.log(`• starting wrangler ${devArgs.join(" ")}`);
const dev = spawn(wrangler, devArgs, { cwd: root, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => dev.kill(signal));
dev.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

const CRON = "*/15 * * * *";
const CRON_EVERY_MS = 15 * 60_000;
const optionOf = (name, fallback) => (args.includes(name) ? args[args.indexOf(name) + 1] : fallback);
const host = optionOf("--ip", "127.0.0.1");
const origin = `http://${host === "0.0.0.0" ? "127.0.0.1" : host}:${optionOf("--port", "8787")}`;

async function runCron() {
  try {
    const response = await fetch(`${origin}/cdn-cgi/local/scheduled?cron=${encodeURIComponent(CRON)}`);
    if (!response.ok) console.warn(`• the "${CRON}" cron answered ${response.status}: ${await response.text()}`);
  } catch (error) {
    console.warn(`• could not run the "${CRON}" cron: ${error}`);
  }
}

async function whenHealthy() {
  for (;;) {
    try {
      if ((await fetch(`${origin}/health`)).ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

whenHealthy().then(() => {
  console.log(`• running the "${CRON}" cron now and every 15 minutes (wrangler dev does not run crons)`);
  runCron();
  setInterval(runCron, CRON_EVERY_MS).unref();
});
