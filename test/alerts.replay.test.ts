/**
 * Alert sends are logged and replayable: a channel that refuses until the cron gives its alert up
 * shows the send as given_up in its log, a replay (by an operator key, audited; refused to a
 * read-only key) sends it again at once with a fresh give-up window, and a received send is not
 * replayed. ALERT_URL's sends are the `default` channel's. The log never shows a URL's credential.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { ALERT_GIVE_UP_MS, alertTarget, replayAlertSend, resendDueAlerts, shownError } from "../src/alerts/alerts";
import { configOf } from "../src/config";
import { generateSecret } from "../src/lib/credentials";
import { auditRowsOf, createApiKey, withKey } from "./support/access";
import { admin, expectStatus, PARTNER, partnerLog, uniqueId } from "./support/helpers";
import { expectProblem } from "./support/problems";

interface Send {
  alert_id: string;
  type: string;
  rule: string | null;
  state: "pending" | "delivered" | "given_up";
  attempts: number;
  delivered_at: string | null;
  next_attempt_at: string | null;
  last_error: string | null;
  replayed_at: string | null;
}

const DAY_MS = 86_400_000;

async function channel(url: string): Promise<string> {
  const created = await expectStatus<{ id: string }>(
    await admin("/v1/alert-channels", {
      method: "POST",
      body: JSON.stringify({ name: uniqueId("ch"), format: "standard_webhooks", url }),
    }),
    201,
  );
  return created.id;
}

async function testAlert(channelId: string): Promise<string> {
  return (
    await expectStatus<{ alert_id: string }>(
      await admin(`/v1/alert-channels/${channelId}/test`, { method: "POST" }),
      202,
    )
  ).alert_id;
}

async function sends(channelId: string, query = ""): Promise<Send[]> {
  return (await expectStatus<{ data: Send[] }>(await admin(`/v1/alert-channels/${channelId}/sends${query}`), 200)).data;
}

async function sendOf(channelId: string, alertId: string): Promise<Send | undefined> {
  return (await sends(channelId)).find((send) => send.alert_id === alertId);
}

/** The cron, `ms` from now: every due send is tried (and given up past its window). */
const cronAt = (ms: number) => resendDueAlerts(env.DB, alertTarget(configOf(env)), Date.now() + ms);

describe("the alert send log and replays", () => {
  it("lists a refused send as given up, and a replay delivers it once the channel works", async () => {
    // Refuses the first two requests (the send at once, the cron's last try), then takes them.
    const path = `/flaky/2/${uniqueId("replay")}`;
    const id = await channel(`${PARTNER}${path}`);
    const alertId = await testAlert(id);
    expect(await sendOf(id, alertId)).toMatchObject({ state: "pending", attempts: 1 });
    await cronAt(ALERT_GIVE_UP_MS + DAY_MS);
    const givenUp = await sendOf(id, alertId);
    expect(givenUp).toMatchObject({
      type: "alert.firing",
      rule: "test",
      state: "given_up",
      attempts: 2,
      delivered_at: null,
      next_attempt_at: null,
      last_error: "given up: the channel answered 500",
      replayed_at: null,
    });
    expect((await sends(id, "?state=given_up")).map((send) => send.alert_id)).toContain(alertId);
    expect((await sends(id, "?state=delivered")).map((send) => send.alert_id)).not.toContain(alertId);

    // A read-only key reads the log, and may not replay.
    const readOnly = await createApiKey({ scope: "read-only" });
    expect((await withKey(readOnly.key, `/v1/alert-channels/${id}/sends`)).status).toBe(200);
    const resendPath = `/v1/alert-channels/${id}/sends/${alertId}/resend`;
    await expectProblem(await withKey(readOnly.key, resendPath, { method: "POST" }), 403, "forbidden");
    await expectProblem(
      await withKey(readOnly.key, `/v1/alert-channels/${id}/sends/resend`, { method: "POST" }),
      403,
      "forbidden",
    );
    expect(await partnerLog(path)).toHaveLength(2);

    const operator = await createApiKey({ scope: "operator" });
    const replayed = await expectStatus<Send>(await withKey(operator.key, resendPath, { method: "POST" }), 202);
    expect(replayed).toMatchObject({ alert_id: alertId, state: "delivered", attempts: 3, last_error: null });
    expect(replayed.replayed_at).not.toBeNull();
    expect(await partnerLog(path)).toHaveLength(3);
    const [audit] = (await auditRowsOf(operator.id)).filter((row) => row.action === "resendAlert");
    expect(audit).toMatchObject({ method: "POST", path: resendPath, status: 202, scope: "operator" });
    expect(JSON.parse(audit?.target ?? "{}")).toEqual({ channel_id: id, alert_id: alertId });

    // Received: not sent again (409), and nothing left for the cron.
    await expectProblem(await withKey(operator.key, resendPath, { method: "POST" }), 409, "invalid_state");
    await cronAt(2 * ALERT_GIVE_UP_MS);
    expect(await partnerLog(path)).toHaveLength(3);
    await admin(`/v1/alert-channels/${id}`, { method: "DELETE" });
  });

  it("answers 404 for an unknown channel or an alert the channel never had", async () => {
    const id = await channel(`${PARTNER}/ok/${uniqueId("known")}`);
    const other = await channel(`${PARTNER}/ok/${uniqueId("other")}`);
    const alertId = await testAlert(other);
    // The test alert went to every active channel: delete `other`'s twin send to make it `other`'s only.
    await env.DB.prepare("DELETE FROM alert_sends WHERE alert_id = ? AND channel_id = ?").bind(alertId, id).run();
    const missing = await expectProblem(
      await admin(`/v1/alert-channels/${id}/sends/${alertId}/resend`, { method: "POST" }),
      404,
      "not_found",
    );
    expect(missing.errors[0]?.location).toBe("path.alert_id");
    for (const request of [
      admin("/v1/alert-channels/ach_nope/sends"),
      admin(`/v1/alert-channels/ach_nope/sends/${alertId}/resend`, { method: "POST" }),
      admin("/v1/alert-channels/ach_nope/sends/resend", { method: "POST" }),
    ]) {
      const problem = await expectProblem(await request, 404, "not_found");
      expect(problem.errors[0]?.location).toBe("path.channel_id");
    }
    for (const channelId of [id, other]) await admin(`/v1/alert-channels/${channelId}`, { method: "DELETE" });
  });

  it("gives a replayed send a fresh give-up window, and replays every given-up send of a channel", async () => {
    const path = `/fail/${uniqueId("down")}`;
    const id = await channel(`${PARTNER}${path}`);
    const [first, second] = [await testAlert(id), await testAlert(id)];
    await cronAt(ALERT_GIVE_UP_MS + DAY_MS);
    expect((await sends(id)).map((send) => send.state)).toEqual(["given_up", "given_up"]);

    // Replayed 8 days on, still failing: tried again by the cron, not given up at its next failure.
    const target = alertTarget(configOf(env));
    const replayAt = Date.now() + ALERT_GIVE_UP_MS + DAY_MS;
    const replayed = await replayAlertSend(env.DB, target, id, first ?? "", replayAt);
    expect(replayed).toMatchObject({ attempts: 3, delivered_at: null, last_error: "the channel answered 500" });
    expect(replayed.next_attempt_at).not.toBeNull();
    await resendDueAlerts(env.DB, target, replayAt + 60 * 60_000);
    expect(await sendOf(id, first ?? "")).toMatchObject({ state: "pending", attempts: 4 });
    await resendDueAlerts(env.DB, target, replayAt + ALERT_GIVE_UP_MS);
    expect(await sendOf(id, first ?? "")).toMatchObject({ state: "given_up", attempts: 5 });

    // All of them at once: due now, for the cron to send at its pace.
    const bulk = await expectStatus<{ resent: number }>(
      await admin(`/v1/alert-channels/${id}/sends/resend`, { method: "POST" }),
      202,
    );
    expect(bulk.resent).toBe(2);
    const due = await sends(id);
    expect(due.map((send) => send.state)).toEqual(["pending", "pending"]);
    expect(due.every((send) => Date.parse(send.next_attempt_at ?? "") <= Date.now())).toBe(true);
    const before = (await partnerLog(path)).length;
    await cronAt(1_000);
    expect((await partnerLog(path)).length).toBe(before + 2);
    expect((await sends(id)).find((send) => send.alert_id === second)).toMatchObject({ state: "pending", attempts: 3 });
    // Nothing given up is left to replay.
    expect(
      (
        await expectStatus<{ resent: number }>(
          await admin(`/v1/alert-channels/${id}/sends/resend`, { method: "POST" }),
          202,
        )
      ).resent,
    ).toBe(0);
    await admin(`/v1/alert-channels/${id}`, { method: "DELETE" });
  });

  it("keeps ALERT_URL's sends as channel `default`: listed, and replayed once ALERT_URL is set", async () => {
    // The tests' hub has no ALERT_URL: its alerts are kept, and given up at once (nowhere to send).
    const id = await channel(`${PARTNER}/ok/${uniqueId("default")}`);
    const alertId = await testAlert(id);
    expect(await sendOf("default", alertId)).toMatchObject({
      state: "given_up",
      attempts: 0,
      last_error: "ALERT_URL is not set",
    });
    const refused = await expectProblem(
      await admin(`/v1/alert-channels/default/sends/${alertId}/resend`, { method: "POST" }),
      409,
      "invalid_state",
    );
    expect(refused.detail).toMatch(/ALERT_URL is not set/);
    await expectProblem(
      await admin("/v1/alert-channels/default/sends/resend", { method: "POST" }),
      409,
      "invalid_state",
    );

    // With ALERT_URL set, the same alert is sent, signed, and received.
    const received: string[] = [];
    const target = {
      url: "https://alerts.test/hook",
      secret: generateSecret(),
      fetch: (async (_url: string | URL | Request, init?: RequestInit) => {
        received.push(new Headers(init?.headers).get("webhook-id") ?? "");
        return new Response("ok");
      }) as typeof fetch,
    };
    const sent = await replayAlertSend(env.DB, target, "default", alertId);
    expect(sent).toMatchObject({ alert_id: alertId, attempts: 1, last_error: null });
    expect(sent.delivered_at).not.toBeNull();
    expect(received).toEqual([alertId]);
    expect(await sendOf("default", alertId)).toMatchObject({ state: "delivered" });
    await expect(replayAlertSend(env.DB, target, "default", alertId)).rejects.toMatchObject({ code: "invalid_state" });
    await admin(`/v1/alert-channels/${id}`, { method: "DELETE" });
  });

  it("shows no URL's credential in a send's last error", async () => {
    const id = await channel(`${PARTNER}/fail/${uniqueId("leak")}`);
    const alertId = await testAlert(id);
    await env.DB.prepare("UPDATE alert_sends SET last_error = ? WHERE alert_id = ? AND channel_id = ?")
      .bind("TypeError: fetch to https://hooks.slack.com/services/T0/B0/SECRETPATH?token=abc failed", alertId, id)
      .run();
    const shown = JSON.stringify(await sendOf(id, alertId));
    expect(shown).toContain("https://hooks.slack.com/…");
    expect(shown).not.toContain("SECRETPATH");
    expect(shown).not.toContain("abc");
    expect(shownError("the channel answered 500")).toBe("the channel answered 500");
    await admin(`/v1/alert-channels/${id}`, { method: "DELETE" });
  });
});
