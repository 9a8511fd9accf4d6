-- Catalog schema version 2: federation. Listings may now also be recognised copies of other
-- zones' listings (state `recognised`, origin = their zone).

-- Changes of this zone's own listings that may leave the zone, in order. Written by the state
-- machine when a listing is approved or delisted; the leader signs and publishes pending rows.
-- `withheld` rows record what the export firewall kept home, and why.
CREATE TABLE outbox (
    seq          INTEGER PRIMARY KEY,
    listing_id   TEXT    NOT NULL,
    kind         TEXT    NOT NULL,   -- listing | delisting
    version      INTEGER NOT NULL,
    state        TEXT    NOT NULL,   -- pending | published | withheld
    reason       TEXT,               -- why withheld
    content_id   TEXT    NOT NULL,   -- id of `body`
    body         BLOB    NOT NULL,   -- canonical CBOR of the announced body
    at           INTEGER NOT NULL,   -- when the change was applied (command time)
    published_at INTEGER             -- when the signed envelope was recorded
);
CREATE INDEX outbox_state ON outbox (state, seq);
CREATE INDEX outbox_listing ON outbox (listing_id, seq);

-- Signed announcements this zone holds and serves to peers catching up: those it published and
-- those it accepted from others, byte for byte.
CREATE TABLE announcements (
    seq        INTEGER PRIMARY KEY,
    content_id TEXT    NOT NULL UNIQUE,  -- id of the envelope's body
    exchange   TEXT    NOT NULL,         -- the exchange whose topic it belongs to
    kind       TEXT    NOT NULL,
    listing_id TEXT,
    envelope   BLOB    NOT NULL
);
CREATE INDEX announcements_exchange ON announcements (exchange, seq);

-- Every decision on an announcement received from another zone or exchange.
CREATE TABLE recognitions (
    seq           INTEGER PRIMARY KEY,
    content_id    TEXT    NOT NULL UNIQUE,
    kind          TEXT    NOT NULL,      -- listing | delisting | revocation
    listing_id    TEXT,
    version       INTEGER,
    origin        TEXT    NOT NULL,      -- origin zone, or the revoking exchange
    exchange      TEXT    NOT NULL,
    agreement     TEXT    NOT NULL,      -- sibling | outside:<exchange id>
    decision      TEXT    NOT NULL,      -- recognised | rejected | stale | delisted | revoked
    reason        TEXT,
    signer        TEXT    NOT NULL,      -- base64 public key
    delegation    TEXT,                  -- JSON: exchange, zone, root_key, not_before, not_after
    received_from TEXT    NOT NULL,      -- peer id that delivered it
    at            INTEGER NOT NULL,
    raft_index    INTEGER NOT NULL
);
CREATE INDEX recognitions_decision ON recognitions (decision, seq);
CREATE INDEX recognitions_listing ON recognitions (listing_id, seq);

-- Node keys revoked by an exchange's root.
CREATE TABLE revocations (
    exchange   TEXT    NOT NULL,
    key        TEXT    NOT NULL,         -- base64 public key
    content_id TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (exchange, key)
);
