-- Catalog schema version 8: scenario applications and authorisations (issue #14,
-- 一场景一申请、一场景一授权). A buyer applies for one listing for one scenario; an operator's
-- approval creates the authorisation its usage is counted against. Rows are never deleted and
-- are numbered by the state machine in log order, so every node agrees on ids.
-- Rules: `catalog::applications`; SQL: `catalog::tables::applications` and
-- `catalog::tables::authorizations`.

CREATE TABLE applications (
    id             INTEGER PRIMARY KEY,
    listing_id     TEXT    NOT NULL,
    buyer          TEXT    NOT NULL,         -- the applying party
    scenario       TEXT    NOT NULL,         -- one of the listing's scenarios
    purpose        TEXT    NOT NULL,
    delivery_mode  TEXT    NOT NULL,         -- as asked
    duration_days  INTEGER NOT NULL,         -- as asked
    usage_limit    INTEGER NOT NULL,         -- as asked
    state          TEXT    NOT NULL,         -- submitted | approved | rejected
    submitted_at   INTEGER NOT NULL,
    submitted_by   TEXT    NOT NULL,         -- actor id
    raft_index     INTEGER NOT NULL,
    decided_at     INTEGER,
    decided_by     TEXT,
    reason         TEXT,                     -- why rejected
    authorization_id INTEGER                 -- set on approval
);
CREATE INDEX applications_listing ON applications (listing_id, scenario, id);
CREATE INDEX applications_buyer ON applications (buyer, state, id);
CREATE INDEX applications_state ON applications (state, id);

-- What an approval granted, and the usage counted against it.
CREATE TABLE authorizations (
    id             INTEGER PRIMARY KEY,
    application_id INTEGER NOT NULL UNIQUE,
    listing_id     TEXT    NOT NULL,
    provider       TEXT    NOT NULL,         -- the listing's party when authorised
    buyer          TEXT    NOT NULL,
    scenario       TEXT    NOT NULL,
    delivery_mode  TEXT    NOT NULL,         -- as granted
    usage_limit    INTEGER NOT NULL,         -- calls, as granted
    used           INTEGER NOT NULL,         -- calls counted, never above usage_limit
    refused        INTEGER NOT NULL,         -- usage requests refused
    last_refusal   TEXT,                     -- the code and message of the latest refusal
    state          TEXT    NOT NULL,         -- active | suspended | revoked
    granted_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,         -- exclusive, by the command's time
    granted_by     TEXT    NOT NULL,
    changed_at     INTEGER,                  -- last suspension or revocation
    changed_by     TEXT,
    reason         TEXT
);
CREATE INDEX authorizations_buyer ON authorizations (buyer, id);
CREATE INDEX authorizations_provider ON authorizations (provider, id);
