-- Every business message the gateway receives or sends for the supplier core (issue 13):
-- received ones with their route (handle | forward | refuse), the forward feed's state and the
-- APERAK owed for them; sent ones (pass-through from the core) with the answers matched back.
--
-- direction: 'in' | 'out'.
-- route (in): 'handle' (one of our workflows), 'forward' (to the supplier core), 'refuse'.
-- state: in + forward: 'new' until the core acknowledges it, then 'taken';
--        in + handle: 'handled'; in + refuse: 'refused';
--        out: 'queued' → 'sent' → 'accepted' | 'rejected' (by CONTRL/APERAK), 'failed' (parked).
-- checked: 'checked' (validated against a grammar we hold) | 'unchecked' (no grammar).
-- aperak (in): 'none' (CONTRL/APERAK get none, or the interchange was rejected whole),
--        'sent' (the gateway answered: its own findings, or a handled message),
--        'core' (owed by the core, which asks for it through the API by aperak_due),
--        'requested' (the core asked; queued in the outbox).
-- answer (out): the matched CONTRL/APERAK as JSON (codes and text).
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    journal_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    partner TEXT NOT NULL,
    message_type TEXT NOT NULL,
    version TEXT NOT NULL,
    pid BIGINT,
    message_ref TEXT NOT NULL,
    document_number TEXT,
    route TEXT NOT NULL,
    state TEXT NOT NULL,
    checked TEXT NOT NULL,
    findings TEXT NOT NULL,
    aperak TEXT NOT NULL,
    aperak_due BIGINT,
    answer TEXT,
    outbox_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (journal_id, position)
);
CREATE INDEX messages_state ON messages (state, id);
CREATE INDEX messages_pid ON messages (pid, id);
CREATE INDEX messages_partner ON messages (partner, id);
CREATE INDEX messages_document ON messages (direction, partner, document_number);

-- The message types of a journaled interchange (JSON list, as `pids`), for `GET /journal`'s
-- filter by type.
ALTER TABLE journal ADD COLUMN message_types TEXT NOT NULL DEFAULT '[]';
