/**
 * The upload of a reconciliation's report (docs/reconciliation.md): the CSV body is read as it
 * arrives (csv-parse's stream API over the request's stream, never the whole file in memory), each
 * row checked the way a postback's fields are, and staged in D1 a few thousand rows a batch. A report
 * with any bad row, a repeated transaction or too many rows is refused whole: what it staged is
 * deleted before the 4xx leaves, so nothing of a refused report is kept.
 */
import { CsvError, parse } from "csv-parse/stream";
import {
  AmountSchema,
  CONVERSION_STATUSES,
  type ConversionStatus,
  isCalendarDate,
  PostbackFieldsSchema,
  RFC_3339,
} from "../domain/postback";
import {
  MAX_REPORT_BYTES,
  MAX_REPORT_CELL_CHARS,
  MAX_REPORT_ERRORS,
  MAX_REPORT_ROWS,
  REPORT_FIELDS,
  REQUIRED_REPORT_FIELDS,
  type ReportField,
  type ReportMapping,
  type ReportRow,
  STAGE_ROWS_PER_STATEMENT,
  STAGE_STATEMENTS_PER_BATCH,
} from "../domain/reconciliation";
import { type FieldError, ProblemError, validationFailed } from "../errors";
import type { D1 } from "../storage/d1";
import { stagedLines, stageRowsStatement } from "../storage/reconciliations";

/** The delimiters a report may use, by the name a request gives (comma unless it says otherwise). */
export const REPORT_DELIMITERS = { comma: ",", semicolon: ";", tab: "\t", pipe: "|" } as const;
export const REPORT_DELIMITER_NAMES = Object.keys(REPORT_DELIMITERS) as (keyof typeof REPORT_DELIMITERS)[];
export type ReportDelimiter = (typeof REPORT_DELIMITERS)[keyof typeof REPORT_DELIMITERS];

/**
 * The mapping a request asks for, from its `<field>_column` and `<status>_values` parameters (the
 * API's query, the console's form): each report word means one status, or the request is a 422.
 */
export function reportMapping(
  value: (parameter: string) => string | undefined,
  where: "query" | "body",
): ReportMapping {
  const columns: ReportMapping["columns"] = {};
  for (const field of REPORT_FIELDS) {
    const column = value(`${field}_column`)?.trim();
    if (column) columns[field] = column;
  }
  // No prototype: a word such as "constructor" or "__proto__" is a key like any other.
  const statuses: ReportMapping["statuses"] = Object.create(null);
  const errors: FieldError[] = [];
  for (const status of CONVERSION_STATUSES) {
    for (const word of (value(`${status}_values`) ?? "").split(",")) {
      const key = word.trim().toLowerCase();
      if (key === "") continue;
      const earlier =
        (Object.hasOwn(statuses, key) ? statuses[key] : undefined) ??
        CONVERSION_STATUSES.find((known) => known === key);
      if (earlier !== undefined && earlier !== status) {
        errors.push({ location: `${where}.${status}_values`, message: `"${word.trim()}" already means ${earlier}` });
      }
      statuses[key] = status;
    }
  }
  if (errors.length > 0) throw validationFailed(errors);
  return { columns, statuses };
}

/** Where a mapped field's column is named in the request, for the errors that point at it. */
export function columnParameter(field: ReportField): string {
  return `query.${field}_column`;
}

/** The body's bytes, counted: beyond `limit` the stream fails with a 413. */
function limitBytes(limit: number): TransformStream<Uint8Array, Uint8Array> {
  let seen = 0;
  return new TransformStream({
    transform(chunk, controller) {
      seen += chunk.byteLength;
      if (seen > limit) {
        controller.error(
          new ProblemError(
            "payload_too_large",
            `The report is larger than ${limit / (1024 * 1024)} MiB: split it by period and reconcile each part.`,
            [{ location: "body", message: `must be at most ${limit} bytes` }],
          ),
        );
        return;
      }
      controller.enqueue(chunk);
    },
  });
}

/** The bytes as they are, failing at the first that is not UTF-8 (csv-parse would replace it silently). */
function utf8Only(): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
  const notUtf8 = () =>
    validationFailed([{ location: "body", message: "is not UTF-8 text: save the report as UTF-8 CSV" }]);
  return new TransformStream({
    transform(chunk, controller) {
      try {
        decoder.decode(chunk, { stream: true });
      } catch {
        controller.error(notUtf8());
        return;
      }
      controller.enqueue(chunk);
    },
    flush(controller) {
      try {
        decoder.decode();
      } catch {
        controller.error(notUtf8());
      }
    },
  });
}

/** The index of each mapped field's column in the header row; a required one missing is a 422. */
function columnIndexes(header: readonly string[], mapping: ReportMapping): Partial<Record<ReportField, number>> {
  const names = header.map((name) => name.trim().toLowerCase());
  const indexes: Partial<Record<ReportField, number>> = {};
  const errors: FieldError[] = [];
  for (const field of REPORT_FIELDS) {
    const column = mapping.columns[field] ?? field;
    const wanted = column.trim().toLowerCase();
    const index = names.indexOf(wanted);
    if (index >= 0 && names.lastIndexOf(wanted) !== index) {
      errors.push({
        location: columnParameter(field),
        message: `the report's header names "${column}" ${names.filter((name) => name === wanted).length} times: which one is ${field} cannot be told`,
      });
    } else if (index >= 0) indexes[field] = index;
    else if ((REQUIRED_REPORT_FIELDS as readonly string[]).includes(field)) {
      errors.push({
        location: columnParameter(field),
        message: `the report has no column "${column}" (its header: ${header.map((name) => JSON.stringify(name)).join(", ")}); name the report's column for ${field} with ${field}_column`,
      });
    }
  }
  if (errors.length > 0) throw validationFailed(errors);
  return indexes;
}

function firstIssue(result: { success: false; error: { issues: { message: string }[] } }): string {
  return result.error.issues[0]?.message ?? "is invalid";
}

/** A row's status in the report's words, mapped to the hub's; null when the mapping knows no such word. */
export function mapStatus(value: string, mapping: ReportMapping): ConversionStatus | null {
  const word = value.trim().toLowerCase();
  // Own keys only: a report's "constructor" or "__proto__" is a word, not Object.prototype's.
  const mapped = Object.hasOwn(mapping.statuses, word) ? mapping.statuses[word] : undefined;
  return mapped ?? CONVERSION_STATUSES.find((status) => status === word) ?? null;
}

const DATE_ONLY = /^\d{4}-\d{2}-\d{2}$/;
const FIRST_YEAR = 1970;
const LAST_YEAR = 9999;

/** A report's date as an ISO time: a real calendar day, or an RFC 3339 time, in 1970–9999; else null. */
export function reportDate(value: string): string | null {
  const text = DATE_ONLY.test(value) ? `${value}T00:00:00Z` : value;
  if (!RFC_3339.test(text) || !isCalendarDate(text)) return null;
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) return null;
  const year = new Date(ms).getUTCFullYear();
  return year < FIRST_YEAR || year > LAST_YEAR ? null : new Date(ms).toISOString();
}

/** One report row checked: the row, or the reasons it is not one (each naming its line and column). */
export function readRow(
  cells: readonly string[],
  line: number,
  indexes: Partial<Record<ReportField, number>>,
  mapping: ReportMapping,
): { row: ReportRow } | { errors: FieldError[] } {
  const errors: FieldError[] = [];
  const cell = (field: ReportField): string | null => {
    const index = indexes[field];
    const value = index === undefined ? undefined : cells[index]?.trim();
    return value === undefined || value === "" ? null : value;
  };
  const at = (field: ReportField) => `body.line[${line}].${mapping.columns[field] ?? field}`;
  const fail = (field: ReportField, message: string) => errors.push({ location: at(field), message });

  const transactionCell = cell("transaction_id");
  const transaction = PostbackFieldsSchema.shape.transaction_id.safeParse(transactionCell ?? "");
  if (!transaction.success) fail("transaction_id", transactionCell === null ? "is empty" : firstIssue(transaction));

  const statusCell = cell("status");
  const status = statusCell === null ? null : mapStatus(statusCell, mapping);
  if (status === null) {
    fail(
      "status",
      statusCell === null
        ? "is empty"
        : `"${statusCell}" is not a status the hub knows (${CONVERSION_STATUSES.join(", ")}); say which it is with, e.g., declined_values=${statusCell}`,
    );
  }

  const money = (amountField: "amount" | "payout", currencyField: "currency" | "payout_currency") => {
    const amountCell = cell(amountField);
    const currencyCell = cell(currencyField) ?? (currencyField === "payout_currency" ? cell("currency") : null);
    if (amountCell === null) return { amount: null, currency: null };
    const amount = AmountSchema.safeParse(amountCell);
    if (!amount.success) fail(amountField, `"${amountCell}" ${firstIssue(amount)}`);
    if (currencyCell === null) {
      fail(currencyField === "currency" ? "currency" : "payout_currency", `is empty, and ${amountField} needs one`);
      return { amount: null, currency: null };
    }
    const currency = PostbackFieldsSchema.shape.currency.safeParse(currencyCell);
    if (!currency.success) fail(currencyField, `"${currencyCell}" ${firstIssue(currency)}`);
    return {
      amount: amount.success ? amount.data : null,
      currency: currency.success ? (currency.data ?? null) : null,
    };
  };
  const amount = money("amount", "currency");
  if (amount.amount === null && cell("currency") !== null && cell("amount") === null) {
    fail("amount", "is empty, but the row has a currency");
  }
  const payout = money("payout", "payout_currency");

  const dateCell = cell("date");
  let reportedAt: string | null = null;
  if (dateCell !== null) {
    reportedAt = reportDate(dateCell);
    if (reportedAt === null) {
      fail("date", `"${dateCell}" is not a real date (YYYY-MM-DD) or RFC 3339 time between 1970 and 9999`);
    }
  }

  if (errors.length > 0 || !transaction.success || status === null) return { errors };
  return {
    row: {
      line,
      transaction_id: transaction.data as string,
      status,
      amount: amount.amount,
      currency: amount.currency,
      payout: payout.amount,
      payout_currency: payout.currency,
      reported_at: reportedAt,
    },
  };
}

/** The error of a report csv-parse could not read (unclosed quote, a row of another width…), as a 422. */
function unreadable(error: CsvError): ProblemError {
  const line = (error as CsvError & { lines?: number }).lines;
  return validationFailed([
    {
      location: line === undefined ? "body" : `body.line[${line}]`,
      message: `is not CSV the hub can read: ${error.message}`,
    },
  ]);
}

/**
 * Reads the report from `body` and stages its rows under `reconciliationId`; answers how many. On
 * any refusal it throws the 4xx, having staged at most what came before (the caller deletes it).
 */
export async function stageReport(
  db: D1,
  reconciliationId: string,
  mapping: ReportMapping,
  delimiter: ReportDelimiter,
  body: ReadableStream<Uint8Array>,
): Promise<number> {
  const records = body
    .pipeThrough(limitBytes(MAX_REPORT_BYTES))
    .pipeThrough(utf8Only())
    .pipeThrough(
      parse({
        bom: true,
        delimiter,
        skip_empty_lines: true,
        max_record_size: MAX_REPORT_CELL_CHARS * 16,
        info: true,
      }),
    ) as ReadableStream<{ record: string[]; info: { lines: number } }>;

  let indexes: Partial<Record<ReportField, number>> | null = null;
  const errors: FieldError[] = [];
  // The rows waiting to be staged, by transaction: a repeat within them is found here, a repeat of
  // one staged before by D1's unique index (so memory holds one batch, not the report's ids).
  let pending = new Map<string, ReportRow>();
  let rows = 0;
  const transactionColumn = mapping.columns.transaction_id ?? "transaction_id";
  const repeated = (line: number, transactionId: string, earlier: number): FieldError => ({
    location: `body.line[${line}].${transactionColumn}`,
    message: `"${transactionId}" is on line ${earlier} too: a report names each transaction once`,
  });

  const flush = async () => {
    const batch = [...pending.values()];
    pending = new Map();
    if (batch.length === 0) return;
    const statements: D1PreparedStatement[] = [];
    for (let start = 0; start < batch.length; start += STAGE_ROWS_PER_STATEMENT) {
      statements.push(stageRowsStatement(db, reconciliationId, batch.slice(start, start + STAGE_ROWS_PER_STATEMENT)));
    }
    const results = await db.batch(statements);
    const staged = results.reduce((sum, result) => sum + (result.meta.changes ?? 0), 0);
    if (staged === batch.length) return;
    const earlier = await stagedLines(
      db,
      reconciliationId,
      batch.map((row) => row.transaction_id),
    );
    for (const row of batch) {
      const line = earlier.get(row.transaction_id);
      if (line !== undefined && line !== row.line) errors.push(repeated(row.line, row.transaction_id, line));
    }
  };

  try {
    for await (const { record, info } of records) {
      if (indexes === null) {
        indexes = columnIndexes(record, mapping);
        continue;
      }
      rows += 1;
      if (rows > MAX_REPORT_ROWS) {
        throw new ProblemError(
          "payload_too_large",
          `The report has more than ${MAX_REPORT_ROWS} rows: split it by period and reconcile each part.`,
          [{ location: "body", message: `must have at most ${MAX_REPORT_ROWS} rows` }],
        );
      }
      if (record.some((value) => value.length > MAX_REPORT_CELL_CHARS)) {
        errors.push({
          location: `body.line[${info.lines}]`,
          message: `has a cell longer than ${MAX_REPORT_CELL_CHARS} characters`,
        });
      } else {
        const read = readRow(record, info.lines, indexes, mapping);
        if ("errors" in read) errors.push(...read.errors);
        else {
          const earlier = pending.get(read.row.transaction_id);
          if (earlier !== undefined) errors.push(repeated(info.lines, read.row.transaction_id, earlier.line));
          // After the first refusal nothing more is staged: the rest is only read for its errors.
          else if (errors.length === 0) pending.set(read.row.transaction_id, read.row);
        }
      }
      if (errors.length >= MAX_REPORT_ERRORS) break;
      if (pending.size >= STAGE_ROWS_PER_STATEMENT * STAGE_STATEMENTS_PER_BATCH) await flush();
    }
  } catch (error) {
    if (error instanceof CsvError) throw unreadable(error);
    throw error;
  }
  if (errors.length > 0) throw validationFailed(errors.slice(0, MAX_REPORT_ERRORS));
  if (indexes === null) {
    throw validationFailed([
      { location: "body", message: "is empty: a report starts with a header row naming its columns" },
    ]);
  }
  await flush();
  if (errors.length > 0) throw validationFailed(errors.slice(0, MAX_REPORT_ERRORS));
  return rows;
}
