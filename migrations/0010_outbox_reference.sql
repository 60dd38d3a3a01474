-- Issue 16: the references of ours an outbox item's interchange carries (UNB 0020, each UNH
-- 0062 and BGM 1004), written with the item (or with its bytes, when an order is built at
-- sending). An answer that names a reference of an interchange still being sent waits for the
-- record of its sending; finding those references was a scan of every unsent payload per
-- batch (quadratic while replies waited in the outbox) and is now an index lookup. Items
-- queued before this migration are indexed by the store when it opens (their bytes are read
-- there, not here).
CREATE TABLE outbox_reference (
    reference TEXT NOT NULL,
    outbox_id TEXT NOT NULL,
    PRIMARY KEY (reference, outbox_id)
);
CREATE INDEX outbox_reference_item ON outbox_reference (outbox_id);
