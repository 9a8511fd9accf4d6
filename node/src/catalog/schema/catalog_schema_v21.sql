-- Catalog schema version 21: demands across exchanges (PROTOCOL.md 11.9). `shared_demands`
-- holds, for each demand its buyer shared with the federation, the canonical Demand of its
-- latest state, pending until the leader signs and publishes it, and the last SignedMessage
-- published (what catch-up serves). `foreign_demands` holds the demands of other zones this
-- zone recognised under its agreements: the latest state of each (zone, number), with the
-- signed bytes it came in. SQL: `catalog::tables::demands_across`.
CREATE TABLE shared_demands (
    demand_id    INTEGER PRIMARY KEY,     -- the local demand
    body         BLOB    NOT NULL,        -- canonical Demand of its latest state
    updated_at   INTEGER NOT NULL,
    state        TEXT    NOT NULL,        -- pending | published
    signed       BLOB,                    -- the last SignedMessage published
    published_at INTEGER,
    raft_index   INTEGER NOT NULL
);
CREATE INDEX shared_demands_pending ON shared_demands (state, demand_id);

CREATE TABLE foreign_demands (
    id            INTEGER PRIMARY KEY,    -- in log order: identical on every node
    exchange      TEXT    NOT NULL,
    zone          TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    state         TEXT    NOT NULL,       -- open | withdrawn | accepted
    category      TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    body          TEXT    NOT NULL,       -- the Demand as decoded, JSON
    deadline      INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    message_id    TEXT    NOT NULL,
    signed        BLOB    NOT NULL,       -- the SignedMessage as received
    received_from TEXT    NOT NULL,
    recorded_at   INTEGER NOT NULL,
    raft_index    INTEGER NOT NULL,
    UNIQUE (zone, number)
);
CREATE INDEX foreign_demands_category ON foreign_demands (category, id);
