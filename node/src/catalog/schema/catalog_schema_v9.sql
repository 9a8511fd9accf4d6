-- Catalog schema version 9: registrations (登记确权) and the certificates the zone issues for
-- them (issue #14). Rules: `catalog::registrations`; SQL: `catalog::tables::registrations` and
-- `catalog::tables::certificates`.

-- A provider's registration of one of the zone's listings. Numbered by the state machine in
-- log order (rows are never deleted), so every node agrees; the number is the last part of the
-- certificate number.
CREATE TABLE registrations (
    id           INTEGER PRIMARY KEY,
    listing_id   TEXT    NOT NULL,
    content_id   TEXT    NOT NULL,          -- the listing version registered
    holder       TEXT    NOT NULL,          -- party id (the listing's provider.id)
    source       TEXT    NOT NULL,          -- collected | generated | purchased | public
    rights       TEXT    NOT NULL,          -- JSON array of rights
    evidence     TEXT    NOT NULL,          -- JSON array of sha256:... content ids
    state        TEXT    NOT NULL,          -- pending | approved | rejected
    submitted_at INTEGER NOT NULL,
    submitted_by TEXT    NOT NULL,          -- actor id
    raft_index   INTEGER NOT NULL,
    decided_at   INTEGER,
    decided_by   TEXT,
    notes        TEXT,                      -- approval notes or rejection reason
    certificate  TEXT                       -- the certificate number, once approved
);
CREATE INDEX registrations_listing ON registrations (listing_id, state);

-- Issued certificates: the signed bytes exactly as approved, and their status here.
CREATE TABLE certificates (
    number          TEXT    PRIMARY KEY,
    registration_id INTEGER NOT NULL UNIQUE,
    listing_id      TEXT    NOT NULL,
    holder          TEXT    NOT NULL,
    issued_at       INTEGER NOT NULL,
    signed          BLOB    NOT NULL,       -- canonical CBOR of the SignedCertificate
    status          TEXT    NOT NULL,       -- valid | revoked
    revoked_at      INTEGER,
    revoked_by      TEXT,
    revoke_reason   TEXT
);
CREATE INDEX certificates_listing ON certificates (listing_id);
