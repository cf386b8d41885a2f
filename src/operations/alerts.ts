/** Operator alerts: a JSON POST to ALERT_URL when one is configured; a failed alert is logged, never fatal. */
const ALERT_TIMEOUT_MS = 5_000;

export interface Alert {
  type: "partner_disabled";
  partner_id: string;
  name: string;
  reason: string;
}

export async function sendAlert(url: string | null, alert: Alert, fetcher: typeof fetch = fetch): Promise<void> {
  console.warn(JSON.stringify({ message: "alert", ...alert }));
  if (!url) return;
  try {
    const response = await fetcher(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "postback-hub/1.0" },
      body: JSON.stringify({ ...alert, at: new Date().toISOString() }),
      signal: AbortSignal.timeout(ALERT_TIMEOUT_MS),
    });
    if (!response.ok) console.error(JSON.stringify({ message: "alert not accepted", status: response.status }));
  } catch (error) {
    console.error(JSON.stringify({ message: "alert could not be sent", error: String(error) }));
  }
}
