-- Catalog schema version 21: demands across exchanges (PROTOCOL.md 11.9). `shared_demands`
-- holds, for each demand its buyer shared with the federation, the canonical Demand of its
-- latest state, pending until the leader signs and publishes it, and the last SignedMessage
-- published (what catch-up serves). `foreign_demands` holds the demands of other zones this
-- zone recognised under its agreements: the latest state of each (zone, number), with the
-- signed bytes it came in and the key that signed it. `demand_feed` files every signed demand
-- catch-up serves (this zone's published ones and the foreign ones held) in the order the zone
-- last wrote it: `pos` is the position catch-up pages by, strictly increasing even when one Raft
-- entry writes several demands, and a demand written again moves to the end. Triggers keep it,
-- so every path that publishes, keeps or deletes a demand files it; it is a member's own table,
-- rebuilt after a snapshot is installed. SQL: `catalog::tables::demands_across`.
CREATE TABLE shared_demands (
    demand_id    INTEGER PRIMARY KEY,     -- the local demand
    body         BLOB    NOT NULL,        -- canonical Demand of its latest state
    updated_at   INTEGER NOT NULL,
    state        TEXT    NOT NULL,        -- pending | published
    signed       BLOB,                    -- the last SignedMessage published
    published_at INTEGER,
    raft_index   INTEGER NOT NULL
);
CREATE INDEX shared_demands_pending ON shared_demands (state, demand_id);

CREATE TABLE foreign_demands (
    id            INTEGER PRIMARY KEY,    -- in log order: identical on every node
    exchange      TEXT    NOT NULL,
    zone          TEXT    NOT NULL,
    number        INTEGER NOT NULL,
    state         TEXT    NOT NULL,       -- open | withdrawn | accepted
    category      TEXT    NOT NULL,
    title         TEXT    NOT NULL,
    description   TEXT    NOT NULL,
    body          TEXT    NOT NULL,       -- the Demand as decoded, JSON
    deadline      INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    message_id    TEXT    NOT NULL,
    signed        BLOB    NOT NULL,       -- the SignedMessage as received
    signer        TEXT    NOT NULL,       -- the signing node key, base64
    received_from TEXT    NOT NULL,
    recorded_at   INTEGER NOT NULL,
    raft_index    INTEGER NOT NULL,
    UNIQUE (zone, number)
);
CREATE INDEX foreign_demands_category ON foreign_demands (category, id);
CREATE INDEX foreign_demands_message ON foreign_demands (message_id);
CREATE INDEX foreign_demands_signer ON foreign_demands (exchange, signer);
CREATE INDEX foreign_demands_deadline ON foreign_demands (deadline);
CREATE INDEX foreign_demands_updated ON foreign_demands (updated_at);

CREATE TABLE demand_feed (
    pos    INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,       -- own (ref: the demand id) | foreign (ref: zone:number)
    ref    TEXT NOT NULL,
    data   BLOB NOT NULL,       -- the SignedMessage, exactly as published or received
    UNIQUE (source, ref)
);

CREATE TRIGGER demand_feed_published AFTER UPDATE OF signed ON shared_demands
WHEN NEW.signed IS NOT NULL
BEGIN
    DELETE FROM demand_feed WHERE source = 'own' AND ref = CAST(NEW.demand_id AS TEXT);
    INSERT INTO demand_feed (source, ref, data)
        VALUES ('own', CAST(NEW.demand_id AS TEXT), NEW.signed);
END;

CREATE TRIGGER demand_feed_received AFTER INSERT ON foreign_demands
BEGIN
    DELETE FROM demand_feed WHERE source = 'foreign' AND ref = NEW.zone || ':' || NEW.number;
    INSERT INTO demand_feed (source, ref, data)
        VALUES ('foreign', NEW.zone || ':' || NEW.number, NEW.signed);
END;

CREATE TRIGGER demand_feed_replaced AFTER UPDATE OF signed ON foreign_demands
BEGIN
    DELETE FROM demand_feed WHERE source = 'foreign' AND ref = OLD.zone || ':' || OLD.number;
    INSERT INTO demand_feed (source, ref, data)
        VALUES ('foreign', NEW.zone || ':' || NEW.number, NEW.signed);
END;

CREATE TRIGGER demand_feed_gone AFTER DELETE ON foreign_demands
BEGIN
    DELETE FROM demand_feed WHERE source = 'foreign' AND ref = OLD.zone || ':' || OLD.number;
END;
