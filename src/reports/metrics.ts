/**
 * GET /metrics as text (docs/monitoring.md): the counters D1 keeps and the gauges read when scraped,
 * written in the Prometheus text format (0.0.4), or OpenMetrics 1.0 when the scraper asks for it.
 * Every metric is listed, with HELP and TYPE, even before it has a sample; a histogram's every
 * bucket is written for each label set it has (a bucket never reached reads its cumulative count).
 */
import { METRICS, type MetricDefinition } from "../domain/metrics";
import type { CounterRow, Gauges } from "../storage/metrics";

export type MetricsFormat = "prometheus" | "openmetrics";

export const METRICS_CONTENT_TYPES: Record<MetricsFormat, string> = {
  prometheus: "text/plain; version=0.0.4; charset=utf-8",
  openmetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8",
};

/** OpenMetrics when the scraper's Accept names it (Prometheus asks for it first), else 0.0.4. */
export function metricsFormat(accept: string | null | undefined): MetricsFormat {
  return /application\/openmetrics-text/i.test(accept ?? "") ? "openmetrics" : "prometheus";
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function sample(name: string, labelNames: readonly string[], labelValues: readonly string[], value: number): string {
  const labels = labelNames.map((label, index) => `${label}="${escapeLabel(labelValues[index] ?? "")}"`);
  return `${name}${labels.length > 0 ? `{${labels.join(",")}}` : ""} ${value}`;
}

function header(definition: MetricDefinition, format: MetricsFormat): string[] {
  const family =
    definition.type === "counter" && format === "prometheus" ? `${definition.name}_total` : definition.name;
  return [`# HELP ${family} ${definition.help}`, `# TYPE ${family} ${definition.type}`];
}

function counterLines(definition: MetricDefinition, rows: readonly CounterRow[]): string[] {
  return rows
    .filter((row) => row.name === definition.name)
    .map((row) => sample(`${definition.name}_total`, definition.labels, row.labels, row.value));
}

/** A histogram's samples for each label set: its buckets cumulated from the one-bucket rows, its sum and count. */
function histogramLines(definition: MetricDefinition, rows: readonly CounterRow[]): string[] {
  const key = (labels: readonly string[]) => JSON.stringify(labels);
  const sets = new Map<string, { labels: readonly string[]; buckets: Map<string, number>; sum: number }>();
  const setOf = (labels: readonly string[]) => {
    const existing = sets.get(key(labels));
    if (existing) return existing;
    const created = { labels, buckets: new Map<string, number>(), sum: 0 };
    sets.set(key(labels), created);
    return created;
  };
  for (const row of rows) {
    if (row.name === `${definition.name}_bucket`) {
      setOf(row.labels.slice(0, -1)).buckets.set(row.labels.at(-1) ?? "+Inf", row.value);
    } else if (row.name === `${definition.name}_sum`) {
      setOf(row.labels).sum = row.value;
    }
  }
  const bounds = [...(definition.buckets ?? []).map(String), "+Inf"];
  const lines: string[] = [];
  for (const set of [...sets.values()].sort((a, b) => (key(a.labels) < key(b.labels) ? -1 : 1))) {
    let cumulative = 0;
    for (const bound of bounds) {
      cumulative += set.buckets.get(bound) ?? 0;
      lines.push(sample(`${definition.name}_bucket`, [...definition.labels, "le"], [...set.labels, bound], cumulative));
    }
    lines.push(sample(`${definition.name}_sum`, definition.labels, set.labels, set.sum));
    lines.push(sample(`${definition.name}_count`, definition.labels, set.labels, cumulative));
  }
  return lines;
}

/** Whole seconds since `at`; 0 for none. */
function ageSeconds(at: string | null, nowMs: number): number {
  return at === null ? 0 : Math.max(0, Math.floor((nowMs - Date.parse(at)) / 1000));
}

export function renderMetrics(
  counters: readonly CounterRow[],
  gauges: Gauges,
  nowMs: number,
  format: MetricsFormat,
): string {
  const lines: string[] = [];
  const family = (definition: MetricDefinition, samples: string[]) =>
    lines.push(...header(definition, format), ...samples);

  family(METRICS.postbacks, counterLines(METRICS.postbacks, counters));
  family(METRICS.postbacksUnlogged, counterLines(METRICS.postbacksUnlogged, counters));
  family(METRICS.deliveryAttempts, counterLines(METRICS.deliveryAttempts, counters));
  family(METRICS.deliveryLatency, histogramLines(METRICS.deliveryLatency, counters));
  family(METRICS.attemptsPerDelivery, histogramLines(METRICS.attemptsPerDelivery, counters));
  family(METRICS.outboxResends, counterLines(METRICS.outboxResends, counters));
  const unconfirmed = gauges.outbox_unconfirmed;
  family(METRICS.outboxUnconfirmed, [sample(METRICS.outboxUnconfirmed.name, [], [], Math.max(0, unconfirmed.events))]);
  family(METRICS.outboxUnconfirmedOldestAge, [
    sample(METRICS.outboxUnconfirmedOldestAge.name, [], [], ageSeconds(unconfirmed.oldest_at, nowMs)),
  ]);
  family(METRICS.clicks, counterLines(METRICS.clicks, counters));
  family(METRICS.backlog, [
    sample(METRICS.backlog.name, METRICS.backlog.labels, ["pending"], gauges.backlog.pending),
    sample(METRICS.backlog.name, METRICS.backlog.labels, ["retrying"], gauges.backlog.retrying),
  ]);
  family(METRICS.backlogOldestAge, [
    sample(METRICS.backlogOldestAge.name, [], [], ageSeconds(gauges.backlog.oldest_created_at, nowMs)),
  ]);
  family(
    METRICS.deadLetters,
    gauges.dead_letters.map((row) =>
      sample(METRICS.deadLetters.name, METRICS.deadLetters.labels, [row.queue], row.open),
    ),
  );
  family(
    METRICS.partnerState,
    gauges.partners.map((row) =>
      sample(METRICS.partnerState.name, METRICS.partnerState.labels, [row.id, row.state], 1),
    ),
  );
  if (format === "openmetrics") lines.push("# EOF");
  return `${lines.join("\n")}\n`;
}
