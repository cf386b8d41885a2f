/**
 * The built-in alert rules (docs/monitoring.md#alert-rules): what each watches, its settings with
 * their defaults (each settable through the admin API), and the shape of an incident. The cron
 * evaluates every enabled rule (alerts/rules.ts); a rule names the subjects it fires for (a partner,
 * a network, a credential, an offer, the hub), and each subject's firing is one incident.
 */
import { z } from "zod";

const minutes = (fallback: number) => z.number().int().min(1).max(10_080).default(fallback);
const count = (fallback: number) => z.number().int().min(1).max(1_000_000).default(fallback);
const share = (fallback: number) => z.number().gt(0).max(1).default(fallback);

/** Every rule's settings: `renotify_minutes` is how often a lasting incident is notified again. */
const common = { enabled: z.boolean().default(true), renotify_minutes: minutes(60) };

export const ALERT_RULES = {
  partner_failure_share: {
    description: "A partner's share of failed attempts (retried, failed, gone, dead) over a window is too high.",
    settings: z.strictObject({ ...common, window_minutes: minutes(15), min_attempts: count(10), share: share(0.5) }),
  },
  dead_deliveries: {
    description: "A partner has deliveries that died (retries spent) within the window.",
    settings: z.strictObject({ ...common, window_minutes: minutes(60) }),
  },
  backlog_age: {
    description: "The oldest delivery waiting to be sent has waited longer than this.",
    settings: z.strictObject({ ...common, minutes: minutes(30) }),
  },
  network_silent: {
    description:
      "A network that usually sends (an accepted postback within usual_days) has sent no accepted postback for this long: the classic broken postback on the advertiser's side.",
    settings: z.strictObject({
      ...common,
      hours: z.number().int().min(1).max(720).default(6),
      usual_days: z.number().int().min(1).max(30).default(7),
    }),
  },
  rejection_spike: {
    description: "A network's postbacks are refused (4xx, e.g. 401 after a rotation) in a spike over a window.",
    settings: z.strictObject({ ...common, window_minutes: minutes(15), min_rejections: count(20), share: share(0.5) }),
  },
  credential_expiring: {
    description: "A rotated-out secret or token is still in use shortly before it stops working.",
    settings: z.strictObject({
      ...common,
      hours: z.number().int().min(1).max(720).default(24),
      used_within_minutes: minutes(60),
    }),
  },
  outbox_unconfirmed: {
    description:
      "Events D1 has not confirmed past their resend deadline are waiting in conversions' Durable Objects, or were sent again within the window (the events queue or its consumer is losing or failing them).",
    settings: z.strictObject({
      ...common,
      // Events unconfirmed now (the gauge): the incident lasts until D1 has them all.
      min_unconfirmed: count(1),
      // Events sent again within about the window: catches a loss that the resend healed between two evaluations.
      window_minutes: minutes(60),
      min_resends: count(1),
    }),
  },
  clicks_without_conversions: {
    description:
      "An offer that usually converts (conversions in the last 7 days) has had many clicks and no conversion for this long.",
    settings: z.strictObject({ ...common, hours: z.number().int().min(1).max(168).default(6), min_clicks: count(50) }),
  },
} as const;

export type AlertRule = keyof typeof ALERT_RULES;
export const ALERT_RULE_NAMES = Object.keys(ALERT_RULES) as AlertRule[];
export type RuleSettings<R extends AlertRule> = z.output<(typeof ALERT_RULES)[R]["settings"]>;

/** A rule's stored settings over its defaults; what is stored and no longer valid falls back to them. */
export function settingsOf<R extends AlertRule>(rule: R, stored: unknown): RuleSettings<R> {
  const schema = ALERT_RULES[rule].settings;
  const parsed = schema.safeParse(stored ?? {});
  return (parsed.success ? parsed.data : schema.parse({})) as RuleSettings<R>;
}

/** One subject a rule fires for, now: its key, a line a person reads, and the figures behind it. */
export interface Firing {
  subject: string;
  summary: string;
  details: Record<string, unknown>;
}

export const INCIDENT_STATES = ["open", "resolved"] as const;
export type IncidentState = (typeof INCIDENT_STATES)[number];

/** What an incident's notifications say: it started, it lasts, it ended. */
export const NOTIFICATION_KINDS = ["firing", "renotify", "resolved"] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];
