/**
 * An export as an HTTP answer (docs/reports.md#exports): the page sizes it reads D1 in, and the
 * streamed attachment with its headers and its log line. Shared by the API's lists (routes/export.ts
 * adds what is the API's own: format negotiation, the OpenAPI parts) and the console's downloads,
 * so that both answer a file the same way.
 */
import type { ExportColumn, StreamedFormat } from "../lib/export-stream";
import { EXPORT_MEDIA_TYPES, exportStream } from "../lib/export-stream";
import { logLine } from "../lib/log";

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

export interface ExportFile<Item> {
  /** The list's name, the start of the file's name: `conversions`, `deliveries`, `stats`. */
  name: string;
  format: StreamedFormat;
  columns: readonly ExportColumn<Item>[];
  pages: AsyncIterable<readonly Item[]>;
  /** For the log line: the request and the key that asked, and where from (api, console). */
  requestId: string | undefined;
  keyId: string;
  via: "api" | "console";
  /** Headers the caller adds (the API's `vary: Accept`). */
  headers?: Record<string, string>;
}

/** The file's name: the list's and the UTC time, nothing of the request (no header injection). */
export function exportFileName(name: string, format: StreamedFormat, now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${name}-${stamp}.${format}`;
}

/**
 * The streamed answer. The answer is never cached (it holds partners' and networks' records). A
 * failure after the first byte breaks the transfer (lib/export-stream.ts) and is logged with the
 * request id and how far it got.
 */
export async function exportFileResponse<Item>(file: ExportFile<Item>): Promise<Response> {
  const body = await exportStream({
    format: file.format,
    columns: file.columns,
    pages: file.pages,
    onEnd: ({ rows, pages, error }) => {
      const line = {
        message: error ? "export failed after it started" : "export finished",
        request_id: file.requestId,
        export: file.name,
        format: file.format,
        key_id: file.keyId,
        via: file.via,
        rows,
        pages,
        ...(error ? { error: String(error) } : {}),
      };
      logLine(error ? "error" : "info", line);
    },
  });
  return new Response(body, {
    status: 200,
    headers: {
      "content-type": EXPORT_MEDIA_TYPES[file.format],
      "content-disposition": `attachment; filename="${exportFileName(file.name, file.format)}"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
      ...file.headers,
    },
  });
}
