/**
 * The hub's log lines as Workers Logs would store them: one JSON line per request and per queue
 * batch, searchable by request id, and not one secret in any of them. Every credential the hub
 * issues or receives is used the way its users use it (a signed postback, a token in a GET URL and
 * in a header, a wrong token, an API key, a console sign-in, a partner URL with its own key, a
 * signed delivery), then every line written meanwhile is scanned for each value.
 */
import { env, exports } from "cloudflare:workers";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { redact } from "../src/lib/log";
import { createApiKey, signIn } from "./support/console";
import {
  admin,
  BASE,
  createPartner,
  eventually,
  expectStatus,
  makePostback,
  PARTNER,
  partnerLog,
  postback,
  uniqueId,
} from "./support/helpers";
import { createInboundNetwork, getPostback, TOKEN_ONLY, TRACKER_MAPPING } from "./support/inbound";

function capture(): string[] {
  const lines: string[] = [];
  for (const level of ["log", "info", "warn", "error"] as const) {
    const spy = vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
    onTestFinished(() => spy.mockRestore());
  }
  return lines;
}

function parsed(lines: readonly string[]): Record<string, unknown>[] {
  return lines.flatMap((line) => {
    try {
      const value: unknown = JSON.parse(line);
      return typeof value === "object" && value !== null ? [value as Record<string, unknown>] : [];
    } catch {
      return [];
    }
  });
}

describe("log lines", () => {
  it("carry no secret, token, key or credential-bearing URL, whatever was sent", async () => {
    const lines = capture();
    const prefix = `/${uniqueId("logs")}`;
    const partnerKeyInUrl = `pk-${crypto.randomUUID()}`;
    const network = await createInboundNetwork({ auth: TOKEN_ONLY, mapping: TRACKER_MAPPING });
    const signed = await expectStatus<{ id: string; secret: string }>(
      await admin("/v1/networks", { method: "POST", body: JSON.stringify({ id: uniqueId("net"), name: "Signed" }) }),
      201,
    );
    const partner = await createPartner({
      url_template: `${PARTNER}${prefix}/pb?tx={transaction_id}&api_key=${partnerKeyInUrl}`,
      sign: true,
      filters: { networks: [signed.id] },
    });
    const apiKey = await createApiKey("operator");
    const token = network.token ?? "";
    expect(token).toMatch(/^pbt_/);

    // A token in the query, in a header, and a wrong one; a signed JSON postback.
    const txid = uniqueId("tx");
    expect((await getPostback(network.id, { txid, status: "1", payout: "2.5", token })).status).toBe(200);
    expect(
      (await getPostback(network.id, { txid: uniqueId("tx"), status: "1" }, { "x-postback-token": token })).status,
    ).toBe(200);
    const wrong = `pbt_${"x".repeat(32)}`;
    expect((await getPostback(network.id, { txid: uniqueId("tx"), status: "1", token: wrong })).status).toBe(401);
    const transactionId = uniqueId("tx");
    expect(
      (await postback({ id: signed.id, secret: signed.secret }, makePostback({ transaction_id: transactionId })))
        .status,
    ).toBe(200);
    // An API key on the admin API and in the console's sign-in form.
    const listed = await exports.default.fetch(
      new Request(`${BASE}/v1/conversions?network_id=${signed.id}`, {
        headers: { authorization: `Bearer ${apiKey.key}` },
      }),
    );
    expect(listed.status).toBe(200);
    await signIn(apiKey.key);
    // The partner hears of the signed network's conversion, signed with its own secret.
    await eventually(async () => ((await partnerLog(prefix)).length > 0 ? true : null));
    const partnerSecret = (partner as unknown as { signing_secret?: string }).signing_secret ?? "";
    expect(partnerSecret).toMatch(/^whsec_/);

    const secrets = {
      "the network's token": token,
      "a wrong token": wrong,
      "the signing secret": signed.secret,
      "the signing secret's key part": signed.secret.replace(/^whsec_/, ""),
      "the API key": apiKey.key,
      "the admin token": env.ADMIN_TOKEN,
      "the partner's signing secret": partnerSecret,
      "the partner's key in its URL": partnerKeyInUrl,
    };
    expect(lines.length).toBeGreaterThan(10);
    for (const [what, value] of Object.entries(secrets)) {
      const leaking = lines.filter((line) => line.includes(value));
      expect(leaking, `${what} is in ${leaking.length} log lines: ${leaking.slice(0, 3).join("\n")}`).toEqual([]);
    }

    // One line per request, by request id, with what Workers Logs is searched by.
    const records = parsed(lines);
    const requests = records.filter((record) => record.message === "request");
    const postbackLines = requests.filter((record) => record.network_id === network.id);
    expect(postbackLines.map((record) => [record.method, record.route, record.status, record.verdict])).toEqual([
      ["GET", "/v1/postbacks/:network_id", 200, "accepted"],
      ["GET", "/v1/postbacks/:network_id", 200, "accepted"],
      ["GET", "/v1/postbacks/:network_id", 401, "unauthorized"],
    ]);
    for (const record of postbackLines) {
      expect(record).toMatchObject({ level: "info", request_id: expect.any(String), duration_ms: expect.any(Number) });
      expect(String(record.path)).not.toContain("?");
    }
    expect(new Set(requests.map((record) => record.request_id)).size).toBe(requests.length);
    expect(records.some((record) => record.message === "queue batch" && record.outcome === "ok")).toBe(true);
  });

  it("redacts credentials in any text, URLs first", () => {
    expect(redact("fetch https://p.test/pb?tx=1&token=abc&api_key=xyz&sub=2 failed")).toBe(
      "fetch https://p.test/pb?tx=1&token=(redacted)&api_key=(redacted)&sub=2 failed",
    );
    expect(redact("https://user:pw@p.test/x")).toBe("https://(redacted):(redacted)@p.test/x");
    expect(redact("Authorization: Bearer phk_abcdefghijklmnopqrstuvwxyz")).toBe("Authorization: Bearer (redacted)");
    expect(redact("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw and pbt_AAAAAAAAAAAAAAAAAAAAAAAA")).toBe(
      "secret (redacted) and (redacted)",
    );
    expect(redact("?tid=1&pb_sig=deadbeef")).toBe("?tid=1&pb_sig=(redacted)");
    expect(redact("nothing to hide: tx=ord_1 status=approved")).toBe("nothing to hide: tx=ord_1 status=approved");
  });
});
