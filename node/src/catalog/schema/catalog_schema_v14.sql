-- Catalog schema version 14: scenario precedents across exchanges (PROTOCOL.md 11.8, issue
-- #14). At an applying zone, the latest signed list of decisions the origin zone of another
-- exchange made on one of its listings for one scenario, as the leader fetched it while an
-- application of this zone for that listing and scenario was open. Rules:
-- `catalog::precedents`; SQL: `catalog::tables::remote_precedents`.
CREATE TABLE remote_precedents (
    listing_id    TEXT    NOT NULL,
    scenario      TEXT    NOT NULL,
    origin_zone   TEXT    NOT NULL,  -- the zone that signed the list (the listing's origin)
    list_id       TEXT    NOT NULL,  -- sha256:... of the list's body
    issued_at     INTEGER NOT NULL,  -- when the origin made the list
    signed        BLOB    NOT NULL,  -- the SignedMessage of the Precedents, as received
    received_from TEXT    NOT NULL,
    at            INTEGER NOT NULL,  -- when the proposing member received it
    raft_index    INTEGER NOT NULL,
    PRIMARY KEY (listing_id, scenario, origin_zone)
);
