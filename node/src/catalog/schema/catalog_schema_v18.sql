-- Catalog schema version 18: trades (issue #16). A zone's fee schedule, versioned; orders
-- placed from authorisations, the contract each records; deliveries against them; and
-- settlements, each a record never edited: a reversal is a new row naming the one it
-- reverses, a dispute a row of its own. Money is a decimal string (`catalog::money`).
-- SQL: `catalog::tables::trades`.
CREATE TABLE fee_schedules (
    version           INTEGER PRIMARY KEY,
    platform_fee_bp   INTEGER NOT NULL,
    operator_share_bp INTEGER NOT NULL,
    broker_share_bp   INTEGER NOT NULL,
    minimum_fee       TEXT    NOT NULL,
    note              TEXT,
    set_by            TEXT    NOT NULL,
    set_at            INTEGER NOT NULL,
    raft_index        INTEGER NOT NULL
);

CREATE TABLE orders (
    id                 INTEGER PRIMARY KEY,
    authorization_id   INTEGER NOT NULL,
    listing_id         TEXT    NOT NULL,
    content_id         TEXT    NOT NULL,
    certificate_number TEXT,
    provider           TEXT    NOT NULL,
    buyer              TEXT    NOT NULL,
    broker             TEXT,
    scenario           TEXT    NOT NULL,
    delivery_mode      TEXT    NOT NULL,
    pricing_model      TEXT    NOT NULL,
    currency           TEXT    NOT NULL,
    quantity           INTEGER NOT NULL,
    unit_price         TEXT    NOT NULL,
    total              TEXT    NOT NULL,
    state              TEXT    NOT NULL,    -- placed | confirmed | delivering | delivered
                                            -- | settled | disputed | reversed
    delivered_calls    INTEGER NOT NULL DEFAULT 0,
    placed_at          INTEGER NOT NULL,
    placed_by          TEXT    NOT NULL,
    confirmed_at       INTEGER,
    confirmed_by       TEXT,
    raft_index         INTEGER NOT NULL
);
CREATE INDEX orders_buyer ON orders (buyer, id);
CREATE INDEX orders_provider ON orders (provider, id);
CREATE INDEX orders_authorization ON orders (authorization_id);

CREATE TABLE deliveries (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL REFERENCES orders (id),
    mode             TEXT    NOT NULL,
    calls            INTEGER,
    manifest_hashes  TEXT,                  -- JSON array of hex SHA-256
    model_output_ids TEXT,                  -- JSON array
    note             TEXT,
    at               INTEGER NOT NULL,
    by               TEXT    NOT NULL,
    raft_index       INTEGER NOT NULL
);
CREATE INDEX deliveries_order ON deliveries (order_id, id);

CREATE TABLE settlements (
    id                   INTEGER PRIMARY KEY,
    order_id             INTEGER NOT NULL REFERENCES orders (id),
    kind                 TEXT    NOT NULL,  -- settlement | reversal
    reverses             INTEGER REFERENCES settlements (id),
    quantity             INTEGER NOT NULL,
    amount               TEXT    NOT NULL,
    fees                 TEXT    NOT NULL,
    provider_share       TEXT    NOT NULL,
    operator_share       TEXT    NOT NULL,
    broker_share         TEXT    NOT NULL,
    currency             TEXT    NOT NULL,
    fee_schedule_version INTEGER NOT NULL,
    reason               TEXT,
    at                   INTEGER NOT NULL,
    by                   TEXT    NOT NULL,
    raft_index           INTEGER NOT NULL
);
CREATE INDEX settlements_order ON settlements (order_id, id);

CREATE TABLE settlement_disputes (
    id            INTEGER PRIMARY KEY,
    order_id      INTEGER NOT NULL REFERENCES orders (id),
    settlement_id INTEGER NOT NULL REFERENCES settlements (id),
    reason        TEXT    NOT NULL,
    by            TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    at            INTEGER NOT NULL,
    raft_index    INTEGER NOT NULL
);
CREATE INDEX settlement_disputes_order ON settlement_disputes (order_id, id);
