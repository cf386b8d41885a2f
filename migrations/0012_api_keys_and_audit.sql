-- Access for more than one person (docs/access.md): API keys with scopes, and the audit log of
-- every admin action. ADMIN_TOKEN stays the bootstrap admin credential and has no row here.

-- A key's value is shown once; only its HMAC (under a key derived from ENCRYPTION_KEY, purpose
-- "api-key v1") is kept, so a copy of the database authenticates nobody. `scope`: admin, operator
-- (everything but keys and credentials), read-only, network or partner (then `subject_id` names the
-- network or the partner it may see). A rotation replaces the hash; the previous one may keep
-- working until `previous_expires_at`. `rotated_at` also ends the console sessions signed in before it.
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  scope TEXT NOT NULL CHECK (scope IN ('admin', 'operator', 'read-only', 'network', 'partner')),
  subject_id TEXT,
  secret_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  previous_secret_hash TEXT,
  previous_expires_at TEXT,
  created_at TEXT NOT NULL,
  created_by TEXT NOT NULL,
  expires_at TEXT,
  disabled_at TEXT,
  rotated_at TEXT,
  last_used_at TEXT,
  CHECK ((scope IN ('network', 'partner')) = (subject_id IS NOT NULL))
);
CREATE INDEX api_keys_previous_hash ON api_keys (previous_secret_hash) WHERE previous_secret_hash IS NOT NULL;

-- One row per admin action that changed something (create, update, rotate, disable, replay,
-- erase…): who (the key, or "admin_token"), what (`action`: the operation's id, or the console's
-- action), on what (`target`: the path's ids as JSON), the answer's status and the request id.
-- Never a body: bodies carry credentials and personal data.
CREATE TABLE audit_log (
  id TEXT PRIMARY KEY,
  at TEXT NOT NULL,
  key_id TEXT NOT NULL,
  key_name TEXT NOT NULL,
  scope TEXT NOT NULL,
  action TEXT NOT NULL,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  target TEXT NOT NULL DEFAULT '{}',
  status INTEGER NOT NULL,
  request_id TEXT NOT NULL,
  via TEXT NOT NULL CHECK (via IN ('api', 'console'))
);
CREATE INDEX audit_log_key ON audit_log (key_id, id);
CREATE INDEX audit_log_action ON audit_log (action, id);
