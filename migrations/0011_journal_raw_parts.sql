-- Issue 16: the bytes of a journal item in parts (`store::journal::RAW_PART_BYTES`, 1 MiB),
-- each part a row, written a few parts per statement. A whole interchange bound as one value
-- was copied three times on the way in (sqlx's owned copy of the argument, SQLite's copy of
-- the bound blob, the record SQLite builds from it): journaling a 200 MB interchange held four
-- times its size. Rows written before have one part (0), whatever their size; readers join
-- the parts in order.
CREATE TABLE journal_raw_part (
    journal_id TEXT NOT NULL,
    part INTEGER NOT NULL,
    raw BYTEA NOT NULL,
    PRIMARY KEY (journal_id, part)
);
INSERT INTO journal_raw_part (journal_id, part, raw) SELECT journal_id, 0, raw FROM journal_raw;
DROP TABLE journal_raw;
ALTER TABLE journal_raw_part RENAME TO journal_raw;
