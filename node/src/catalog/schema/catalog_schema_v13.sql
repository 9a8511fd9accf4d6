-- Catalog schema version 13: catch-up serves certificates and certificate revocations
-- (PROTOCOL.md 7.5, 10.5, 10.6). Every message this zone holds on a certificate topic is filed
-- here in the order the zone recorded it; `pos` is the position catch-up pages by. Rows are
-- kept by triggers, so every path that publishes or records such a message files it, and a
-- received message deleted by its bound leaves the feed with it. SQL:
-- `catalog::tables::certificate_feed`.
CREATE TABLE certificate_feed (
    pos      INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT,             -- the exchange of the topic; NULL for this zone's own exchange
    source   TEXT NOT NULL,    -- certificate | revocation (this zone's) |
                               -- received_certificate | received_revocation
    ref      TEXT NOT NULL,    -- registration id (this zone's) or message id (received)
    data     BLOB NOT NULL,    -- the message, exactly as published or received
    UNIQUE (source, ref)
);

-- What is already held: this zone's published certificates and revocations, then valid
-- received certificates and received revocations that passed the offline checks, each in the
-- order it was recorded.
INSERT INTO certificate_feed (exchange, source, ref, data)
    SELECT NULL, 'certificate', CAST(registration_id AS TEXT), signed FROM certificates
     WHERE export = 'published' ORDER BY registration_id;
INSERT INTO certificate_feed (exchange, source, ref, data)
    SELECT NULL, 'revocation', CAST(registration_id AS TEXT), revocation FROM certificates
     WHERE revocation_export = 'published' AND revocation IS NOT NULL ORDER BY registration_id;
INSERT INTO certificate_feed (exchange, source, ref, data)
    SELECT exchange, 'received_certificate', message_id, signed FROM received_certificates
     WHERE decision = 'valid' AND signed IS NOT NULL ORDER BY raft_index;
INSERT INTO certificate_feed (exchange, source, ref, data)
    SELECT exchange, 'received_revocation', message_id, signed FROM received_revocations
     WHERE decision IN ('applied', 'waiting') AND signed IS NOT NULL ORDER BY raft_index;

CREATE TRIGGER certificate_feed_published AFTER UPDATE OF export ON certificates
    WHEN NEW.export = 'published' AND OLD.export IS NOT 'published'
BEGIN
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        VALUES (NULL, 'certificate', CAST(NEW.registration_id AS TEXT), NEW.signed);
END;

CREATE TRIGGER certificate_feed_revocation_published
    AFTER UPDATE OF revocation_export ON certificates
    WHEN NEW.revocation_export = 'published' AND OLD.revocation_export IS NOT 'published'
        AND NEW.revocation IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        VALUES (NULL, 'revocation', CAST(NEW.registration_id AS TEXT), NEW.revocation);
END;

CREATE TRIGGER certificate_feed_received AFTER INSERT ON received_certificates
    WHEN NEW.decision = 'valid' AND NEW.signed IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        VALUES (NEW.exchange, 'received_certificate', NEW.message_id, NEW.signed);
END;

CREATE TRIGGER certificate_feed_received_gone AFTER DELETE ON received_certificates
BEGIN
    DELETE FROM certificate_feed
     WHERE source = 'received_certificate' AND ref = OLD.message_id;
END;

CREATE TRIGGER certificate_feed_received_revocation AFTER INSERT ON received_revocations
    WHEN NEW.decision IN ('applied', 'waiting') AND NEW.signed IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        VALUES (NEW.exchange, 'received_revocation', NEW.message_id, NEW.signed);
END;

CREATE TRIGGER certificate_feed_received_revocation_gone AFTER DELETE ON received_revocations
BEGIN
    DELETE FROM certificate_feed
     WHERE source = 'received_revocation' AND ref = OLD.message_id;
END;
