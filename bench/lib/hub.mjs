// What the throughput scenarios need from the hub: its admin API, postback bodies, the partner's
// receipts, and the events consumer's batch sizes read from wrangler's log.

export function postbackBody(transactionId, amount = "29.90") {
  return JSON.stringify({
    transaction_id: transactionId,
    status: "approved",
    amount,
    currency: "USD",
    event_type: "purchase",
    campaign_id: "camp-bench",
    click_id: `clk-${transactionId}`,
    platform: "web",
  });
}

export async function admin(hub, method, route, payload) {
  const response = await fetch(`${hub.baseUrl}${route}`, {
    method,
    headers: { authorization: `Bearer ${hub.adminToken}`, "content-type": "application/json" },
    body: payload === undefined ? undefined : JSON.stringify(payload),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
  // A 204 (a DELETE) has no body.
  return text ? JSON.parse(text) : null;
}

/** When the partner first received each transaction, by the `tx` parameter of its URL template. */
export function firstReceipts(partner) {
  const first = new Map();
  for (const request of partner.requests) {
    const tx = new URL(request.url, partner.origin).searchParams.get("tx") ?? "";
    if (!first.has(tx)) first.set(tx, request.receivedAtMs);
  }
  return first;
}

/** Collects the events consumer's batch sizes from wrangler's `QUEUE postback-events n/m` lines. */
export function queueWatcher(hub) {
  let buffer = "";
  let sizes = [];
  hub.onOutput((text) => {
    buffer += text;
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) {
      const match = /QUEUE postback-events (\d+)\/(\d+)/.exec(line);
      if (match) sizes.push(Number(match[2]));
    }
  });
  return {
    /** The batch sizes seen since the last call. */
    take() {
      const taken = sizes;
      sizes = [];
      return taken;
    },
  };
}
