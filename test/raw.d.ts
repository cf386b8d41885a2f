/** Vite's `?raw` imports (a file's text) and `import.meta.glob`, for tests that check documentation. */
declare module "*.md?raw" {
  const text: string;
  export default text;
}
declare module "*.toml?raw" {
  const text: string;
  export default text;
}
/** Vite's `import.meta.glob`, as the documentation tests use it: the pages of docs/, every file's path. */
interface ImportMeta {
  glob<T>(patterns: string | string[], options: { query: "?raw"; import: "default"; eager: true }): Record<string, T>;
  glob(patterns: string | string[]): Record<string, () => Promise<unknown>>;
}
/** The Prometheus text parser the metrics tests read GET /metrics with (it ships no types). */
declare module "parse-prometheus-text-format" {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
