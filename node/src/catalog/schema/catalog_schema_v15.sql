-- Catalog schema version 15: the certificate feed (v13) follows a received message's decision
-- when it changes, not only when it is recorded or deleted: a valid copy that replaces a
-- refusal of the same bytes is filed, and a waiting revocation later refused is no longer
-- served. A list of precedents (v14) is kept by its newest decision first, so a list signed by
-- a member that lags behind cannot replace a fuller one. SQL:
-- `catalog::tables::certificate_feed`, `catalog::tables::remote_precedents`.
DELETE FROM certificate_feed
 WHERE source = 'received_revocation'
   AND ref IN (SELECT message_id FROM received_revocations
                WHERE decision NOT IN ('applied', 'waiting'));

CREATE TRIGGER certificate_feed_received_decided AFTER UPDATE OF decision ON received_certificates
    WHEN NEW.decision = 'valid' AND NEW.signed IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        VALUES (NEW.exchange, 'received_certificate', NEW.message_id, NEW.signed);
END;

CREATE TRIGGER certificate_feed_received_revocation_decided
    AFTER UPDATE OF decision ON received_revocations
BEGIN
    DELETE FROM certificate_feed
     WHERE source = 'received_revocation' AND ref = NEW.message_id
       AND NEW.decision NOT IN ('applied', 'waiting');
    INSERT OR IGNORE INTO certificate_feed (exchange, source, ref, data)
        SELECT NEW.exchange, 'received_revocation', NEW.message_id, NEW.signed
         WHERE NEW.decision IN ('applied', 'waiting') AND NEW.signed IS NOT NULL;
END;

ALTER TABLE remote_precedents ADD COLUMN newest INTEGER NOT NULL DEFAULT 0;
