-- Every mail read from the IMAP mailbox, raw, committed before the mail is marked on the
-- server (so a mail is never lost, whatever its content), with what became of it: the
-- interchange it carried was journaled (journal_id), or it went to the quarantine (reason:
-- unsigned, not decryptable, signed by someone else than the interchange's sender, no or
-- several attachments). One row per mail: (mailbox, uid_validity, uid) names it for good.
CREATE TABLE mail_journal (
    id TEXT PRIMARY KEY,
    mailbox TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    from_header TEXT NOT NULL,
    subject TEXT NOT NULL,
    raw BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    journal_id TEXT,
    reason TEXT,
    sender TEXT,
    signer TEXT,
    handled_at BIGINT
);
CREATE UNIQUE INDEX mail_journal_uid ON mail_journal (mailbox, uid_validity, uid);
CREATE INDEX mail_journal_outcome ON mail_journal (outcome, id);
