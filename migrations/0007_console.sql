-- The operator console (issue 17).
--
-- audit: every operator action, from the console or the API, with who, when and what:
-- actor (the console's operator name with the fingerprint of the token it logged in with, or
-- `api` for a bearer-token call), action (`clearing.resolve`, `outbox.retry`,
-- `outbox.give_up`, `grid_fee_reduction.reorder`), target (the record's id) and the
-- operator's note or what the action found (the partner's answer of a parked item).
CREATE TABLE audit (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    note TEXT
);
CREATE INDEX audit_target ON audit (target);

-- An operator gave up a parked outbox item: it stays parked (GET /outbox shows it as
-- before) but no longer waits for an operator on the console.
ALTER TABLE outbox ADD COLUMN given_up_at BIGINT;
