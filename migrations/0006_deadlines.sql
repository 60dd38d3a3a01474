-- Deadlines watched, both ways (issue 14, item 7).
--
-- deadlines: every answer we wait for from a partner, with its due time: the ORDRSP to an
-- ORDERS (19133 by the end of the 2nd working day, 19005/19006 by the end of the 10th), the
-- APERAK to every business message we sent (APERAK AHB 1.1 §2.5.1). Met when an answer of
-- that kind from that partner names the message; past due_at unmet, overdue_at is set once
-- and a webhook `*.answer_overdue` raised.
-- awaiting: 'ORDRSP' | 'APERAK'. reference: our BGM document number. interchange_ref: our UNB
-- reference (an APERAK that names only RFF+ACE meets by it).
CREATE TABLE deadlines (
    id TEXT PRIMARY KEY,
    awaiting TEXT NOT NULL,
    order_kind TEXT,
    order_id TEXT,
    partner TEXT NOT NULL,
    reference TEXT NOT NULL,
    interchange_ref TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    met_at BIGINT,
    overdue_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX deadlines_open ON deadlines (met_at, overdue_at, due_at);
CREATE INDEX deadlines_key ON deadlines (partner, reference, awaiting);
CREATE INDEX deadlines_order ON deadlines (order_id);

-- Our own deadlines: when an acknowledgement or answer we queued must have left (APERAK 45
-- minutes for UTILMD/ORDERS, the next working day 12:00 otherwise; UTILMD 55220 within 2
-- working days). NULL for what has no deadline (orders).
ALTER TABLE outbox ADD COLUMN due_at BIGINT;
