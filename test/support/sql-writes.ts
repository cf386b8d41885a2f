/**
 * What a Durable Object's SQL statements write, counted on the instance's own storage (as bench/cost
 * counts them): `exec` is wrapped where the object calls it, and each cursor's `rowsWritten` is
 * read when asked, after the statements ran.
 */

export interface SqlWrite {
  /** The statement, its whitespace collapsed. */
  sql: string;
  bindings: unknown[];
  rows: number;
}

/** Starts counting; the answer lists the statements since that wrote at least one row. */
export function countSqlWrites(state: DurableObjectState): () => SqlWrite[] {
  const sql = state.storage.sql;
  const exec = sql.exec.bind(sql);
  const ran: { sql: string; bindings: unknown[]; cursor: SqlStorageCursor<Record<string, SqlStorageValue>> }[] = [];
  const counted: SqlStorage["exec"] = <T extends Record<string, SqlStorageValue>>(
    query: string,
    ...bindings: unknown[]
  ) => {
    const cursor = exec<T>(query, ...bindings);
    ran.push({
      sql: query.replace(/\s+/g, " ").trim(),
      bindings,
      cursor: cursor as SqlStorageCursor<Record<string, SqlStorageValue>>,
    });
    return cursor;
  };
  Object.defineProperty(sql, "exec", { value: counted, configurable: true });
  return () =>
    ran
      .map((entry) => ({ sql: entry.sql, bindings: entry.bindings, rows: entry.cursor.rowsWritten }))
      .filter((write) => write.rows > 0);
}
