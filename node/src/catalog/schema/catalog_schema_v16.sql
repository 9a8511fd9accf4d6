-- Catalog schema version 16: valuation reports (数据资产评估), versioned per listing. The
-- report is stored as the JSON the API serves, exactly as it was computed and recorded.
-- SQL: `catalog::tables::valuations`.
CREATE TABLE valuations (
    listing_id TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    valued_at  INTEGER NOT NULL,
    valued_by  TEXT    NOT NULL,
    value      TEXT    NOT NULL,  -- the final value, a decimal string
    report     TEXT    NOT NULL,  -- the whole report as JSON
    raft_index INTEGER NOT NULL,
    PRIMARY KEY (listing_id, version)
);
