/**
 * The metrics GET /metrics serves (docs/monitoring.md): each declared once, with its labels and, for
 * a histogram, its buckets. Counters live in D1 (`metric_counters`, migration 0016), added to by the
 * consumer that records what they count, in the same batch, and only for what that batch records
 * for the first time: so they hold across isolates, restarts and messages delivered twice. Gauges
 * are read when scraped, each from an index.
 */

export type MetricType = "counter" | "gauge" | "histogram";

export interface MetricDefinition {
  /** Without the `_total` a counter's samples carry. */
  name: string;
  type: MetricType;
  help: string;
  labels: readonly string[];
  buckets?: readonly number[];
}

function metric<const D extends MetricDefinition>(definition: D): D {
  return definition;
}

export const METRICS = {
  postbacks: metric({
    name: "postback_hub_postbacks",
    type: "counter",
    help: "Postback requests the inbound log recorded, by network and verdict (the decision, or the problem's code).",
    labels: ["network", "verdict"],
  }),
  postbacksUnlogged: metric({
    name: "postback_hub_postbacks_unlogged",
    type: "counter",
    help: "Postback requests counted but not logged one by one (over the per-minute log cap, or to an unknown network: network '').",
    labels: ["network"],
  }),
  deliveryAttempts: metric({
    name: "postback_hub_delivery_attempts",
    type: "counter",
    help: "Delivery attempts by partner and outcome.",
    labels: ["partner", "outcome"],
  }),
  deliveryLatency: metric({
    name: "postback_hub_delivery_latency_milliseconds",
    type: "histogram",
    help: "How long a partner took to answer a delivery attempt (or to time out).",
    labels: ["partner"],
    buckets: [50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000],
  }),
  attemptsPerDelivery: metric({
    name: "postback_hub_delivery_attempts_per_delivery",
    type: "histogram",
    help: "Attempts a delivery took, observed when it ended (delivered, failed or dead), by partner and end.",
    labels: ["partner", "state"],
    buckets: [1, 2, 3, 5, 8, 13],
  }),
  outboxResends: metric({
    name: "postback_hub_outbox_resends",
    type: "counter",
    help: "Events a conversion's Durable Object sent to the events queue again because D1 had not confirmed them within OUTBOX_RESEND_SECONDS (counted when D1 takes the count).",
    labels: [],
  }),
  outboxUnconfirmed: metric({
    name: "postback_hub_outbox_unconfirmed",
    type: "gauge",
    help: "Events in conversions' Durable Objects that D1 has not confirmed past OUTBOX_RESEND_SECONDS, as their objects' alarms last reported them; 0 when none.",
    labels: [],
  }),
  outboxUnconfirmedOldestAge: metric({
    name: "postback_hub_outbox_unconfirmed_oldest_age_seconds",
    type: "gauge",
    help: "Age of the oldest of those events (since the hub received it); 0 when none.",
    labels: [],
  }),
  clicks: metric({
    name: "postback_hub_clicks",
    type: "counter",
    help: "Clicks recorded, by offer.",
    labels: ["offer"],
  }),
  backlog: metric({
    name: "postback_hub_deliveries_backlog",
    type: "gauge",
    help: "Deliveries waiting to be sent, by state (pending, retrying).",
    labels: ["state"],
  }),
  backlogOldestAge: metric({
    name: "postback_hub_deliveries_backlog_oldest_age_seconds",
    type: "gauge",
    help: "Age of the oldest delivery waiting to be sent; 0 when none waits.",
    labels: [],
  }),
  deadLetters: metric({
    name: "postback_hub_dead_letters",
    type: "gauge",
    help: "Queue messages that exhausted their retries and were not replayed, by queue.",
    labels: ["queue"],
  }),
  partnerState: metric({
    name: "postback_hub_partner_state",
    type: "gauge",
    help: "1 for each partner's state: active, paused (its breaker is open) or disabled.",
    labels: ["partner", "state"],
  }),
} as const;

/** One addition to a counter row: the row's name (a histogram's `_bucket`, `_sum`, `_count`), its label values. */
export interface CounterIncrement {
  name: string;
  labels: readonly string[];
  value: number;
}

/**
 * A histogram observation as counter increments: the one bucket it falls in (the first bound at
 * least the value, else +Inf) and its sum. Two rows written per observation, not one per bucket:
 * the cumulative buckets and the count are added up when the metrics are rendered.
 */
export function observe(definition: MetricDefinition, labels: readonly string[], value: number): CounterIncrement[] {
  const bound = (definition.buckets ?? []).find((candidate) => value <= candidate);
  return [
    { name: `${definition.name}_bucket`, labels: [...labels, bound === undefined ? "+Inf" : String(bound)], value: 1 },
    { name: `${definition.name}_sum`, labels, value },
  ];
}

/** The delivery states an attempt can end a delivery in. */
const ENDED = new Set(["delivered", "failed", "dead"]);

/** What one recorded attempt adds: its outcome, its latency, and, when it ended the delivery, its attempt count. */
export function attemptIncrements(attempt: {
  partner_id: string;
  outcome: string;
  latency_ms: number | null;
  attempt: number;
  state: string;
}): CounterIncrement[] {
  const increments: CounterIncrement[] = [
    { name: METRICS.deliveryAttempts.name, labels: [attempt.partner_id, attempt.outcome], value: 1 },
  ];
  if (attempt.latency_ms !== null) {
    increments.push(
      ...observe(METRICS.deliveryLatency, [attempt.partner_id], Math.max(0, Math.round(attempt.latency_ms))),
    );
  }
  if (ENDED.has(attempt.state)) {
    increments.push(...observe(METRICS.attemptsPerDelivery, [attempt.partner_id, attempt.state], attempt.attempt));
  }
  return increments;
}
