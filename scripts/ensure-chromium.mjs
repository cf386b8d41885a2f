#!/usr/bin/env node
// Makes sure Debian's Chromium is installed at /usr/bin/chromium, for the tests that look at /docs
// in a real browser (test/e2e/docs.browser.e2e.test.ts, through playwright-core, which downloads
// no browser of its own). On a machine without it, installs it with apt-get (CI runs as root).
// `node scripts/ensure-chromium.mjs`; exits 0 when Chromium is there, 1 when it could not be installed.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { pathToFileURL } from "node:url";

export const CHROMIUM = "/usr/bin/chromium";

export function ensureChromium() {
  if (existsSync(CHROMIUM)) return CHROMIUM;
  console.log(`• ${CHROMIUM} is missing: installing Debian's chromium with apt-get`);
  const apt = (args) => {
    const result = spawnSync("apt-get", args, {
      stdio: "inherit",
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
    });
    if (result.error) throw new Error(`apt-get ${args.join(" ")}: ${result.error.message}`);
    return result.status === 0;
  };
  if (!apt(["install", "-y", "--no-install-recommends", "chromium"])) {
    // A fresh machine has no package lists yet.
    if (!apt(["update"]) || !apt(["install", "-y", "--no-install-recommends", "chromium"])) {
      throw new Error("apt-get could not install chromium (as root, with Debian's package lists)");
    }
  }
  if (!existsSync(CHROMIUM)) throw new Error(`apt-get installed chromium, but ${CHROMIUM} is still missing`);
  return CHROMIUM;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  try {
    ensureChromium();
  } catch (error) {
    console.error(`✗ ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
