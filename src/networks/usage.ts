/**
 * Rotation telemetry: when each network credential was last used, so an operator sees who still
 * uses an old secret or token before it expires. Recorded after the answer (waitUntil), at most
 * once a minute per credential and isolate, so it costs the hot path nothing.
 */

import { logLine } from "../lib/log";
import { UseThrottle } from "../lib/use-throttle";
import type { D1 } from "../storage/d1";
import { touchSecrets } from "../storage/networks";

const uses = new UseThrottle(60_000);

export function noteCredentialUse(
  db: D1,
  credentialId: string,
  nowMs: number,
  waitUntil: (promise: Promise<unknown>) => void,
): void {
  if (!credentialId) return;
  if (!uses.due(credentialId, nowMs)) return;
  waitUntil(
    touchSecrets(db, [{ id: credentialId, at: new Date(nowMs).toISOString() }]).catch((error: unknown) => {
      uses.forget(credentialId);
      logLine("warn", { message: "could not record credential use", error: String(error) });
    }),
  );
}
