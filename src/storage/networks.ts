/** SQL for networks and their credentials (signing secrets and tokens, both encrypted). */

import type { AppleReceiver } from "../domain/apple-receiver";
import {
  type CredentialKind,
  HASHABLE_IDENTIFIERS,
  type HashableIdentifier,
  type Network,
  type NetworkAnswer,
  type NetworkAuthConfig,
} from "../domain/network";
import type { D1 } from "./d1";

interface NetworkRow {
  id: string;
  name: string;
  status: "active" | "disabled";
  auth: string;
  mapping: string | null;
  answer: string | null;
  test_mode: number;
  /** JSON array of HASHABLE_IDENTIFIERS (migration 0007). */
  hash_identifiers: string;
  /** JSON AppleReceiver, or NULL (migration 0019). */
  apple: string | null;
  created_at: string;
  updated_at: string;
}

export interface SecretRow {
  id: string;
  network_id: string;
  kind: CredentialKind;
  ciphertext: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
}

export type NewSecret = Pick<SecretRow, "id" | "network_id" | "kind" | "ciphertext" | "created_at">;
export type SecretMetadata = Pick<SecretRow, "id" | "kind" | "created_at" | "expires_at" | "last_used_at">;

function toNetwork(row: NetworkRow): Network {
  return {
    id: row.id,
    name: row.name,
    status: row.status,
    auth: JSON.parse(row.auth) as NetworkAuthConfig,
    mapping: row.mapping ? (JSON.parse(row.mapping) as Record<string, unknown>) : null,
    answer: row.answer ? (JSON.parse(row.answer) as NetworkAnswer) : null,
    test_mode: row.test_mode === 1,
    hash_identifiers: hashedFields(row.hash_identifiers),
    apple: row.apple ? (JSON.parse(row.apple) as AppleReceiver) : null,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Only the known names, in their canonical order, whatever the column holds. */
function hashedFields(column: string | null | undefined): HashableIdentifier[] {
  let stored: unknown = [];
  try {
    stored = JSON.parse(column ?? "[]");
  } catch {
    stored = [];
  }
  const names = Array.isArray(stored) ? stored : [];
  return HASHABLE_IDENTIFIERS.filter((field) => names.includes(field));
}

function insertSecretStatement(db: D1, secret: NewSecret): D1PreparedStatement {
  return db
    .prepare("INSERT INTO network_secrets (id, network_id, kind, ciphertext, created_at) VALUES (?, ?, ?, ?, ?)")
    .bind(secret.id, secret.network_id, secret.kind, secret.ciphertext, secret.created_at);
}

/**
 * The ad network ids a network receives Apple's postbacks for, replaced: one row per id, whose
 * primary key keeps an id to one network (the batch fails on an id another network holds).
 */
function adNetworkIdStatements(db: D1, network: Network): D1PreparedStatement[] {
  return [
    db.prepare("DELETE FROM apple_ad_networks WHERE network_id = ?").bind(network.id),
    ...(network.apple?.ad_network_ids ?? []).map((adNetworkId) =>
      db
        .prepare("INSERT INTO apple_ad_networks (ad_network_id, network_id) VALUES (?, ?)")
        .bind(adNetworkId, network.id),
    ),
  ];
}

/** The write lost a race for an ad network id to another network (its check passed, then the id was taken). */
export function isAdNetworkIdConflict(error: unknown): boolean {
  return String(error).includes("UNIQUE constraint failed: apple_ad_networks");
}

/** Which of `adNetworkIds` another network than `networkId` holds already. */
export async function adNetworkIdsTaken(
  db: D1,
  networkId: string,
  adNetworkIds: readonly string[],
): Promise<{ ad_network_id: string; network_id: string }[]> {
  if (adNetworkIds.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT ad_network_id, network_id FROM apple_ad_networks
       WHERE network_id != ? AND ad_network_id IN (SELECT value FROM json_each(?))`,
    )
    .bind(networkId, JSON.stringify(adNetworkIds))
    .all<{ ad_network_id: string; network_id: string }>();
  return results;
}

/** The network that receives Apple's postbacks for `adNetworkId`, or null. */
export async function networkIdOfAdNetwork(db: D1, adNetworkId: string): Promise<string | null> {
  const row = await db
    .prepare("SELECT network_id FROM apple_ad_networks WHERE ad_network_id = ?")
    .bind(adNetworkId)
    .first<{ network_id: string }>();
  return row?.network_id ?? null;
}

/** Inserts a network with its first credentials; false when the id is taken. */
export async function insertNetwork(db: D1, network: Network, secrets: NewSecret[]): Promise<boolean> {
  try {
    await db.batch([
      db
        .prepare(
          `INSERT INTO networks (id, name, status, auth, mapping, answer, test_mode, hash_identifiers, apple, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .bind(
          network.id,
          network.name,
          network.status,
          JSON.stringify(network.auth),
          network.mapping ? JSON.stringify(network.mapping) : null,
          network.answer ? JSON.stringify(network.answer) : null,
          network.test_mode ? 1 : 0,
          JSON.stringify(network.hash_identifiers),
          network.apple ? JSON.stringify(network.apple) : null,
          network.created_at,
          network.updated_at,
        ),
      ...secrets.map((secret) => insertSecretStatement(db, secret)),
      ...adNetworkIdStatements(db, network),
    ]);
    return true;
  } catch (error) {
    if (String(error).includes("UNIQUE constraint failed") && !isAdNetworkIdConflict(error)) return false;
    throw error;
  }
}

/** Writes the mutable fields; `secrets` are added in the same batch (a first token, say). */
export async function updateNetwork(db: D1, network: Network, secrets: NewSecret[] = []): Promise<void> {
  await db.batch([
    db
      .prepare(
        "UPDATE networks SET name = ?, auth = ?, mapping = ?, answer = ?, test_mode = ?, hash_identifiers = ?, apple = ?, updated_at = ? WHERE id = ?",
      )
      .bind(
        network.name,
        JSON.stringify(network.auth),
        network.mapping ? JSON.stringify(network.mapping) : null,
        network.answer ? JSON.stringify(network.answer) : null,
        network.test_mode ? 1 : 0,
        JSON.stringify(network.hash_identifiers),
        network.apple ? JSON.stringify(network.apple) : null,
        network.updated_at,
        network.id,
      ),
    ...secrets.map((secret) => insertSecretStatement(db, secret)),
    ...adNetworkIdStatements(db, network),
  ]);
}

export async function getNetwork(db: D1, id: string): Promise<Network | null> {
  const row = await db.prepare("SELECT * FROM networks WHERE id = ?").bind(id).first<NetworkRow>();
  return row ? toNetwork(row) : null;
}

export async function listNetworks(db: D1, limit: number, afterId: string | null): Promise<Network[]> {
  const { results } = await db
    .prepare("SELECT * FROM networks WHERE (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2")
    .bind(afterId, limit)
    .all<NetworkRow>();
  return results.map(toNetwork);
}

export async function setNetworkStatus(
  db: D1,
  id: string,
  status: Network["status"],
  now: string,
): Promise<Network | null> {
  const row = await db
    .prepare("UPDATE networks SET status = ?, updated_at = ? WHERE id = ? RETURNING *")
    .bind(status, now, id)
    .first<NetworkRow>();
  return row ? toNetwork(row) : null;
}

/** Credentials that still verify at `now`, newest first. */
export async function activeSecrets(db: D1, networkId: string, now: string): Promise<SecretRow[]> {
  const { results } = await db
    .prepare(
      "SELECT * FROM network_secrets WHERE network_id = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id DESC",
    )
    .bind(networkId, now)
    .all<SecretRow>();
  return results;
}

export async function listSecretMetadata(db: D1, networkId: string, now: string): Promise<SecretMetadata[]> {
  const { results } = await db
    .prepare(
      `SELECT id, kind, created_at, expires_at, last_used_at FROM network_secrets
       WHERE network_id = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id DESC`,
    )
    .bind(networkId, now)
    .all<SecretMetadata>();
  return results;
}

/**
 * Adds a new current credential of its kind and starts the grace period of the ones of that kind
 * it replaces (one already expiring keeps its earlier end).
 */
export async function rotateSecret(db: D1, secret: NewSecret, graceEndsAt: string): Promise<void> {
  await db.batch([
    db
      .prepare(
        `UPDATE network_secrets SET expires_at = ?
         WHERE network_id = ? AND kind = ? AND (expires_at IS NULL OR expires_at > ?)`,
      )
      .bind(graceEndsAt, secret.network_id, secret.kind, graceEndsAt),
    insertSecretStatement(db, secret),
  ]);
}

/** Rotation telemetry: when each credential was last used (only ever moves forward). */
export async function touchSecrets(db: D1, uses: readonly { id: string; at: string }[]): Promise<void> {
  if (uses.length === 0) return;
  await db.batch(
    uses.map((use) =>
      db
        .prepare(
          "UPDATE network_secrets SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
        )
        .bind(use.at, use.id),
    ),
  );
}
