/**
 * Alert channels: a Standard Webhooks channel gets every alert signed with its own secret (shown
 * once, verified here with the standardwebhooks library), a Slack channel gets the line a person
 * reads, a channel that is down is tried again until it takes the alert, and no read shows a secret.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { alertTarget, resendDueAlerts, slackText } from "../src/alerts/alerts";
import { configOf } from "../src/config";
import { createApiKey, withKey } from "./support/access";
import { admin, eventually, expectStatus, PARTNER, partnerLog, uniqueId } from "./support/helpers";

interface Channel {
  id: string;
  url: string;
  format: string;
  signing_secret?: string;
}

async function channel(format: string, url: string): Promise<Channel> {
  return expectStatus<Channel>(
    await admin("/v1/alert-channels", { method: "POST", body: JSON.stringify({ name: uniqueId("ch"), format, url }) }),
    201,
  );
}

async function testAlert(channelId: string): Promise<string> {
  const answer = await expectStatus<{ alert_id: string }>(
    await admin(`/v1/alert-channels/${channelId}/test`, { method: "POST" }),
    202,
  );
  return answer.alert_id;
}

describe("alert channels", () => {
  it("signs each alert with the channel's own secret, and sends Slack a line of text", async () => {
    const hooks = `/ok/${uniqueId("hook")}`;
    const slackPath = `/ok/${uniqueId("slack")}`;
    const webhook = await channel("standard_webhooks", `${PARTNER}${hooks}/in?key=channel-key`);
    const slack = await channel("slack", `${PARTNER}${slackPath}/services/T000/B000/XXXX`);
    expect(webhook.signing_secret).toMatch(/^whsec_/);
    expect(slack.signing_secret).toBeUndefined();

    const alertId = await testAlert(webhook.id);
    const received = await eventually(async () => {
      const log = await partnerLog(hooks);
      return log.length > 0 ? log : null;
    });
    const request = received[0];
    const verified = new Webhook(webhook.signing_secret ?? "").verify(request?.body ?? "", request?.headers ?? {}) as {
      type: string;
      alert_id: string;
    };
    expect(verified).toMatchObject({ type: "alert.firing", alert_id: alertId });
    expect(request?.headers["webhook-id"]).toBe(alertId);
    // Another channel's secret does not verify it.
    const other = await channel("standard_webhooks", `${PARTNER}/ok/${uniqueId("other")}`);
    expect(() => new Webhook(other.signing_secret ?? "").verify(request?.body ?? "", request?.headers ?? {})).toThrow();

    const slackRequests = await eventually(async () => {
      const log = await partnerLog(slackPath);
      return log.length > 0 ? log : null;
    });
    const text = JSON.parse(slackRequests[0]?.body ?? "{}") as { text?: string };
    expect(text.text).toMatch(/^:rotating_light: \[alert\.firing\] test: A test alert/);

    // Reads never show a secret, nor a Slack webhook's path (its credential), nor a URL's query.
    const listed = JSON.stringify(await expectStatus(await admin("/v1/alert-channels"), 200));
    expect(listed).not.toContain("whsec_");
    expect(listed).not.toContain("B000");
    expect(listed).not.toContain("channel-key");
    // At rest too: D1 holds the secret and the whole URLs encrypted only.
    const stored = JSON.stringify(await env.DB.prepare("SELECT * FROM alert_channels").all());
    expect(stored).not.toContain(webhook.signing_secret?.slice(6, 26) ?? "?");
    expect(stored).not.toContain("channel-key");
    expect(stored).not.toContain("B000");
    for (const id of [webhook.id, slack.id, other.id]) {
      expect((await admin(`/v1/alert-channels/${id}`, { method: "DELETE" })).status).toBe(204);
    }
  });

  it("tries a channel that is down again until it takes the alert", async () => {
    const downPath = `/flaky/2/${uniqueId("down")}`;
    const down = await channel("standard_webhooks", `${PARTNER}${downPath}`);
    const alertId = await testAlert(down.id);
    const send = () =>
      env.DB.prepare(
        "SELECT attempts, delivered_at, next_attempt_at FROM alert_sends WHERE alert_id = ? AND channel_id = ?",
      )
        .bind(alertId, down.id)
        .first<{ attempts: number; delivered_at: string | null; next_attempt_at: string | null }>();
    expect(await send()).toMatchObject({ attempts: 1, delivered_at: null });
    const target = alertTarget(configOf(env));
    await resendDueAlerts(env.DB, target, Date.now() + 3 * 60_000);
    expect(await send()).toMatchObject({ attempts: 2, delivered_at: null });
    await resendDueAlerts(env.DB, target, Date.now() + 60 * 60_000);
    expect(await send()).toMatchObject({ attempts: 3, next_attempt_at: null });
    expect((await send())?.delivered_at).not.toBeNull();
    expect(await partnerLog(downPath)).toHaveLength(3);
    await admin(`/v1/alert-channels/${down.id}`, { method: "DELETE" });
  });

  it("refuses a URL the hub must not call, and a key that may not issue a secret", async () => {
    const local = await admin("/v1/alert-channels", {
      method: "POST",
      body: JSON.stringify({ name: "local", format: "slack", url: "http://127.0.0.1:9/hook" }),
    });
    const problem = await expectStatus<{ errors: { location: string }[] }>(local, 422);
    expect(problem.errors[0]?.location).toBe("body.url");
    const operator = await createApiKey({ scope: "operator" });
    const refused = await withKey(operator.key, "/v1/alert-channels", {
      method: "POST",
      body: JSON.stringify({ name: "x", format: "standard_webhooks", url: `${PARTNER}/ok/x` }),
    });
    expect(refused.status).toBe(403);
    expect((await withKey(operator.key, "/v1/alert-channels")).status).toBe(200);
  });

  it("writes a Slack line for every kind of alert", () => {
    expect(slackText({ type: "alert.resolved", rule: "backlog_age", summary: "Waited 31 min." })).toBe(
      ":white_check_mark: [alert.resolved] backlog_age: Waited 31 min.",
    );
    expect(slackText({ type: "partner_disabled", partner_id: "ptn_1", name: "Acme", reason: "it answered 410" })).toBe(
      ":rotating_light: [partner_disabled]: Partner Acme: it answered 410",
    );
  });
});
