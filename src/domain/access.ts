/**
 * Who may call what (docs/access.md): the scopes an API key carries, and the principal a request
 * authenticated as. `admin` may do everything; `operator` everything but API keys and credentials
 * (the routes that issue or rotate a secret or token); `read-only` every read; a `network` key its
 * own network's conversions, inbound log and explain; a `partner` key its own deliveries and replays.
 */
import { z } from "zod";

export const SCOPES = ["admin", "operator", "read-only", "network", "partner"] as const;
export const ScopeSchema = z.enum(SCOPES);
export type Scope = z.infer<typeof ScopeSchema>;

/** The scopes that reach one network or one partner only: the key names it (`subject_id`). */
export type SubjectScope = Extract<Scope, "network" | "partner">;

export function isSubjectScope(scope: Scope): scope is SubjectScope {
  return scope === "network" || scope === "partner";
}

/** The key id the bootstrap ADMIN_TOKEN acts as, in the audit log and in sessions. */
export const ADMIN_TOKEN_KEY_ID = "admin_token";

/** Who a request authenticated as. */
export interface Principal {
  key_id: string;
  name: string;
  scope: Scope;
  /** The network or partner id of a network or partner key; null for the others. */
  subject_id: string | null;
  /** When the key's value last changed (its creation, or its rotation), ms: older sessions end. */
  issued_at_ms: number;
}

/** The prefix of every API key's value, so a leaked one is recognisable (secret scanners). */
export const API_KEY_PREFIX = "phk_";
