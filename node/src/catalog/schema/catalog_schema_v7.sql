-- Catalog schema version 7: the zone's party registry (issue #14, 交易主体管理): the parties that
-- applied or whose state changed, their history, and the entrustments (委托) they grant brokers.
-- A founding party of the zone's configuration has no row until its state first changes.
-- Rules and SQL: `catalog::parties`.

CREATE TABLE parties (
    id          TEXT    PRIMARY KEY,         -- party id (a listing's provider.id, a token's party)
    name        TEXT    NOT NULL,            -- legal name
    credit_code TEXT    NOT NULL UNIQUE,     -- unified social credit code (GB 32100)
    kinds       TEXT    NOT NULL,            -- ",resource_holder,processor," for filtering
    contact     TEXT    NOT NULL,            -- JSON: {"name", "phone"?, "email"?}
    state       TEXT    NOT NULL,            -- applied | admitted | refused | suspended
    origin      TEXT    NOT NULL,            -- application | config
    applied_at  INTEGER NOT NULL,            -- when its row was first written (command time)
    updated_at  INTEGER NOT NULL             -- when its state last changed
);
CREATE INDEX parties_state ON parties (state, id);

-- Who changed a party's state, in order.
CREATE TABLE party_history (
    party_id   TEXT    NOT NULL,
    seq        INTEGER NOT NULL,             -- 1, 2, ... per party
    raft_index INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,             -- apply | admit | refuse | suspend | reinstate
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    reason     TEXT,
    PRIMARY KEY (party_id, seq)
);

-- Entrustments: `broker` may do the acts of `scope` in `party`'s name until `expires_at`.
-- Numbered by the state machine in log order (rows are never deleted), so every node agrees.
CREATE TABLE entrustments (
    id            INTEGER PRIMARY KEY,
    party         TEXT    NOT NULL,
    broker        TEXT    NOT NULL,
    scope         TEXT    NOT NULL,          -- ",submit_listing,update_listing,"
    expires_at    INTEGER NOT NULL,          -- exclusive
    granted_at    INTEGER NOT NULL,
    granted_by    TEXT    NOT NULL,          -- actor id of the party's token
    raft_index    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoked_by    TEXT,
    revoke_reason TEXT
);
CREATE INDEX entrustments_party ON entrustments (party, broker, id);
CREATE INDEX entrustments_broker ON entrustments (broker, id);
