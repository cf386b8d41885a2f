// Plain-text tables for the bench's console report, rendered from data: a list of columns, each a
// header and a function of the row, and a list of row objects. No scenario writes a cell by hand.

/** A number with `digits` decimals, or "n/a" for NaN and the infinities (nothing was measured). */
export const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");

/** "yes" or "NO" for a goal; "" for a row without one. */
export const met = (ok) => (ok === undefined ? "" : ok ? "yes" : "NO");

/**
 * The lines of a table: headers, a rule, one line per row; columns padded to their widest cell and
 * two spaces apart. `columns` is `[{ header, cell(row) }]`; a cell of undefined or null prints empty.
 */
export function renderTable(columns, rows) {
  const cells = rows.map((row) => columns.map((column) => String(column.cell(row) ?? "")));
  const widths = columns.map((column, i) => Math.max(column.header.length, ...cells.map((r) => r[i].length)));
  const line = (values) => values.map((value, i) => value.padEnd(widths[i])).join("  ");
  return [line(columns.map((c) => c.header)), widths.map((w) => "-".repeat(w)).join("  "), ...cells.map(line)];
}

export function printTable(columns, rows) {
  for (const line of renderTable(columns, rows)) console.log(line);
}
