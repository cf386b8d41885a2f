-- Issue 16: deliveries_by_partner (partner_id, created_at) is read by no query, and costs an index
-- row for every delivery written (1.9 D1 rows per conversion). Every read of a partner's deliveries
-- goes another way: parking and deleting a partner through deliveries_by_state (its unfinished
-- ones), enabling it and replaying its failures through deliveries_replayable_by_partner (0025),
-- the deliveries list by deliveries_by_created (its partner filter is one of the optional ones,
-- which no index serves), a conversion's deliveries through deliveries_by_conversion.
-- test/storage.indexes.test.ts plans each of them.
DROP INDEX IF EXISTS deliveries_by_partner;
