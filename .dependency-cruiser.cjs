/**
 * The direction imports run in (docs/architecture.md, "Code layout"): routes and console → ingest,
 * delivery, queues, conversions, networks, operations → domain and lib. `npm run check` fails on a violation.
 * @type {import('dependency-cruiser').IConfiguration}
 */
module.exports = {
  forbidden: [
    {
      name: "no-folder-cycles",
      comment: "Folders depend on each other one way: a cycle between two folders is a failed check.",
      severity: "error",
      scope: "folder",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "no-module-cycles",
      severity: "error",
      from: { path: "^src/" },
      to: { circular: true },
    },
    {
      name: "nothing-imports-routes",
      comment: "Routes are HTTP only: the app (app.ts) mounts them, nothing else uses them.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(routes/|app\\.ts$)" },
      to: { path: "^src/routes/" },
    },
    {
      name: "domain-imports-nothing-of-the-app",
      comment: "The domain (schemas, contracts, message formats) stands on lib and the error module alone.",
      severity: "error",
      from: { path: "^src/domain/" },
      to: { path: "^src/", pathNot: "^src/(domain/|lib/|errors\\.ts$)" },
    },
    {
      name: "lib-is-a-leaf",
      comment: "lib/ is plain helpers (bytes, canonical JSON, IP ranges, the Standard Webhooks scheme).",
      severity: "error",
      from: { path: "^src/lib/" },
      to: { path: "^src/", pathNot: "^src/lib/" },
    },
    {
      name: "storage-is-sql-over-the-domain",
      comment: "All SQL lives in storage/, which knows the domain's shapes and nothing of the layers above it.",
      severity: "error",
      from: { path: "^src/storage/" },
      to: { path: "^src/", pathNot: "^src/(storage/|domain/|lib/|errors\\.ts$)" },
    },
    {
      name: "only-the-app-mounts-the-console",
      comment:
        "The console (src/console/) is pages over the same operations and queries as the API: app.ts mounts it; nothing below it imports it.",
      severity: "error",
      from: { path: "^src/", pathNot: "^src/(console/|app\\.ts$)" },
      to: { path: "^src/console/" },
    },
    {
      name: "only-index-wires-the-worker",
      comment: "index.ts wires fetch, queues and crons; nothing imports it.",
      severity: "error",
      from: { path: "^src/" },
      to: { path: "^src/index\\.ts$" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".tsx", ".js", ".json"] },
    exclude: { path: "^(test|bench|scripts)/" },
  },
};
