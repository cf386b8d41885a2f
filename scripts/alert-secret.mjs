// Prints a new ALERT_SECRET: Standard Webhooks' whsec_ and 32 random bytes in base64. Set it with
// `npx wrangler secret put ALERT_SECRET` (and give it to whatever receives ALERT_URL, which
// verifies each alert's webhook-signature with it: docs/partners-and-delivery.md#alerts).
import { randomBytes } from "node:crypto";

process.stdout.write(`whsec_${randomBytes(32).toString("base64")}\n`);
