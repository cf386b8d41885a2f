-- Where each 15-minute cron found the end of delivery_attempts: its highest rowid at that moment.
-- A rowid table gives each new row the highest rowid so far plus one, so every attempt recorded
-- after a mark has a higher rowid than the mark's, and one that started after the mark was taken
-- was recorded after it. "Attempts since T" is then the rowid range after the last mark taken at
-- or before T, filtered by started_at (src/storage/attempt-marks.ts): the alert rules and the
-- console's overview read that range, not the whole table. A mark holds only while the row it
-- names is still there with the start it had (last_started_at): rowids can move (a rebuild of the
-- table, a VACUUM of one without an INTEGER PRIMARY KEY) or come again (its newest rows deleted,
-- by the archive or retention), and a mark that no longer holds is passed over for an older one
-- that does, or the whole table.
CREATE TABLE delivery_attempt_marks (
  at TEXT PRIMARY KEY,
  last_rowid INTEGER NOT NULL,
  last_started_at TEXT
) WITHOUT ROWID;

-- Issue 16: an index row written per attempt (1.9 rows per conversion). Its one reader, the alert
-- rules' attempts per partner since T, reads the marks' range instead.
DROP INDEX IF EXISTS delivery_attempts_by_partner;
