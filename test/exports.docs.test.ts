/** docs/reports.md lists the CSV columns of each export exactly as the routes write them, in order. */
import { describe, expect, it } from "vitest";
import reports from "../docs/reports.md?raw";
import { CONVERSION_COLUMNS } from "../src/reports/conversion-export";
import { DELIVERY_COLUMNS } from "../src/reports/delivery-export";
import { tables, unquote } from "./support/markdown";

describe("docs/reports.md", () => {
  it("names every CSV column of the conversion and delivery exports, in the order they are written", () => {
    const columnTables = tables(reports).filter((table) => table.header.join("|") === "column|what");
    expect(columnTables).toHaveLength(2);
    const [conversions, deliveries] = columnTables.map((table) => table.rows.map((row) => unquote(row[0] ?? "")));
    expect(conversions).toEqual(CONVERSION_COLUMNS.map((column) => column.name));
    expect(deliveries).toEqual(DELIVERY_COLUMNS.map((column) => column.name));
  });
});
