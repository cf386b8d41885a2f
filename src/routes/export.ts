/**
 * The HTTP side of exports (docs/reports.md#exports): a list operation answers its page as JSON, or
 * every matching row as a streamed CSV or NDJSON attachment, chosen by `format` or `Accept`. The
 * list's route keeps its filters and its guard (access/policy.ts); this module picks the format,
 * refuses what has no meaning in a stream, and writes the answer through reports/export-file.ts
 * (the console's downloads answer through it too).
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ProblemError } from "../errors";
import {
  EXPORT_FORMATS,
  type ExportColumn,
  type ExportFormat,
  negotiateFormat,
  type StreamedFormat,
} from "../lib/export-stream";
import { exportFileResponse } from "../reports/export-file";
import { principalOf } from "./admin-auth";
import type { AppEnv } from "./common";

export const FormatQuerySchema = z
  .enum(EXPORT_FORMATS, { error: `must be one of ${EXPORT_FORMATS.join(", ")}` })
  .optional()
  .openapi({
    description:
      "`json` (a page, the default), or `csv` / `ndjson`: every matching row, streamed as an attachment (docs/reports.md#exports). Wins over `Accept` (`text/csv`, `application/x-ndjson`).",
  });

/** The format a list answers in, or a 400 when a stream is asked with a parameter it cannot honour. */
export function listFormat(c: Context<AppEnv>, query: ExportFormat | undefined): ExportFormat {
  // The answer's type depends on Accept, JSON pages included: a cache must not hand one to the other.
  c.header("vary", "Accept");
  const format = negotiateFormat(query, c.req.header("accept"));
  if (format !== "json" && c.req.query("limit") !== undefined) {
    throw new ProblemError(
      "invalid_request",
      `A ${format} export streams every matching row; limit sizes a JSON page only. Remove limit, or ask for format=json to page.`,
      [{ location: "query.limit", message: `does not apply to a ${format} export` }],
    );
  }
  return format;
}

/** The 200 content types of a list that exports, for its OpenAPI response. */
export function exportContent(what: string, columns: readonly ExportColumn<never>[]) {
  return {
    "text/csv": {
      schema: z.string().openapi({
        description: `Every matching ${what}, one row each after a header row (RFC 4180, CRLF): ${columns.map((column) => column.name).join(", ")}. Money as exact decimal strings, times RFC 3339 UTC, meta as a JSON string; a cell starting with = + - @ ' tab or a line break has one leading apostrophe added (docs/reports.md#exports).`,
        example: `${columns.map((column) => column.name).join(",")}\r\n`,
      }),
    },
    "application/x-ndjson": {
      schema: z.string().openapi({
        description: `Every matching ${what}, one JSON object per line, each exactly as an item of the JSON list.`,
      }),
    },
  };
}

export const EXPORT_HEADERS = {
  "Content-Disposition": {
    description: 'For csv and ndjson: `attachment; filename="<list>-<UTC time>.<csv|ndjson>"`.',
    schema: { type: "string" as const },
  },
};

export interface ExportRequest<Item> {
  /** The list's name, the start of the file's name: `conversions`, `deliveries`, `stats`. */
  name: string;
  format: StreamedFormat;
  columns: readonly ExportColumn<Item>[];
  pages: AsyncIterable<readonly Item[]>;
}

/**
 * The streamed answer (reports/export-file.ts: nothing of the request in the file name, never
 * cached, a failure after the first byte breaks the transfer and is logged), varying by Accept.
 */
export function exportResponse<Item>(c: Context<AppEnv>, request: ExportRequest<Item>): Promise<Response> {
  return exportFileResponse({
    ...request,
    requestId: c.get("requestId"),
    keyId: principalOf(c).key_id,
    via: "api",
    headers: { vary: "Accept" },
  });
}
