-- The raw bytes of the journal in a table of their own, written once and read once (issue 16).
-- SQLite rewrites a whole record on every UPDATE: with the bytes in the journal row, every
-- state change and lease renewal read and wrote the whole interchange again (a claim held 6.5
-- times the interchange in memory, and every interchange was written three times). The
-- journal keeps its size.
CREATE TABLE journal_raw (
    journal_id TEXT PRIMARY KEY,
    raw BYTEA NOT NULL
);
INSERT INTO journal_raw (journal_id, raw) SELECT id, raw FROM journal;
ALTER TABLE journal ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
UPDATE journal SET size = LENGTH(raw);
ALTER TABLE journal DROP COLUMN raw;
