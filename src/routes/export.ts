/**
 * The HTTP side of exports (docs/reports.md#exports): a list operation answers its page as JSON, or
 * every matching row as a streamed CSV or NDJSON attachment, chosen by `format` or `Accept`. The
 * list's route keeps its filters and its guard (access/policy.ts); this module picks the format,
 * refuses what has no meaning in a stream, and writes the answer over lib/export-stream.ts.
 */
import { z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { ProblemError } from "../errors";
import {
  EXPORT_FORMATS,
  EXPORT_MEDIA_TYPES,
  type ExportColumn,
  type ExportFormat,
  exportStream,
  negotiateFormat,
  type StreamedFormat,
} from "../lib/export-stream";
import { principalOf } from "./admin-auth";
import type { AppEnv } from "./common";

export const FormatQuerySchema = z
  .enum(EXPORT_FORMATS, { error: `must be one of ${EXPORT_FORMATS.join(", ")}` })
  .optional()
  .openapi({
    description:
      "`json` (a page, the default), or `csv` / `ndjson`: every matching row, streamed as an attachment (docs/reports.md#exports). Wins over `Accept` (`text/csv`, `application/x-ndjson`).",
  });

/**
 * Rows per D1 query of an export, by page: the first pages small so the answer starts at once, then
 * doubling to a ceiling, so that a large export spends few queries (D1 allows 1,000 per invocation on
 * Workers Paid: about 4 million rows) while a slow reader still holds one page at most.
 */
export const EXPORT_FIRST_PAGE_ROWS = 250;
export const EXPORT_MAX_PAGE_ROWS = 4000;
export function exportPageRows(index: number): number {
  return Math.min(EXPORT_FIRST_PAGE_ROWS * 2 ** Math.min(index, 16), EXPORT_MAX_PAGE_ROWS);
}

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
 * The streamed answer. Nothing of the request goes into the file name (no header injection); the
 * answer is never cached (it holds partners' and networks' records). A failure after the first byte
 * breaks the transfer (lib/export-stream.ts) and is logged with the request id and how far it got.
 */
export async function exportResponse<Item>(c: Context<AppEnv>, request: ExportRequest<Item>): Promise<Response> {
  const requestId = c.get("requestId");
  const principal = principalOf(c);
  const body = await exportStream({
    format: request.format,
    columns: request.columns,
    pages: request.pages,
    onEnd: ({ rows, pages, error }) => {
      const line = {
        message: error ? "export failed after it started" : "export finished",
        request_id: requestId,
        export: request.name,
        format: request.format,
        key_id: principal.key_id,
        rows,
        pages,
        ...(error ? { error: String(error) } : {}),
      };
      if (error) console.error(JSON.stringify(line));
      else console.log(JSON.stringify(line));
    },
  });
  const stamp = new Date()
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": EXPORT_MEDIA_TYPES[request.format],
      "content-disposition": `attachment; filename="${request.name}-${stamp}.${request.format}"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      vary: "Accept",
    },
  });
}
