-- AS4 (src/transport/as4/, src/store/as4.rs).
--
-- Duplicate detection of received user messages (ebMS3 reception awareness, required by the
-- BDEW profile): one row per message key, claimed while its handler runs (lease, fenced by a
-- fresh token per claim), accepted once the interchange is journaled. Accepted keys are kept
-- at least 7 days (senders retry for up to 72 h and timestamps up to 7 days old are
-- accepted; asx-rs 0.16.2 CHANGELOG), then purged.
CREATE TABLE as4_dedup (
    message_key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    token TEXT,
    lease_until BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL,
    accepted_at BIGINT
);
CREATE INDEX as4_dedup_accepted ON as4_dedup (state, accepted_at);

-- Non-repudiation evidence: every audit record asx-rs writes (received user messages with the
-- receipt we signed, sent messages with the partner's signed receipt, refusals), as its JSON.
CREATE TABLE as4_evidence (
    record_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    partner TEXT NOT NULL,
    record TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX as4_evidence_message ON as4_evidence (message_id);

-- The ebMS MessageId and timestamp of an outbox item, fixed before its first send: a retry
-- after a transport error or a crash sends the same message (same id, same timestamp, same
-- digests), which the receiver deduplicates.
CREATE TABLE as4_outbound (
    outbox_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    partner TEXT NOT NULL,
    sent_timestamp BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    receipt_record_id TEXT,
    delivered_at BIGINT
);

-- Every AS4 request received, raw (body and Content-Type), committed before it is answered,
-- with what became of it: receipted (journal_id: the interchange it carried) or refused with
-- the ebMS error code we answered. Refused requests are never parsed as business data; their
-- bytes stay here for the operator.
CREATE TABLE as4_inbox (
    id TEXT PRIMARY KEY,
    peer TEXT NOT NULL,
    content_type TEXT NOT NULL,
    raw BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    ebms_code TEXT,
    message_id TEXT,
    journal_id TEXT,
    reason TEXT,
    answered_at BIGINT
);
CREATE INDEX as4_inbox_outcome ON as4_inbox (outcome, id);
