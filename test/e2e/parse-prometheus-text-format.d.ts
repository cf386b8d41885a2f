/** The Prometheus text parser the metrics e2e test reads GET /metrics with (it ships no types). */
declare module "parse-prometheus-text-format" {
  export default function parsePrometheusTextFormat(text: string): unknown[];
}
