/** Guards every admin route: `Authorization: Bearer <ADMIN_TOKEN>`, compared in constant time. */
import type { MiddlewareHandler } from "hono";
import { configOf } from "../config";
import { ProblemError } from "../errors";
import { secretsEqual } from "../lib/bytes";
import type { AppEnv } from "./common";

export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const { ADMIN_TOKEN } = configOf(c.env);
  const header = c.req.header("authorization") ?? "";
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match?.[1] || !(await secretsEqual(match[1], ADMIN_TOKEN))) {
    throw new ProblemError(
      "unauthorized",
      header ? "The admin token is wrong." : "Send the admin token as Authorization: Bearer <ADMIN_TOKEN>.",
      [{ location: "header.authorization", message: header ? "does not hold the admin token" : "is missing" }],
      { "www-authenticate": 'Bearer realm="postback-hub"' },
    );
  }
  await next();
};
