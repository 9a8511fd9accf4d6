-- Catalog schema version 12: a certificate's revocation travels like the certificate
-- (PROTOCOL.md 10.6). Rules: `catalog::registrations` (what this zone revokes and sends) and
-- `catalog::certified` (what it receives); SQL: `catalog::tables::certificates` and
-- `catalog::tables::received_revocations`.

-- The signed CertificateRevocation of a revoked certificate, as the revoking node signed it
-- (NULL for a certificate revoked before this step: it is not published), and whether it goes
-- out on the exchange's certificate topic: `pending` until the leader publishes it, then
-- `published`; `withheld` when the certificate never left the zone.
ALTER TABLE certificates ADD COLUMN revocation BLOB;
ALTER TABLE certificates ADD COLUMN revocation_export TEXT;
ALTER TABLE certificates ADD COLUMN revocation_published_at INTEGER;
CREATE INDEX certificates_revocation_export ON certificates (revocation_export, registration_id)
    WHERE revocation_export IS NOT NULL;

-- Certificate revocations received from other zones, one row per message (SHA-256 of the bytes
-- as received): `applied` to a valid certificate held with the id it names, `waiting` for that
-- certificate (applied when it is recorded), or `refused` as a bounded record with the kind of
-- the failed check and why.
CREATE TABLE received_revocations (
    message_id        TEXT    PRIMARY KEY,  -- sha256:... of the bytes as received
    revocation_id     TEXT,                 -- the id it carries (absent if it did not decode)
    certificate_id    TEXT,                 -- the certificate it names (valid ones)
    exchange          TEXT    NOT NULL,     -- the exchange of the topic it arrived on
    zone              TEXT,                 -- revoking zone (valid ones)
    number            TEXT,
    revoked_at        INTEGER,
    revocation_reason TEXT,                 -- the signed reason, at most 2000 characters
    signer            TEXT,                 -- base64 node key (valid ones)
    decision          TEXT    NOT NULL,     -- applied | waiting | refused
    kind              TEXT,                 -- the refusal's kind (PROTOCOL.md 6.3)
    reason            TEXT,                 -- why refused, at most 500 characters
    signed            BLOB,                 -- canonical CBOR of the signed revocation (valid ones)
    received_from     TEXT    NOT NULL,
    at                INTEGER NOT NULL,     -- when the proposing node received it
    raft_index        INTEGER NOT NULL
);
CREATE INDEX received_revocations_certificate ON received_revocations (certificate_id, decision);
CREATE INDEX received_revocations_bound ON received_revocations (decision, exchange, at);
