/**
 * SQL for erasure (docs/privacy.md): the erasure records, finding a person's conversions, and
 * rewriting every D1 row that holds the value. Column names come from a closed map, never from
 * input; every value is bound.
 */
import {
  type ErasableIdentifier,
  type ErasureCounts,
  type ErasureTarget,
  freeTextReplacements,
  textReplacements,
} from "../domain/erasure";
import type { ConversionEventRow, ConversionRow, D1, PrunedChainRow } from "./d1";
import { eraseClickStatsStatements, recountClickConversionsStatements, recountConversionsStatements } from "./stats";

/** The conversions table's column for each identifier (constants, never input). */
const COLUMN: Record<ErasableIdentifier, string> = {
  user_id: "user_id",
  device_id: "device_id",
  click_id: "click_id",
};

/** The JSON path of the identifier in an event's payload, and in a delivery's payload. */
const EVENT_PATH: Record<ErasableIdentifier, string> = {
  user_id: "$.user_id",
  device_id: "$.device_id",
  click_id: "$.click_id",
};
const DELIVERY_PATH: Record<ErasableIdentifier, string> = {
  user_id: "$.conversion.user_id",
  device_id: "$.conversion.device_id",
  click_id: "$.conversion.click_id",
};

export interface ErasureRow {
  id: string;
  kind: ErasableIdentifier;
  identifier_hash: string;
  network_id: string | null;
  requested_at: string;
  last_run_at: string;
  runs: number;
  status: "partial" | "complete";
  counts: string;
}

/**
 * Creates the record, or starts another run of it: in both cases its `last_run_at` is now, before
 * anything is rewritten, so that the events consumer erases what arrives from now on of what the
 * hub received until now. Answers the record and whether this call created it.
 */
export async function startErasure(
  db: D1,
  erasure: Pick<ErasureRow, "id" | "kind" | "identifier_hash" | "network_id">,
  now: string,
): Promise<{ row: ErasureRow; created: boolean }> {
  const [, row] = await db.batch([
    db
      .prepare(
        `INSERT INTO erasures (id, kind, identifier_hash, network_id, requested_at, last_run_at, runs, status, counts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, 'partial', '{}')
         ON CONFLICT (id) DO UPDATE SET last_run_at = ?5`,
      )
      .bind(erasure.id, erasure.kind, erasure.identifier_hash, erasure.network_id, now),
    db.prepare("SELECT * FROM erasures WHERE id = ?").bind(erasure.id),
  ]);
  const stored = row?.results[0] as ErasureRow | undefined;
  if (!stored) throw new Error(`erasure ${erasure.id} was not recorded`);
  // A first run, also when an earlier call failed before it finished one.
  return { row: stored, created: stored.runs === 0 };
}

export async function finishErasureRun(
  db: D1,
  id: string,
  totals: ErasureCounts,
  status: ErasureRow["status"],
): Promise<ErasureRow | null> {
  return db
    .prepare("UPDATE erasures SET runs = runs + 1, counts = ?, status = ? WHERE id = ? RETURNING *")
    .bind(JSON.stringify(totals), status, id)
    .first<ErasureRow>();
}

export async function getErasure(db: D1, id: string): Promise<ErasureRow | null> {
  return db.prepare("SELECT * FROM erasures WHERE id = ?").bind(id).first<ErasureRow>();
}

/** Newest first; `after` is the (requested_at, id) of the last row of the previous page. */
export async function listErasures(db: D1, limit: number, after: [string, string] | null): Promise<ErasureRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM erasures WHERE (?1 IS NULL OR (requested_at, id) < (?1, ?2))
       ORDER BY requested_at DESC, id DESC LIMIT ?3`,
    )
    .bind(after?.[0] ?? null, after?.[1] ?? null, limit)
    .all<ErasureRow>();
  return results;
}

/** The erasures whose identifier hash is one of `hashes` (the events consumer's check of a batch). */
export async function erasuresOf(db: D1, hashes: readonly string[]): Promise<ErasureRow[]> {
  if (hashes.length === 0) return [];
  const { results } = await db
    .prepare("SELECT * FROM erasures WHERE identifier_hash IN (SELECT value FROM json_each(?))")
    .bind(JSON.stringify([...new Set(hashes)]))
    .all<ErasureRow>();
  return results;
}

export interface ConversionKey {
  network_id: string;
  transaction_id: string;
  test: number;
}

/** An event's value of the identifier, exactly as migration 0007's indexes spell it (so that they serve). */
function eventValue(field: ErasableIdentifier): string {
  return `(CASE WHEN json_valid(payload) THEN json_extract(payload, '${EVENT_PATH[field]}') END)`;
}

/** The conversions (either world) whose current state or any event holds one of the target's values. */
function holdersSql(field: ErasableIdentifier): string {
  return `SELECT network_id, transaction_id, test FROM conversions
            WHERE ${COLUMN[field]} IN (SELECT value FROM json_each(?1)) AND (?2 IS NULL OR network_id = ?2)
          UNION
          SELECT network_id, transaction_id, test FROM conversion_events
            WHERE ${eventValue(field)} IS NOT NULL AND ${eventValue(field)} IN (SELECT value FROM json_each(?1))
              AND (?2 IS NULL OR network_id = ?2)`;
}

/** Up to `limit` conversions still holding the value, by key, and how many hold it in all. */
export async function conversionsHolding(
  db: D1,
  target: ErasureTarget,
  networkId: string | null,
  limit: number,
): Promise<{ keys: ConversionKey[]; total: number }> {
  const values = JSON.stringify(target.values);
  const holders = holdersSql(target.field);
  const [page, count] = await db.batch([
    db
      .prepare(`SELECT * FROM (${holders}) ORDER BY network_id, transaction_id, test LIMIT ?3`)
      .bind(values, networkId, limit),
    db.prepare(`SELECT count(*) AS n FROM (${holders})`).bind(values, networkId),
  ]);
  return {
    keys: (page?.results ?? []) as ConversionKey[],
    total: ((count?.results[0] as { n: number } | undefined)?.n ?? 0) as number,
  };
}

export interface ConversionRecord {
  key: ConversionKey;
  conversion: ConversionRow | null;
  events: ConversionEventRow[];
  pruned: PrunedChainRow | null;
}

/** The conversions' rows, histories and retention cuts, in one round trip. */
export async function readConversions(db: D1, keys: readonly ConversionKey[]): Promise<ConversionRecord[]> {
  if (keys.length === 0) return [];
  const list = JSON.stringify(keys.map((key) => [key.network_id, key.transaction_id, key.test]));
  const inList = `(network_id, transaction_id, test) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?))`;
  const [conversions, events, pruned] = await db.batch([
    db.prepare(`SELECT * FROM conversions WHERE ${inList}`).bind(list),
    db.prepare(`SELECT * FROM conversion_events WHERE ${inList} ORDER BY seq, received_at`).bind(list),
    db.prepare(`SELECT * FROM conversion_chain_pruned WHERE ${inList}`).bind(list),
  ]);
  const same = (a: ConversionKey) => (b: { network_id: string; transaction_id: string; test: number }) =>
    a.network_id === b.network_id && a.transaction_id === b.transaction_id && a.test === b.test;
  return keys.map((key) => ({
    key,
    conversion: ((conversions?.results ?? []) as ConversionRow[]).find(same(key)) ?? null,
    events: ((events?.results ?? []) as ConversionEventRow[]).filter(same(key)),
    pruned: ((pruned?.results ?? []) as (PrunedChainRow & ConversionKey)[]).find(same(key)) ?? null,
  }));
}

/** `replace(replace(column, ?a, ?b), …)` over `pairs`, numbering parameters from `first`. */
function replaced(column: string, pairs: readonly [string, string][], first: number): string {
  let sql = column;
  pairs.forEach((_, index) => {
    sql = `replace(${sql}, ?${first + 2 * index}, ?${first + 2 * index + 1})`;
  });
  return sql;
}

function contains(column: string, pairs: readonly [string, string][], first: number): string {
  return pairs.length === 0
    ? "0"
    : pairs.map((_, index) => `instr(coalesce(${column}, ''), ?${first + 2 * index}) > 0`).join(" OR ");
}

/**
 * The statements that erase the value from the D1 rows of these conversions: their state, their
 * events (the payloads their objects answered with), their deliveries and the deliveries' attempts.
 * One batch, so D1 is rewritten all at once or not at all.
 */
export function conversionErasureStatements(
  db: D1,
  target: ErasureTarget,
  keys: readonly ConversionKey[],
  rewrites: readonly { event_id: string; payload: string }[],
): { label: keyof ErasureCounts["d1"] | null; statement: D1PreparedStatement }[] {
  const list = JSON.stringify(keys.map((key) => [key.network_id, key.transaction_id, key.test]));
  const pairs = JSON.stringify(keys.map((key) => [key.network_id, key.transaction_id]));
  const values = JSON.stringify(target.values);
  const column = COLUMN[target.field];
  const statements: { label: keyof ErasureCounts["d1"] | null; statement: D1PreparedStatement }[] = [
    {
      label: "conversions",
      statement: db
        .prepare(
          `UPDATE conversions SET ${column} = ?3
           WHERE (network_id, transaction_id, test) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1))
             AND ${column} IN (SELECT value FROM json_each(?2))`,
        )
        .bind(list, values, target.marker),
    },
    {
      label: "conversion_events",
      statement: db
        .prepare(
          `UPDATE conversion_events
           SET payload = (SELECT value ->> 1 FROM json_each(?1) WHERE value ->> 0 = conversion_events.event_id)
           WHERE event_id IN (SELECT value ->> 0 FROM json_each(?1))`,
        )
        .bind(JSON.stringify(rewrites.map((rewrite) => [rewrite.event_id, rewrite.payload]))),
    },
    {
      label: "deliveries",
      statement: db
        .prepare(
          `UPDATE deliveries SET payload = json_set(payload, '${DELIVERY_PATH[target.field]}', ?3)
           WHERE (network_id, transaction_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))
             AND (CASE WHEN json_valid(payload) THEN json_extract(payload, '${DELIVERY_PATH[target.field]}') END)
               IN (SELECT value FROM json_each(?2))`,
        )
        .bind(pairs, values, target.marker),
    },
  ];
  const free = freeTextReplacements(target);
  statements.push({
    label: "delivery_attempts",
    statement: db
      .prepare(
        `UPDATE delivery_attempts SET error = ${replaced("error", free, 2)},
           response_excerpt = ${replaced("response_excerpt", free, 2)}
         WHERE delivery_id IN (
             SELECT id FROM deliveries
             WHERE (network_id, transaction_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))
           )
           AND (${contains("error", free, 2)} OR ${contains("response_excerpt", free, 2)})`,
      )
      .bind(pairs, ...free.flat()),
  });
  // A delivery's last error is its latest attempt's error (free text too); counted with the attempts.
  statements.push({
    label: null,
    statement: db
      .prepare(
        `UPDATE deliveries SET last_error = ${replaced("last_error", free, 2)}
         WHERE (network_id, transaction_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))
           AND (${contains("last_error", free, 2)})`,
      )
      .bind(pairs, ...free.flat()),
  });
  if (target.field === "click_id") {
    // What attribution found for the click (its detail may name the click id); counted with the row above.
    const json = textReplacements(target, ["json"]);
    statements.push({
      label: null,
      statement: db
        .prepare(
          `UPDATE conversions SET attribution_detail = ${replaced("attribution_detail", json, 2)}
           WHERE (network_id, transaction_id, test) IN (SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1))
             AND (${contains("attribution_detail", json, 2)})`,
        )
        .bind(list, ...json.flat()),
    });
  }
  // The roll-ups follow what the conversions hold now (a click id erased takes its visitor's
  // country, device and sub1 with it).
  const keyed = keys.map((key) => [key.network_id, key.transaction_id, key.test] as const);
  for (const statement of recountConversionsStatements(db, keyed)) statements.push({ label: null, statement });
  return statements;
}

/** The partners that were sent (or were to be sent) these conversions: they hold the value too. */
export async function partnersOf(db: D1, keys: readonly ConversionKey[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT DISTINCT partner_id FROM deliveries
       WHERE (network_id, transaction_id) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?))
         -- Any but one superseded unsent: an attempt in flight has not counted itself yet (attempts
         -- rises with its result), and a waiting one is still to be sent.
         AND (attempts > 0 OR state <> 'superseded')
       ORDER BY partner_id`,
    )
    .bind(JSON.stringify(keys.map((key) => [key.network_id, key.transaction_id])))
    .all<{ partner_id: string }>();
  return results.map((row) => row.partner_id);
}

/**
 * The inbound log's records that show the value (in a query, a form or JSON body, a message),
 * of the network or of every network: at most `limit` per call, each rewritten with the marker
 * and without its body's digest (a digest of a body that held the value would confirm a guess).
 * A scan, bounded by INBOUND_LOG_RETENTION_DAYS. Answers how many it rewrote and whether more are left.
 */
export async function eraseInboundLog(
  db: D1,
  target: ErasureTarget,
  networkId: string | null,
  limit: number,
): Promise<{ rewritten: number; more: boolean }> {
  const excerpt = textReplacements(target, ["nested", "param"]);
  const errors = textReplacements(target, ["nested"]);
  const first = 3;
  const errorsFirst = first + 2 * excerpt.length;
  const matches = `(${contains("excerpt", excerpt, first)} OR ${contains("errors", errors, errorsFirst)})`;
  const patterns = [...excerpt.flat(), ...errors.flat()];
  // The update references every pattern and replacement; the check after it only the patterns.
  const [updated, left] = await db.batch([
    db
      .prepare(
        `UPDATE inbound_requests SET excerpt = ${replaced("excerpt", excerpt, first)},
           errors = ${replaced("errors", errors, errorsFirst)}, body_sha256 = NULL
         WHERE request_id IN (
           SELECT request_id FROM inbound_requests WHERE (?1 IS NULL OR network_id = ?1) AND ${matches} LIMIT ?2
         )`,
      )
      .bind(networkId, limit, ...patterns),
    // After the update (one transaction): whether any record still shows the value.
    db
      .prepare(
        `SELECT count(*) AS n FROM (
           SELECT 1 FROM inbound_requests WHERE (?1 IS NULL OR network_id = ?1) AND (${excerpt
             .map((_, index) => `instr(excerpt, ?${2 + index}) > 0`)
             .concat(errors.map((_, index) => `instr(errors, ?${2 + excerpt.length + index}) > 0`))
             .join(" OR ")}) LIMIT 1
         )`,
      )
      .bind(networkId, ...excerpt.map(([from]) => from), ...errors.map(([from]) => from)),
  ]);
  return {
    rewritten: updated?.meta.changes ?? 0,
    more: ((left?.results[0] as { n: number } | undefined)?.n ?? 0) > 0,
  };
}

/**
 * Dead letters (queue messages kept for an operator: events, inbound log records) that show the
 * value, of the network when the erasure is scoped to one.
 */
export async function eraseDeadLetters(db: D1, target: ErasureTarget, networkId: string | null): Promise<number> {
  const pairs = textReplacements(target, ["json", "nested", "param"]);
  const scope = networkId === null ? null : `"network_id":${JSON.stringify(networkId)}`;
  const result = await db
    .prepare(
      `UPDATE dead_letters SET body = ${replaced("body", pairs, 2)}
       WHERE (?1 IS NULL OR instr(body, ?1) > 0) AND (${contains("body", pairs, 2)})`,
    )
    .bind(scope, ...pairs.flat())
    .run();
  return result.meta.changes ?? 0;
}

/**
 * A click erased: its row stays, so click counts stay exact, but its id becomes the marker and
 * everything it told about the person (sub ids, country, device, browser, referrer, address
 * prefix) is gone.
 */
export async function eraseClick(db: D1, target: ErasureTarget, networkId: string | null): Promise<number> {
  const erase = db
    .prepare(
      `UPDATE clicks SET click_id = ?2, sub1 = NULL, sub2 = NULL, sub3 = NULL, sub4 = NULL, sub5 = NULL,
         country = NULL, device = NULL, os = NULL, browser = NULL, referrer = NULL, ip_prefix = NULL
       WHERE click_id IN (SELECT lower(value) FROM json_each(?1))
         AND (?3 IS NULL OR offer_id IN (SELECT id FROM offers WHERE network_id = ?3))`,
    )
    .bind(JSON.stringify(target.values), target.marker, networkId);
  // The roll-ups forget what the click told too: its count moves to the rows without a visitor,
  // and the conversions that named it are recounted without its country, device and sub1.
  const moves = eraseClickStatsStatements(db, target.values, networkId);
  const results = await db.batch([...moves, erase, ...recountClickConversionsStatements(db, [target.marker])]);
  return results[moves.length]?.meta.changes ?? 0;
}
