/**
 * Cron: disables partners whose every attempt has failed for PARTNER_AUTO_DISABLE_HOURS (with at
 * least PARTNER_AUTO_DISABLE_MIN_ATTEMPTS of them), parks their deliveries and alerts the operator.
 * Re-enabling a partner resumes its parked deliveries.
 */
import type { Config } from "../config";
import type { D1 } from "../storage/d1";
import { disablePartnerStatements } from "../storage/deliveries";
import { partnersFailingSince } from "../storage/partners";
import { sendAlert } from "./alerts";

export async function autoDisableFailingPartners(
  db: D1,
  config: Pick<Config, "PARTNER_AUTO_DISABLE_HOURS" | "PARTNER_AUTO_DISABLE_MIN_ATTEMPTS" | "ALERT_URL">,
  nowMs: number,
  fetcher: typeof fetch = fetch,
): Promise<string[]> {
  const since = new Date(nowMs - config.PARTNER_AUTO_DISABLE_HOURS * 3_600_000).toISOString();
  const failing = await partnersFailingSince(db, since, config.PARTNER_AUTO_DISABLE_MIN_ATTEMPTS);
  const now = new Date(nowMs).toISOString();
  for (const partner of failing) {
    await db.batch(disablePartnerStatements(db, partner.id, "failing", now));
    await sendAlert(
      config.ALERT_URL,
      {
        type: "partner_disabled",
        partner_id: partner.id,
        name: partner.name,
        reason: `every attempt failed since ${partner.failing_since} (${partner.failures} attempts)`,
      },
      fetcher,
    );
  }
  return failing.map((p) => p.id);
}
