// A partner for the end-to-end scenario: an HTTP server on 127.0.0.1 that answers 200 and records
// when each delivery arrived, keyed by the `tx` query parameter of the partner's URL template.
import { once } from "node:events";
import { createServer } from "node:http";

export async function startPartner() {
  /** @type {Map<string, number>} first receipt time (ms) per transaction id */
  const received = new Map();
  let requests = 0;
  const server = createServer((req, res) => {
    const at = Date.now();
    requests += 1;
    const tx = new URL(req.url ?? "/", "http://partner").searchParams.get("tx") ?? "";
    if (!received.has(tx)) received.set(tx, at);
    req.resume();
    req.on("end", () => res.writeHead(200, { "content-type": "text/plain" }).end("OK"));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("could not read the partner's port");
  return {
    origin: `http://127.0.0.1:${address.port}`,
    received,
    requests: () => requests,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}
