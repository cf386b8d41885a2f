/**
 * The alert rules' evaluation (docs/monitoring.md#alert-rules), run by the cron: each enabled rule
 * names the subjects it fires for now; a subject that starts firing opens an incident and is
 * notified once, one that keeps firing is notified again every `renotify_minutes`, one that stops
 * (or whose rule is disabled) is resolved and notified. Incidents are kept in D1, one open per rule
 * and subject, and every step is guarded there, so two evaluations at once notify each thing once.
 * Notifications go through alerts.ts: kept, signed with Standard Webhooks, sent until received.
 */
import {
  ALERT_RULE_NAMES,
  type AlertRule,
  type Firing,
  type NotificationKind,
  settingsOf,
} from "../domain/alert-rules";
import { newId } from "../lib/bytes";
import {
  clicksWithoutConversions,
  expiringCredentialsInUse,
  type IncidentRow,
  lastAcceptedPostbacks,
  networkRejections,
  oldestWaitingDelivery,
  openIncident,
  openIncidents,
  partnerAttempts,
  renotifyIncident,
  resolveIncident,
  storedRuleSettings,
} from "../storage/alert-rules";
import type { D1 } from "../storage/d1";
import { outboxResendsSince, outboxUnconfirmed } from "../storage/metrics";
import { type AlertTarget, raiseAlert } from "./alerts";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const iso = (ms: number) => new Date(ms).toISOString();
const hourOf = (ms: number) => iso(ms).slice(0, 13);
const percent = (value: number) => `${Math.round(value * 100)} %`;

/** What each rule fires for at `nowMs`, with its settings. */
const EVALUATE: {
  [R in AlertRule]: (db: D1, settings: ReturnType<typeof settingsOf<R>>, nowMs: number) => Promise<Firing[]>;
} = {
  async partner_failure_share(db, s, nowMs) {
    const rows = await partnerAttempts(db, iso(nowMs - s.window_minutes * MINUTE_MS));
    return rows
      .filter((row) => row.attempts >= s.min_attempts && row.failed / row.attempts >= s.share)
      .map((row) => ({
        subject: `partner:${row.partner_id}`,
        summary: `Partner ${row.partner_id}: ${row.failed} of ${row.attempts} attempts failed in ${s.window_minutes} min (${percent(row.failed / row.attempts)}).`,
        details: {
          partner_id: row.partner_id,
          attempts: row.attempts,
          failed: row.failed,
          window_minutes: s.window_minutes,
        },
      }));
  },
  async dead_deliveries(db, s, nowMs) {
    const rows = await partnerAttempts(db, iso(nowMs - s.window_minutes * MINUTE_MS));
    return rows
      .filter((row) => row.dead > 0)
      .map((row) => ({
        subject: `partner:${row.partner_id}`,
        summary: `Partner ${row.partner_id}: ${row.dead} deliveries died in ${s.window_minutes} min; replay them once it is fixed.`,
        details: { partner_id: row.partner_id, dead: row.dead, window_minutes: s.window_minutes },
      }));
  },
  async backlog_age(db, s, nowMs) {
    const oldest = await oldestWaitingDelivery(db);
    if (oldest === null || nowMs - Date.parse(oldest) < s.minutes * MINUTE_MS) return [];
    const waited = Math.floor((nowMs - Date.parse(oldest)) / MINUTE_MS);
    return [
      {
        subject: "hub",
        summary: `The oldest waiting delivery has waited ${waited} min (more than ${s.minutes}).`,
        details: { oldest_created_at: oldest, minutes: waited },
      },
    ];
  },
  async network_silent(db, s, nowMs) {
    const rows = await lastAcceptedPostbacks(db);
    const silentSince = nowMs - s.hours * HOUR_MS;
    const usualSince = nowMs - s.usual_days * 24 * HOUR_MS;
    return rows
      .filter((row) => Date.parse(row.last_accepted_at) < silentSince && Date.parse(row.last_accepted_at) >= usualSince)
      .map((row) => ({
        subject: `network:${row.network_id}`,
        summary: `Network ${row.network_id} has sent no accepted postback since ${row.last_accepted_at} (over ${s.hours} h): is its postback broken?`,
        details: { network_id: row.network_id, last_accepted_at: row.last_accepted_at, hours: s.hours },
      }));
  },
  async rejection_spike(db, s, nowMs) {
    const rows = await networkRejections(db, iso(nowMs - s.window_minutes * MINUTE_MS));
    return rows
      .filter((row) => row.rejected >= s.min_rejections && row.rejected / row.requests >= s.share)
      .map((row) => ({
        subject: `network:${row.network_id}`,
        summary: `Network ${row.network_id}: ${row.rejected} of ${row.requests} postbacks refused in ${s.window_minutes} min (${percent(row.rejected / row.requests)}); see its inbound log.`,
        details: {
          network_id: row.network_id,
          requests: row.requests,
          rejected: row.rejected,
          window_minutes: s.window_minutes,
        },
      }));
  },
  async credential_expiring(db, s, nowMs) {
    const rows = await expiringCredentialsInUse(
      db,
      iso(nowMs),
      iso(nowMs + s.hours * HOUR_MS),
      iso(nowMs - s.used_within_minutes * MINUTE_MS),
    );
    return rows.map((row) => ({
      subject: `credential:${row.id}`,
      summary: `Network ${row.network_id} still uses its old ${row.kind === "token" ? "token" : "signing secret"} ${row.id}, which stops working at ${row.expires_at}.`,
      details: {
        network_id: row.network_id,
        credential_id: row.id,
        kind: row.kind,
        expires_at: row.expires_at,
        last_used_at: row.last_used_at,
      },
    }));
  },
  async outbox_unconfirmed(db, s, nowMs) {
    const [resends, unconfirmed] = await Promise.all([
      outboxResendsSince(db, hourOf(nowMs - s.window_minutes * MINUTE_MS)),
      outboxUnconfirmed(db),
    ]);
    const waiting = Math.max(0, unconfirmed.events);
    if (waiting < s.min_unconfirmed && resends < s.min_resends) return [];
    const oldest = waiting > 0 && unconfirmed.oldest_at ? ` (the oldest received ${unconfirmed.oldest_at})` : "";
    return [
      {
        subject: "hub",
        summary: `${waiting} events wait unconfirmed by D1 past their resend deadline${oldest}, and ${resends} were sent again within about ${s.window_minutes} min: check the events queue and its consumer (dead letters, D1).`,
        details: {
          unconfirmed: waiting,
          oldest_at: waiting > 0 ? unconfirmed.oldest_at : null,
          resends,
          window_minutes: s.window_minutes,
        },
      },
    ];
  },
  async clicks_without_conversions(db, s, nowMs) {
    const rows = await clicksWithoutConversions(
      db,
      hourOf(nowMs - s.hours * HOUR_MS),
      hourOf(nowMs - 7 * 24 * HOUR_MS),
      s.min_clicks,
    );
    return rows.map((row) => ({
      subject: `offer:${row.offer_id}`,
      summary: `Offer ${row.offer_id}: ${row.clicks} clicks and no conversion in ${s.hours} h, though it converts usually.`,
      details: { offer_id: row.offer_id, clicks: row.clicks, hours: s.hours },
    }));
  },
};

export interface Evaluation {
  opened: string[];
  renotified: string[];
  resolved: string[];
}

function notify(
  target: AlertTarget,
  db: D1,
  incident: Omit<IncidentRow, "notifications" | "state">,
  kind: NotificationKind,
  n: number,
) {
  const partner = /^partner:(.+)$/.exec(incident.subject)?.[1];
  return raiseAlert(
    db,
    target,
    {
      type: `alert.${kind}`,
      alert_id: incident.id,
      rule: incident.rule,
      subject: incident.subject,
      summary: incident.summary,
      details: JSON.parse(incident.details) as Record<string, unknown>,
      started_at: incident.started_at,
      resolved_at: incident.resolved_at,
      ...(partner ? { partner_id: partner } : {}),
    },
    // One notification, however often it is raised: kept once in the alerts table, sent until received.
    `${incident.id}.${kind}.${n}`,
  );
}

/** One evaluation of every rule at `nowMs`. */
export async function evaluateAlertRules(
  deps: { db: D1; target: AlertTarget },
  nowMs = Date.now(),
): Promise<Evaluation> {
  const { db, target } = deps;
  const now = iso(nowMs);
  const [stored, open] = await Promise.all([storedRuleSettings(db), openIncidents(db)]);
  const result: Evaluation = { opened: [], renotified: [], resolved: [] };
  for (const rule of ALERT_RULE_NAMES) {
    const settings = settingsOf(rule, stored.get(rule));
    // biome-ignore lint/suspicious/noExplicitAny: each rule's evaluator takes its own settings, keyed by the rule.
    const firings = settings.enabled ? ((await (EVALUATE[rule] as any)(db, settings, nowMs)) as Firing[]) : [];
    const firing = new Map(firings.map((f) => [f.subject, f]));
    const openOfRule = open.filter((incident) => incident.rule === rule);
    for (const incident of openOfRule) {
      const still = firing.get(incident.subject);
      if (!still) {
        if (await resolveIncident(db, incident.id, now)) {
          await notify(target, db, { ...incident, resolved_at: now }, "resolved", 1);
          result.resolved.push(incident.id);
        }
      } else if (nowMs - Date.parse(incident.last_notified_at) >= settings.renotify_minutes * MINUTE_MS) {
        const details = JSON.stringify(still.details);
        if (await renotifyIncident(db, incident.id, incident.last_notified_at, still.summary, details, now)) {
          await notify(
            target,
            db,
            { ...incident, summary: still.summary, details },
            "renotify",
            incident.notifications + 1,
          );
          result.renotified.push(incident.id);
        }
      }
      firing.delete(incident.subject);
    }
    for (const started of firing.values()) {
      const incident = {
        id: newId("inc", nowMs),
        rule,
        subject: started.subject,
        summary: started.summary,
        details: JSON.stringify(started.details),
        started_at: now,
        last_notified_at: now,
        resolved_at: null,
      };
      if (await openIncident(db, incident)) {
        await notify(target, db, incident, "firing", 1);
        result.opened.push(incident.id);
      }
    }
  }
  return result;
}
