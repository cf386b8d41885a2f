/**
 * The console's downloads (docs/console.md): a list page's "Download CSV" and "Download NDJSON"
 * links, carrying the page's own filters, and the answer of the export route they open: every row
 * those filters select, streamed page by page as the API's export of the same list streams it
 * (reports/export-file.ts), with the same columns and items.
 */
import type { FC } from "hono/jsx";
import { validationFailed } from "../errors";
import { type ExportColumn, keysetPages, mapPages, type StreamedFormat } from "../lib/export-stream";
import { exportFileResponse, exportPageRows } from "../reports/export-file";
import { type ConsoleContext, pageOf, param } from "./context";

const FORMATS: readonly StreamedFormat[] = ["csv", "ndjson"];
const LABELS: Record<StreamedFormat, string> = { csv: "Download CSV", ndjson: "Download NDJSON" };

/** The export link of a page: its export route with the page's filters (those set) and the format. */
export function downloadHref(path: string, filters: Record<string, string | undefined>, format: StreamedFormat) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(filters)) if (value !== undefined) query.set(name, value);
  query.set("format", format);
  return `${path}?${query.toString()}`;
}

export const DownloadLinks: FC<{ path: string; filters: Record<string, string | undefined>; note: string }> = (
  props,
) => (
  <div class="actions" id="downloads">
    {FORMATS.map((format) => (
      <a class="button" id={`download-${format}`} href={downloadHref(props.path, props.filters, format)} download>
        {LABELS[format]}
      </a>
    ))}
    <span class="muted">{props.note}</span>
  </div>
);

/** `format`, which the links always carry: csv or ndjson; anything else (an edited URL) is a 422 page. */
export function formatParam(c: ConsoleContext): StreamedFormat {
  const value = param(c, "format");
  if (value !== undefined && (FORMATS as readonly string[]).includes(value)) return value as StreamedFormat;
  throw validationFailed([{ location: "query.format", message: `must be one of ${FORMATS.join(", ")}` }]);
}

export interface ConsoleExport<Row, Key, Item> {
  name: string;
  format: StreamedFormat;
  columns: readonly ExportColumn<Item>[];
  /** A keyset page of the list: `limit` rows after `after` (the API's list query). */
  fetchPage: (after: Key | null, limit: number) => Promise<Row[]>;
  keyOf: (row: Row) => Key;
  toItem: (row: Row) => Item;
}

/** The download: every row, a page at a time in the API export's page sizes, never held whole. */
export function exportAnswer<Row, Key, Item>(c: ConsoleContext, request: ConsoleExport<Row, Key, Item>) {
  const rows = keysetPages(request.fetchPage, request.keyOf, exportPageRows);
  return exportFileResponse({
    name: request.name,
    format: request.format,
    columns: request.columns,
    pages: mapPages(rows, request.toItem),
    requestId: c.get("requestId"),
    keyId: pageOf(c).principal.key_id,
    via: "console",
  });
}
