-- A partner's replayable deliveries (failed, dead, parked, superseded), by time: for enabling or
-- deleting a partner (its parked ones) and for replaying its failures. Since 0024,
-- deliveries_by_partner holds no state: without this, each read every delivery the partner has in
-- D1, finished or not (measured with sqlite3: 1.8 s and a million rows read for a million, against
-- 33 ms before 0024, under D1's write lock; by that rate D1's 30 s per statement is reached near
-- fifteen million). Partial: a delivery that is delivered writes nothing here, one that fails,
-- is parked or superseded one row. Queries name its condition word for word
-- (src/storage/delivery-moves.ts, REPLAYABLE), as SQLite asks of a partial index.
CREATE INDEX deliveries_replayable_by_partner ON deliveries (partner_id, created_at)
  WHERE state IN ('failed', 'dead', 'parked', 'superseded');
