/**
 * A partner as the hub meets it in the wild: a real HTTP server on 127.0.0.1 that records every
 * request and answers each attempt of a delivery (keyed by `webhook-id`) as a script says, holding
 * the response past the hub's timeout when told to.
 */
import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";

export type PartnerAnswer = { status: number; body: string } | { holdMs: number; status: number; body: string };

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** The request's `webhook-id` header ("" when absent). */
  webhookId: string;
  /** 1 for the first request with this `webhook-id`, 2 for the next, … */
  attempt: number;
  receivedAtMs: number;
  /** What the server answered; null while it holds the response, or when the hub hung up before it answered. */
  answeredStatus: number | null;
  /** The response was held on purpose. */
  held: boolean;
  /** The hub closed the connection before the server answered. */
  hubHungUp: boolean;
  /** When the exchange ended (answered, or the hub hung up); null while it is still open. */
  endedAtMs: number | null;
}

export interface PartnerServer {
  /** http://127.0.0.1:<port> */
  origin: string;
  requests: ReceivedRequest[];
  close(): Promise<void>;
}

export async function startPartnerServer(script: (attempt: number) => PartnerAnswer): Promise<PartnerServer> {
  const requests: ReceivedRequest[] = [];
  const attemptsById = new Map<string, number>();
  const holds = new Set<NodeJS.Timeout>();

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const webhookId = headerValue(req.headers["webhook-id"]);
      const attempt = (attemptsById.get(webhookId) ?? 0) + 1;
      attemptsById.set(webhookId, attempt);
      const answer = script(attempt);
      const record: ReceivedRequest = {
        method: req.method ?? "",
        url: req.url ?? "",
        headers: Object.fromEntries(Object.entries(req.headers).map(([name, value]) => [name, headerValue(value)])),
        body: Buffer.concat(chunks).toString("utf8"),
        webhookId,
        attempt,
        receivedAtMs: Date.now(),
        answeredStatus: null,
        held: "holdMs" in answer,
        hubHungUp: false,
        endedAtMs: null,
      };
      requests.push(record);
      res.on("close", () => {
        record.endedAtMs = Date.now();
        if (!res.writableEnded) record.hubHungUp = true;
      });
      const respond = () => {
        if (res.destroyed || record.hubHungUp) return;
        record.answeredStatus = answer.status;
        res.writeHead(answer.status, { "content-type": "text/plain" }).end(answer.body);
      };
      if ("holdMs" in answer) {
        const timer = setTimeout(() => {
          holds.delete(timer);
          respond();
        }, answer.holdMs);
        holds.add(timer);
      } else {
        respond();
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("could not read the partner server's port");

  return {
    origin: `http://127.0.0.1:${address.port}`,
    requests,
    async close() {
      for (const timer of holds) clearTimeout(timer);
      holds.clear();
      const closed = once(server, "close");
      server.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

function headerValue(value: string | string[] | undefined): string {
  return Array.isArray(value) ? value.join(", ") : (value ?? "");
}
