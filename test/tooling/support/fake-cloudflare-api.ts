/**
 * A stand-in for the part of the Cloudflare API that `wrangler deploy`, `wrangler secret put`,
 * `wrangler queues`, `wrangler r2 bucket` and `wrangler d1` call, on 127.0.0.1, for one empty account: wrangler talks to
 * it through CLOUDFLARE_API_BASE_URL, so the deploy script can be run end to end without an
 * account. It keeps the account's state (Workers and their bindings, secrets, queues and their
 * consumers, R2 buckets (names only), D1 databases backed by node:sqlite so migrations really apply) and logs every call.
 * Static assets go through the upload session wrangler opens before the Worker upload: the fake
 * keeps every file's hash it has been sent, asks only for the new ones, and attaches the session's
 * manifest to the Worker whose upload presents the completion token.
 * Modelled on what wrangler 4.164 sends; an endpoint it does not know answers 404 and is logged, so
 * a newer wrangler that calls something new fails a test loudly instead of passing by accident.
 */
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { DatabaseSync } from "node:sqlite";

interface Database {
  uuid: string;
  name: string;
  sqlite: DatabaseSync;
}

interface Queue {
  queue_id: string;
  queue_name: string;
  consumers: { type: "worker"; consumer_id: string; script: string; dead_letter_queue?: string; settings?: unknown }[];
}

interface Script {
  bindings: { type: string; name: string; [field: string]: unknown }[];
  migrationTag?: string;
  /** Whether a real build was uploaded (a `wrangler secret put` on a new Worker uploads a placeholder). */
  deployed: boolean;
  /** The static assets served beside the Worker: path to content hash. */
  assets: Map<string, string>;
}

/** A static-assets upload session: the manifest wrangler sent, and the files it still has to send. */
interface AssetSession {
  manifest: Map<string, string>;
  missing: Set<string>;
}

export interface FakeCloudflareApi {
  /** The CLOUDFLARE_API_BASE_URL to give wrangler. */
  baseUrl: string;
  accountId: string;
  /** "METHOD /path" of every call, in order (account prefix removed). */
  calls: string[];
  unhandled: string[];
  databases: Map<string, Database>;
  queues: Map<string, Queue>;
  /** R2 buckets by name, with when they were created. */
  buckets: Map<string, string>;
  scripts: Map<string, Script>;
  secrets: Map<string, Set<string>>;
  /** The static-asset files the account holds, by content hash. */
  assetFiles: Map<string, Buffer>;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

export async function startFakeCloudflareApi(): Promise<FakeCloudflareApi> {
  const accountId = "0123456789abcdef0123456789abcdef";
  const calls: string[] = [];
  const unhandled: string[] = [];
  const databases = new Map<string, Database>();
  const queues = new Map<string, Queue>();
  const buckets = new Map<string, string>();
  const scripts = new Map<string, Script>();
  const secrets = new Map<string, Set<string>>();
  const assetFiles = new Map<string, Buffer>();
  // Sessions by token. An upload token is the session's; the completion token is handed out once
  // nothing is missing, and a Worker upload presents it.
  const uploadTokens = new Map<string, AssetSession>();
  const completionTokens = new Map<string, AssetSession>();
  /** An unsigned JWT: wrangler reads `exp` (and the upload mode) from the payload, nothing else. */
  const token = () => {
    const part = (value: Json) => Buffer.from(JSON.stringify(value)).toString("base64url");
    return `${part({ alg: "none" })}.${part({ exp: Math.floor(Date.now() / 1000) + 3600, sid: randomUUID() })}.`;
  };
  const complete = (session: AssetSession) => {
    const jwt = token();
    completionTokens.set(jwt, session);
    return jwt;
  };

  const send = (res: ServerResponse, status: number, body: Json) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  const ok = (res: ServerResponse, result: unknown, resultInfo?: Json) =>
    send(res, 200, { success: true, errors: [], messages: [], result, ...(resultInfo && { result_info: resultInfo }) });
  const fail = (res: ServerResponse, status: number, code: number, message: string) =>
    send(res, status, { success: false, errors: [{ code, message }], messages: [], result: null });
  const page = <T>(res: ServerResponse, url: URL, items: T[], defaultPerPage: number) => {
    const perPage = Number(url.searchParams.get("per_page") ?? defaultPerPage);
    const number = Number(url.searchParams.get("page") ?? 1);
    const slice = items.slice((number - 1) * perPage, number * perPage);
    ok(res, slice, {
      page: number,
      per_page: perPage,
      count: slice.length,
      total_count: items.length,
      total_pages: Math.max(1, Math.ceil(items.length / perPage)),
    });
  };
  const database = (idOrName: string) =>
    databases.get(idOrName) ?? [...databases.values()].find((db) => db.name === idOrName);
  const queueBy = (idOrName: string) =>
    [...queues.values()].find((q) => q.queue_id === idOrName || q.queue_name === idOrName);

  /** The JSON part called "metadata" of a Worker upload (multipart form). */
  const uploadMetadata = (body: string): Json => {
    const match = /name="metadata"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([\s\S]*?)\r\n--/.exec(body);
    return match?.[1] ? (JSON.parse(match[1]) as Json) : {};
  };

  const d1Query = (db: Database, sql: string, params: unknown[]) => {
    const single = /^\s*(select|pragma|with)\b/i.test(sql) && !/;\s*\S/.test(sql);
    let results: unknown[] = [];
    if (single) results = db.sqlite.prepare(sql).all(...(params as (string | number | null)[]));
    else db.sqlite.exec(sql);
    return [{ results, success: true, meta: { duration: 0, changes: 0, rows_read: 0, rows_written: 0 } }];
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const body = raw.toString("utf8");
    const url = new URL(req.url ?? "/", "http://fake");
    const route = url.pathname.replace(/^\/client\/v4/, "").replace(`/accounts/${accountId}`, "");
    const call = `${req.method} ${route}`;
    calls.push(call);
    const json = () => JSON.parse(body) as Json;
    const at = (pattern: RegExp, method?: string) => {
      const found = pattern.exec(route);
      return found && (method === undefined || req.method === method) ? found : null;
    };
    let m: RegExpExecArray | null;

    // D1
    if (route === "/d1/database" && req.method === "GET") {
      return page(
        res,
        url,
        [...databases.values()].map(({ uuid, name }) => ({ uuid, name, version: "production" })),
        10,
      );
    }
    if (route === "/d1/database" && req.method === "POST") {
      const name = String(json().name);
      if (database(name)) return fail(res, 400, 7502, "A database with that name already exists");
      const db = { uuid: randomUUID(), name, sqlite: new DatabaseSync(":memory:") };
      databases.set(db.uuid, db);
      return ok(res, { uuid: db.uuid, name, version: "production", created_at: new Date().toISOString() });
    }
    m = at(/^\/d1\/database\/([^/]+)$/, "GET");
    if (m) {
      const db = database(decodeURIComponent(m[1] ?? ""));
      return db ? ok(res, { uuid: db.uuid, name: db.name, version: "production" }) : fail(res, 404, 7404, "not found");
    }
    m = at(/^\/d1\/database\/([^/]+)\/(?:query|raw)$/, "POST");
    if (m) {
      const db = database(m[1] ?? "");
      if (!db) return fail(res, 404, 7404, "not found");
      const { sql, params } = json() as { sql: string; params?: unknown[] };
      return ok(res, d1Query(db, sql, params ?? []));
    }

    // R2 buckets
    if (route === "/r2/buckets" && req.method === "GET") {
      const listed = [...buckets].map(([name, created]) => ({ name, creation_date: created }));
      return ok(res, { buckets: listed });
    }
    if (route === "/r2/buckets" && req.method === "POST") {
      const name = String(json().name);
      if (buckets.has(name)) return fail(res, 409, 10004, "The bucket you tried to create already exists");
      buckets.set(name, new Date().toISOString());
      return ok(res, { name, creation_date: buckets.get(name) });
    }
    m = at(/^\/r2\/buckets\/([^/]+)$/, "GET");
    if (m) {
      const name = decodeURIComponent(m[1] ?? "");
      const created = buckets.get(name);
      return created === undefined
        ? fail(res, 404, 10006, "The specified bucket does not exist.")
        : ok(res, { name, creation_date: created, location: "WEUR", storage_class: "Standard" });
    }

    // Queues
    if (route === "/queues" && req.method === "GET") {
      const names = url.searchParams.getAll("name");
      const listed = [...queues.values()].filter((q) => names.length === 0 || names.includes(q.queue_name));
      return page(res, url, listed, 100);
    }
    if (route === "/queues" && req.method === "POST") {
      const name = String(json().queue_name);
      if (queues.has(name)) return fail(res, 409, 11009, "A queue with this name already exists");
      const queue: Queue = { queue_id: randomUUID().replaceAll("-", ""), queue_name: name, consumers: [] };
      queues.set(name, queue);
      return ok(res, queue);
    }
    m = at(/^\/queues\/([^/]+)$/, "GET");
    if (m) {
      const queue = queueBy(m[1] ?? "");
      return queue ? ok(res, queue) : fail(res, 404, 11000, "Queue does not exist");
    }
    m = at(/^\/queues\/([^/]+)\/consumers$/, "POST");
    if (m) {
      const queue = queueBy(m[1] ?? "");
      if (!queue) return fail(res, 404, 11000, "Queue does not exist");
      const { script_name, dead_letter_queue, settings } = json() as {
        script_name: string;
        dead_letter_queue?: string;
        settings?: unknown;
      };
      if (dead_letter_queue !== undefined && !queues.has(dead_letter_queue)) {
        return fail(res, 400, 11001, `Dead letter queue ${dead_letter_queue} does not exist`);
      }
      if (queue.consumers.some((c) => c.script !== script_name)) {
        return fail(res, 400, 11002, `Queue ${queue.queue_name} already has a consumer`);
      }
      const consumer = {
        type: "worker" as const,
        consumer_id: randomUUID(),
        script: script_name,
        dead_letter_queue,
        settings,
      };
      queue.consumers = [consumer];
      return ok(res, consumer);
    }
    m = at(/^\/queues\/([^/]+)\/consumers\/([^/]+)$/, "PUT");
    if (m) {
      const queue = queueBy(m[1] ?? "");
      const consumer = queue?.consumers.find((c) => c.consumer_id === m?.[2]);
      if (!consumer) return fail(res, 404, 11003, "Consumer does not exist");
      const { dead_letter_queue, settings } = json() as { dead_letter_queue?: string; settings?: unknown };
      Object.assign(consumer, { dead_letter_queue, settings });
      return ok(res, consumer);
    }

    // Static assets
    m = at(/^\/workers\/scripts\/([^/]+)\/assets-upload-session$/, "POST");
    if (m) {
      const { manifest } = json() as { manifest: Record<string, { hash: string; size: number }> };
      const session: AssetSession = {
        manifest: new Map(Object.entries(manifest).map(([file, { hash }]) => [file, hash])),
        missing: new Set(
          Object.values(manifest)
            .map(({ hash }) => hash)
            .filter((hash) => !assetFiles.has(hash)),
        ),
      };
      if (session.missing.size === 0) return ok(res, { jwt: complete(session), buckets: [] });
      const jwt = token();
      uploadTokens.set(jwt, session);
      return ok(res, { jwt, buckets: [[...session.missing]] });
    }
    if (route === "/workers/assets/upload" && req.method === "POST") {
      const session = uploadTokens.get((req.headers.authorization ?? "").replace(/^Bearer /, ""));
      if (!session) return fail(res, 401, 10001, "not an asset upload session's token");
      const form = await new Response(raw, {
        headers: { "content-type": req.headers["content-type"] ?? "" },
      }).formData();
      for (const [hash, file] of form) {
        if (!session.missing.has(hash) || typeof file === "string") {
          return fail(res, 400, 10002, `${hash} is not a file this session asked for`);
        }
        const text = await file.text();
        assetFiles.set(
          hash,
          url.searchParams.get("base64") === "true" ? Buffer.from(text, "base64") : Buffer.from(text),
        );
        session.missing.delete(hash);
      }
      if (session.missing.size > 0) return send(res, 202, { success: true, errors: [], messages: [], result: {} });
      return send(res, 201, { success: true, errors: [], messages: [], result: { jwt: complete(session) } });
    }

    // Workers
    m = at(/^\/workers\/scripts\/([^/]+)$/, "PUT");
    if (m) {
      const name = m[1] ?? "";
      const metadata = uploadMetadata(body) as {
        bindings?: Script["bindings"];
        migrations?: { new_tag?: string };
        main_module?: string;
        assets?: { jwt?: string };
      };
      const previous = scripts.get(name);
      for (const binding of metadata.bindings ?? []) {
        const inheritable =
          secrets.get(name)?.has(binding.name) || previous?.bindings.some((b) => b.name === binding.name);
        if (binding.type === "inherit" && !inheritable) {
          return fail(res, 400, 10021, `inherit binding '${binding.name}' is invalid`);
        }
      }
      const deployed = url.searchParams.has("excludeScript") || body.includes("index.js");
      let assets = previous?.assets ?? new Map<string, string>();
      if (metadata.assets?.jwt !== undefined) {
        const session = completionTokens.get(metadata.assets.jwt);
        if (!session) return fail(res, 400, 10003, "the assets completion token is not one this account issued");
        completionTokens.delete(metadata.assets.jwt);
        assets = session.manifest;
      }
      scripts.set(name, {
        assets,
        bindings: metadata.bindings ?? [],
        migrationTag: metadata.migrations?.new_tag ?? previous?.migrationTag,
        deployed: deployed || (previous?.deployed ?? false),
      });
      return ok(res, { id: name, etag: "etag", startup_time_ms: 1 });
    }
    m = at(/^\/workers\/scripts\/([^/]+)\/settings$/, "GET");
    if (m) {
      const script = scripts.get(m[1] ?? "");
      return script ? ok(res, { bindings: script.bindings, tags: [] }) : fail(res, 404, 10007, "script_not_found");
    }
    m = at(/^\/workers\/scripts\/([^/]+)\/secrets$/);
    if (m) {
      const name = m[1] ?? "";
      if (!scripts.has(name)) return fail(res, 404, 10007, "workers.api.error.script_not_found");
      const set = secrets.get(name) ?? new Set<string>();
      secrets.set(name, set);
      if (req.method === "PUT") {
        set.add(String(json().name));
        return ok(res, { name: json().name, type: "secret_text" });
      }
      return ok(
        res,
        [...set].map((secret) => ({ name: secret, type: "secret_text" })),
      );
    }
    m = at(/^\/workers\/services\/([^/]+)$/, "GET");
    if (m) {
      if (!scripts.has(m[1] ?? "")) return fail(res, 404, 10090, "service not found");
      return ok(res, {
        default_environment: {
          environment: "production",
          script: { tag: "tag", tags: [], last_deployed_from: "wrangler" },
        },
      });
    }
    if (/^\/workers\/scripts\/[^/]+\/deployments$/.test(route)) return ok(res, { deployments: [] });
    if (/^\/workers\/scripts\/[^/]+\/script-settings$/.test(route)) return ok(res, {});
    if (/^\/workers\/scripts\/[^/]+\/schedules$/.test(route)) return ok(res, { schedules: [] });
    if (/^\/workers\/scripts\/[^/]+\/subdomain$/.test(route))
      return ok(res, { enabled: true, previews_enabled: false });
    m = at(/^\/workers\/workers\/([^/]+)$/);
    if (m) {
      return ok(res, { id: m[1], name: m[1], subdomain: { enabled: false, previews_enabled: false } });
    }
    if (route === "/workers/subdomain") return ok(res, { subdomain: "fake-account" });

    unhandled.push(call);
    return fail(res, 404, 9999, `the fake Cloudflare API does not know ${call}`);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      unhandled.push(`${req.method} ${req.url}: ${String(error)}`);
      fail(res, 500, 9998, String(error));
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/client/v4`,
    accountId,
    calls,
    unhandled,
    databases,
    queues,
    buckets,
    scripts,
    secrets,
    assetFiles,
    async close() {
      server.close();
      server.closeAllConnections();
      await once(server, "close");
      for (const db of databases.values()) db.sqlite.close();
    },
  };
}
