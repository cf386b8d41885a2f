-- A partner's parked deliveries (it is disabled), for enabling or deleting it. Since 0024,
-- deliveries_by_partner holds no state: without this, both read every delivery the partner has in
-- D1, finished or not (measured with sqlite3: 1.8 s and a million rows read for a million, against
-- 33 ms before 0024, under D1's write lock; by that rate D1's 30 s per statement is reached near
-- fifteen million). Partial: a delivery of an active partner is never parked, so it writes nothing
-- here; parking writes one row per delivery, resuming removes it.
CREATE INDEX deliveries_parked_by_partner ON deliveries (partner_id) WHERE state = 'parked';
