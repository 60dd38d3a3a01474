-- mako-gateway store, version 1. One SQL for SQLite and PostgreSQL: portable types only
-- (TEXT, BIGINT, BYTEA for raw bytes, which SQLite keeps as blobs); times are BIGINT unix
-- milliseconds UTC; ids are TEXT with a kind prefix and a UUIDv7, so ORDER BY id is creation
-- order; JSON is TEXT.

-- Subscriptions the supplier confirmed: their intended reductions go out.
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    confirmed_at BIGINT NOT NULL
);

-- §14a grid-fee reductions: indexed columns plus the pure order (orders::GridFeeReduction)
-- as JSON in body. effective_date NULL means "next possible date".
CREATE TABLE grid_fee_reductions (
    id TEXT PRIMARY KEY,
    subscription TEXT NOT NULL,
    status TEXT NOT NULL,
    reduction_type TEXT NOT NULL,
    market_location TEXT NOT NULL,
    grid_operator TEXT NOT NULL,
    order_document TEXT,
    effective_date TEXT,
    body TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX grid_fee_reductions_subscription ON grid_fee_reductions (subscription, id);
CREATE INDEX grid_fee_reductions_status ON grid_fee_reductions (status, id);
CREATE INDEX grid_fee_reductions_market_location ON grid_fee_reductions (market_location);
CREATE INDEX grid_fee_reductions_order_document ON grid_fee_reductions (order_document);

-- Smart-meter orders: at most one per subscription, ever (the product rule, kept by the
-- database too).
CREATE TABLE meter_orders (
    id TEXT PRIMARY KEY,
    subscription TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    market_location TEXT NOT NULL,
    metering_location TEXT,
    metering_operator TEXT NOT NULL,
    order_document TEXT,
    wanted_date TEXT,
    body TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX meter_orders_status ON meter_orders (status, id);
CREATE INDEX meter_orders_metering_location ON meter_orders (metering_location);
CREATE INDEX meter_orders_order_document ON meter_orders (order_document);

-- Every status transition of an order; journal_id is the message that caused it (NULL for
-- API actions).
CREATE TABLE status_history (
    id TEXT PRIMARY KEY,
    order_kind TEXT NOT NULL,
    order_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    topic TEXT,
    journal_id TEXT,
    at BIGINT NOT NULL,
    detail TEXT
);
CREATE INDEX status_history_order ON status_history (order_kind, order_id, id);

-- Every interchange in and out. The same interchange delivered twice (same direction, partner
-- and UNB reference) is one row.
CREATE TABLE journal (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    partner TEXT NOT NULL,
    transport TEXT NOT NULL,
    interchange_ref TEXT,
    message_refs TEXT NOT NULL,
    pids TEXT NOT NULL,
    document_numbers TEXT NOT NULL,
    raw BYTEA NOT NULL,
    received_at BIGINT,
    sent_at BIGINT,
    state TEXT NOT NULL,
    outcome TEXT,
    locked_by TEXT,
    locked_until BIGINT,
    attempts BIGINT NOT NULL,
    UNIQUE (direction, partner, interchange_ref)
);
CREATE INDEX journal_work ON journal (direction, state, id);

-- What we sent, for matching CONTRL, APERAK and answers.
CREATE TABLE sent_messages (
    id TEXT PRIMARY KEY,
    partner TEXT NOT NULL,
    interchange_ref TEXT NOT NULL,
    message_ref TEXT NOT NULL,
    document_number TEXT NOT NULL,
    order_kind TEXT,
    order_id TEXT,
    journal_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sent_messages_interchange ON sent_messages (partner, interchange_ref);
CREATE INDEX sent_messages_document ON sent_messages (partner, document_number);

-- Work to send: orders (built when sent) and acknowledgements (built when received).
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    order_kind TEXT,
    order_id TEXT,
    partner TEXT NOT NULL,
    payload BYTEA,
    journal_id TEXT,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_by TEXT,
    locked_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_work ON outbox (state, next_attempt_at, id);
CREATE INDEX outbox_order ON outbox (order_id);

-- Webhook events, kept until delivered.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    locked_by TEXT,
    locked_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX webhook_deliveries_work ON webhook_deliveries (state, next_attempt_at, id);

-- Inbound messages that matched nothing, for an operator to look at.
CREATE TABLE clearing (
    id TEXT PRIMARY KEY,
    journal_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX clearing_open ON clearing (resolved_at, id);
