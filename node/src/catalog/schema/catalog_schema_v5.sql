-- Catalog schema version 5: idempotency keys.
--
-- A creating write sent with an `Idempotency-Key` header is applied once per caller and key:
-- the state machine keeps the key, a hash of the request and the response here, and answers a
-- retry with the first response (a different request under the same key is refused). Rows
-- expire 24 hours after they were written, judged by the time of the command applying, so
-- every replica deletes the same rows.
CREATE TABLE idempotency (
    actor    TEXT    NOT NULL,
    key      TEXT    NOT NULL,
    request  BLOB    NOT NULL,   -- SHA-256 of method, path and body
    response BLOB    NOT NULL,   -- the command's response, CBOR
    at       INTEGER NOT NULL,   -- when it was first applied (ms since the epoch)
    PRIMARY KEY (actor, key)
);
CREATE INDEX idempotency_at ON idempotency (at);
