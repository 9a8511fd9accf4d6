-- Catalog schema version 17: demands (交易撮合): what buyers need, the listings brokers and
-- operators propose to them, and the listing a buyer accepts. SQL: `catalog::tables::demands`.
CREATE TABLE demands (
    id          INTEGER PRIMARY KEY,      -- in log order: identical on every node
    buyer       TEXT    NOT NULL,
    broker      TEXT,                     -- the broker that posted it for the buyer
    posted_by   TEXT    NOT NULL,         -- actor id
    category    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    description TEXT    NOT NULL,
    body        TEXT    NOT NULL,         -- the demand as posted, JSON
    deadline    INTEGER NOT NULL,
    state       TEXT    NOT NULL,         -- open | accepted | withdrawn
    posted_at   INTEGER NOT NULL,
    accepted    TEXT,                     -- the acceptance, JSON
    closed_at   INTEGER,
    raft_index  INTEGER NOT NULL
);
CREATE INDEX demands_buyer ON demands (buyer, state);
CREATE INDEX demands_category ON demands (category, id);

CREATE TABLE demand_proposals (
    id          INTEGER PRIMARY KEY,
    demand_id   INTEGER NOT NULL,
    listing_id  TEXT    NOT NULL,
    proposed_by TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    note        TEXT,
    at          INTEGER NOT NULL,
    raft_index  INTEGER NOT NULL,
    UNIQUE (demand_id, listing_id, proposed_by)
);
