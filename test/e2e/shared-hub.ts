/**
 * The hub most e2e files share: one real `wrangler dev`, started once per run by
 * ./shared-hub.global-setup.ts, which each file reaches over HTTP as it would its own. A file on it
 * scopes everything it makes with ids of its own (networks, partners, transactions), and filters
 * each partner to its own networks, since the files before it used the same hub. A file that
 * kills or restarts its hub, sets vars, or counts something hub-wide starts its own with
 * startWranglerDev() (see ./README.md).
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { inject } from "vitest";
import type { WranglerDev } from "./wrangler-dev";

export interface SharedHubInfo {
  baseUrl: string;
  adminToken: string;
  /** Where the global setup writes everything the shared wrangler dev prints. */
  logFile: string;
}

declare module "vitest" {
  interface ProvidedContext {
    sharedHub: SharedHubInfo;
  }
}

/** What a file may do with the shared hub: talk to it and read its output; stopping it is the run's job. */
export type SharedHub = Pick<WranglerDev, "baseUrl" | "adminToken" | "log">;

/**
 * The shared hub, for a file's beforeAll. `log()` answers what wrangler printed since this call
 * (the earlier files' output is theirs), for the context of a failure.
 */
export function sharedHub(): SharedHub {
  const info = inject("sharedHub");
  if (info === undefined) {
    throw new Error("no shared hub: run e2e files with vitest.e2e.config.ts, whose globalSetup starts it");
  }
  const from = statSync(info.logFile).size;
  return {
    baseUrl: info.baseUrl,
    adminToken: info.adminToken,
    log: () => readFrom(info.logFile, from),
  };
}

function readFrom(file: string, offset: number): string {
  const length = statSync(file).size - offset;
  if (length <= 0) return "";
  const buffer = Buffer.alloc(length);
  const fd = openSync(file, "r");
  try {
    readSync(fd, buffer, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return buffer.toString("utf8");
}
