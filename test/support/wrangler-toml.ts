/**
 * The parts of `wrangler.toml` the documentation checks compare with: vars, required secrets and
 * binding names, per environment. A line reader for this file's own simple shape (one `key = value`
 * per line, strings in double quotes), not a TOML parser. No imports, so that
 * `scripts/docs-tables.mjs` can load it in Node too.
 */

export interface TomlSection {
  /** `vars`, `env.production.vars`, `queues.producers`, … */
  name: string;
  /** `[[array]]` rather than `[table]`. */
  array: boolean;
  entries: [string, string][];
}

function value(raw: string): string {
  const text = raw.replace(/\s+#.*$/, "").trim();
  const quoted = /^"((?:[^"\\]|\\.)*)"$/.exec(text);
  return quoted?.[1] !== undefined ? quoted[1].replace(/\\(.)/g, "$1") : text;
}

export function sections(toml: string): TomlSection[] {
  const found: TomlSection[] = [{ name: "", array: false, entries: [] }];
  for (const line of toml.split("\n")) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) continue;
    const header = /^(\[\[?)([A-Za-z0-9_.-]+)\]\]?$/.exec(trimmed);
    if (header?.[2]) {
      found.push({ name: header[2], array: header[1] === "[[", entries: [] });
      continue;
    }
    const entry = /^([A-Za-z0-9_]+)\s*=\s*(.*)$/.exec(trimmed);
    const current = found[found.length - 1];
    if (entry?.[1] && entry[2] !== undefined && current) current.entries.push([entry[1], value(entry[2])]);
  }
  return found;
}

/** `[vars]` (`env` undefined) or `[env.<env>.vars]`, in file order. */
export function vars(toml: string, env?: string): [string, string][] {
  const name = env === undefined ? "vars" : `env.${env}.vars`;
  return sections(toml).find((section) => section.name === name)?.entries ?? [];
}

/** The names in `[secrets] required` (or the environment's). */
export function requiredSecrets(toml: string, env?: string): string[] {
  const name = env === undefined ? "secrets" : `env.${env}.secrets`;
  const required = sections(toml)
    .find((section) => section.name === name)
    ?.entries.find(([key]) => key === "required")?.[1];
  return [...(required ?? "").matchAll(/"([^"]+)"/g)].map((match) => match[1] ?? "");
}

/** The binding names the top-level Worker (or an environment) declares, in file order. */
export function bindingNames(toml: string, env?: string): string[] {
  const prefix = env === undefined ? "" : `env.${env}.`;
  const keyOf: Record<string, string> = {
    d1_databases: "binding",
    "durable_objects.bindings": "name",
    "queues.producers": "binding",
    ratelimits: "name",
    r2_buckets: "binding",
  };
  const names: string[] = [];
  for (const section of sections(toml)) {
    if (!section.name.startsWith(prefix)) continue;
    const key = keyOf[section.name.slice(prefix.length)];
    if (env === undefined && section.name.startsWith("env.")) continue;
    const name = key === undefined ? undefined : section.entries.find(([k]) => k === key)?.[1];
    if (name) names.push(name);
  }
  return names;
}
