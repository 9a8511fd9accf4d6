-- Catalog schema version 10: certificates travel with exported listings (issue #14,
-- PROTOCOL.md 10.5). Rules: `catalog::certified`; SQL: `catalog::tables::certificates` (what
-- this zone sends) and `catalog::tables::received_certificates` (what it received).

-- Whether an issued certificate goes out on the exchange's certificate topic: `pending` until
-- the leader publishes it, then `published`; `withheld` when its listing version never left
-- the zone (the export firewall withheld it, or it was never queued). Certificates issued
-- before this step are judged by the same rule from the outbox as it stands.
ALTER TABLE certificates ADD COLUMN export TEXT NOT NULL DEFAULT 'withheld';
ALTER TABLE certificates ADD COLUMN published_at INTEGER;
UPDATE certificates SET export = 'pending'
 WHERE EXISTS (SELECT 1 FROM registrations r JOIN outbox o ON o.content_id = r.content_id
                WHERE r.id = certificates.registration_id
                  AND o.kind = 'listing' AND o.state != 'withheld');
CREATE INDEX certificates_export ON certificates (export, registration_id);

-- Certificates received from other zones, one row per message (SHA-256 of the bytes as
-- received): `valid` ones with their bytes, `refused` ones as a bounded record with the kind
-- of the failed check and why.
CREATE TABLE received_certificates (
    message_id     TEXT    PRIMARY KEY,     -- sha256:... of the bytes as received
    certificate_id TEXT,                    -- the id it carries (absent if it did not decode)
    exchange       TEXT    NOT NULL,        -- the exchange of the topic it arrived on
    zone           TEXT,                    -- issuing zone (valid ones)
    number         TEXT,
    listing_id     TEXT,
    content_id     TEXT,
    signer         TEXT,                    -- base64 node key (valid ones)
    issued_at      INTEGER,
    decision       TEXT    NOT NULL,        -- valid | refused
    kind           TEXT,                    -- the refusal's kind (PROTOCOL.md 6.3)
    reason         TEXT,                    -- at most 500 characters
    signed         BLOB,                    -- canonical CBOR of the SignedCertificate (valid ones)
    received_from  TEXT    NOT NULL,
    at             INTEGER NOT NULL,        -- when the proposing node received it
    raft_index     INTEGER NOT NULL
);
CREATE INDEX received_certificates_listing
    ON received_certificates (listing_id, content_id, decision);
CREATE INDEX received_certificates_refused
    ON received_certificates (decision, exchange, at);
