/**
 * vitest.e2e.config.ts's globalSetup: one real `wrangler dev` (startWranglerDev, the same as a
 * file's own) for every e2e file that needs no process of its own (see sharedHub() in
 * ./shared-hub.ts). Its output goes to a log file the files read, since they run in other processes.
 */
import { appendFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import type { SharedHubInfo } from "./shared-hub";
import { startWranglerDev, type WranglerDev } from "./wrangler-dev";

let hub: WranglerDev | undefined;
let logDir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  logDir = await mkdtemp(path.join(tmpdir(), "postback-hub-e2e-shared-log-"));
  const logFile = path.join(logDir, "wrangler.log");
  writeFileSync(logFile, "");
  hub = await startWranglerDev({ label: "e2e-shared" });
  appendFileSync(logFile, hub.log());
  hub.onOutput((text) => appendFileSync(logFile, text));
  const info: SharedHubInfo = { baseUrl: hub.baseUrl, adminToken: hub.adminToken, logFile };
  project.provide("sharedHub", info);
}

export async function teardown(): Promise<void> {
  await hub?.stop();
  if (logDir) await rm(logDir, { recursive: true, force: true });
}
