/** A network as the hub knows it: who it is, how it authenticates, how its GET postbacks map. */
import type { AppleReceiver } from "./apple-receiver";

/** Lowercase letters, digits, `_` and `-`, 2 to 63 long: never a `:` or a `~`, so conversion objects' names split back. */
export const NETWORK_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{1,62}$/;

export const AUTH_METHODS = ["standard_webhooks", "token", "signed_query"] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];

export interface NetworkAuthConfig {
  /** A request must pass one of these (the one whose credentials it carries). */
  methods: AuthMethod[];
  /** When not empty, the client address (CF-Connecting-IP) must also be in one of these ranges. */
  ip_allowlist: string[];
}

/** A fixed answer for senders that expect one (e.g. `OK`); JSON when absent. */
export interface NetworkAnswer {
  content_type: "text/plain" | "text/html" | "application/json" | "application/xml";
  body: string;
}

/**
 * Identifiers a network can have the hub keep only as keyed hashes (lib/identifier-hash.ts): hashed
 * at ingest, before the conversion's object sees them, so the raw value is stored nowhere.
 */
export const HASHABLE_IDENTIFIERS = ["user_id", "device_id"] as const;
export type HashableIdentifier = (typeof HASHABLE_IDENTIFIERS)[number];

export interface Network {
  id: string;
  name: string;
  status: "active" | "disabled";
  auth: NetworkAuthConfig;
  /** The stored mapping as configured (validated by its schema when saved); null: the generic preset. */
  mapping: Record<string, unknown> | null;
  answer: NetworkAnswer | null;
  test_mode: boolean;
  /** Which of the postback's identifiers are stored as keyed hashes; empty: stored as sent. */
  hash_identifiers: HashableIdentifier[];
  /** Receives Apple's SKAdNetwork and AdAttributionKit postbacks; null: it does not. */
  apple: AppleReceiver | null;
  created_at: string;
  updated_at: string;
}

export const DEFAULT_AUTH: NetworkAuthConfig = { methods: ["standard_webhooks"], ip_allowlist: [] };

export type CredentialKind = "signing" | "token";
