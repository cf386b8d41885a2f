/**
 * What the network routes and the console both do to a network: issue a credential, disable or
 * enable it, rotate its signing secret or static token. One copy for both front ends.
 */
import { configOf } from "../config";
import type { CredentialKind, Network } from "../domain/network";
import { ProblemError } from "../errors";
import { graceEndsAt, issueCredential } from "../lib/credentials";
import { invalidateNetwork } from "../networks/network-cache";
import { getNetwork, type NewSecret, rotateSecret, setNetworkStatus } from "../storage/networks";

export function networkNotFound(id: string): ProblemError {
  return new ProblemError("not_found", `No network "${id}".`, [{ location: "path.network_id", message: "not found" }]);
}

export async function newNetworkCredential(env: Env, networkId: string, kind: CredentialKind, now: string) {
  const issued = await issueCredential(
    configOf(env).ENCRYPTION_KEY,
    kind === "signing" ? "network-signing" : "network-token",
  );
  const row: NewSecret = { id: issued.id, network_id: networkId, kind, ciphertext: issued.ciphertext, created_at: now };
  return { value: issued.value, row };
}

/** Disables (its postbacks get 403) or enables a network; the network after. */
export async function setNetworkStatusNow(env: Env, networkId: string, status: Network["status"]): Promise<Network> {
  const network = await setNetworkStatus(env.DB, networkId, status, new Date().toISOString());
  if (!network) throw networkNotFound(networkId);
  invalidateNetwork(networkId);
  return network;
}

/** Issues a new signing secret or token (its value returned once); the older ones work for the grace period. */
export async function rotateNetworkCredential(
  env: Env,
  networkId: string,
  graceSeconds: number | undefined,
  kind: CredentialKind,
): Promise<{ id: string; value: string; endsAt: string }> {
  if (!(await getNetwork(env.DB, networkId))) throw networkNotFound(networkId);
  const nowMs = Date.now();
  const endsAt = graceEndsAt(nowMs, graceSeconds, configOf(env).SECRET_GRACE_PERIOD_SECONDS);
  const { value, row } = await newNetworkCredential(env, networkId, kind, new Date(nowMs).toISOString());
  await rotateSecret(env.DB, row, endsAt);
  invalidateNetwork(networkId);
  return { id: row.id, value, endsAt };
}
