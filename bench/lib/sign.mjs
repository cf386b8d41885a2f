// Standard Webhooks signing with node:crypto, as a network does it: HMAC-SHA256 keyed by the
// base64-decoded part of the whsec_ secret, over "<webhook-id>.<webhook-timestamp>.<raw body>".
import { createHmac, randomBytes } from "node:crypto";

export function signer(secret) {
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  return (id, timestamp, body) =>
    `v1,${createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64")}`;
}

export function messageId() {
  return `msg_${randomBytes(12).toString("hex")}`;
}

/** One signed POST of `body` to the network, in the shape autocannon's requests take. */
export function signedPostback(network, body, id = messageId(), timestamp = Math.floor(Date.now() / 1000)) {
  return {
    method: "POST",
    path: `/v1/postbacks/${network.id}`,
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": String(timestamp),
      "webhook-signature": network.sign(id, timestamp, body),
    },
    body,
  };
}
