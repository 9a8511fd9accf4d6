-- xchg catalog database (catalog.db), schema version 1: the state machine (catalog, audit
-- chain, tokens), its position in the log, and the latest snapshot.

-- State-machine metadata: last applied log id and membership (CBOR values).
CREATE TABLE sm_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- The latest snapshot (at most one row).
CREATE TABLE snapshot (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    meta BLOB NOT NULL,
    data BLOB NOT NULL
);

-- The catalog: the current version of every listing known to the zone.
CREATE TABLE listings (
    seq            INTEGER PRIMARY KEY,      -- order of first appearance; identical on every node
    id             TEXT    NOT NULL UNIQUE,  -- listing id, sha256:...
    version        INTEGER NOT NULL,
    content_id     TEXT    NOT NULL,         -- id of the current version's canonical bytes
    state          TEXT    NOT NULL,         -- submitted | listed | rejected | delisted
    origin         TEXT    NOT NULL,         -- origin zone id
    submitted_by   TEXT    NOT NULL,         -- actor id of the submitter (owner of updates)
    provider_id    TEXT    NOT NULL,
    provider_name  TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    classification TEXT    NOT NULL,
    delivery_modes TEXT    NOT NULL,         -- ",file,api," for facet filtering
    title          TEXT    NOT NULL,
    description    TEXT    NOT NULL,
    keywords       TEXT    NOT NULL,
    scenarios      TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    body           BLOB    NOT NULL          -- canonical CBOR of the current version
);
CREATE INDEX listings_state ON listings (state, seq);
CREATE INDEX listings_category ON listings (category, seq);
CREATE INDEX listings_origin ON listings (origin, seq);

-- Full-text search over listings; the trigram tokenizer finds Chinese text, which has no spaces.
CREATE VIRTUAL TABLE listings_fts USING fts5(
    title, description, keywords, scenarios, provider_name,
    content = 'listings', content_rowid = 'seq', tokenize = 'trigram'
);
CREATE TRIGGER listings_fts_insert AFTER INSERT ON listings BEGIN
    INSERT INTO listings_fts (rowid, title, description, keywords, scenarios, provider_name)
    VALUES (new.seq, new.title, new.description, new.keywords, new.scenarios, new.provider_name);
END;
CREATE TRIGGER listings_fts_delete AFTER DELETE ON listings BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description, keywords, scenarios, provider_name)
    VALUES ('delete', old.seq, old.title, old.description, old.keywords, old.scenarios, old.provider_name);
END;
CREATE TRIGGER listings_fts_update AFTER UPDATE ON listings BEGIN
    INSERT INTO listings_fts (listings_fts, rowid, title, description, keywords, scenarios, provider_name)
    VALUES ('delete', old.seq, old.title, old.description, old.keywords, old.scenarios, old.provider_name);
    INSERT INTO listings_fts (rowid, title, description, keywords, scenarios, provider_name)
    VALUES (new.seq, new.title, new.description, new.keywords, new.scenarios, new.provider_name);
END;

-- Who did what to a listing, in order.
CREATE TABLE listing_history (
    listing_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    raft_index INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    detail     TEXT,                          -- JSON: review notes, reasons
    PRIMARY KEY (listing_id, seq)
);

-- The audit chain: one record per applied command, each hashing the previous.
CREATE TABLE audit (
    seq        INTEGER PRIMARY KEY,
    raft_index INTEGER NOT NULL,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    object_id  TEXT    NOT NULL,
    result     TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);

-- API tokens created at run time (hashes only); config tokens live in each node's config.
CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,              -- hex SHA-256 of the token text
    role       TEXT    NOT NULL,
    party      TEXT,                          -- the party a token acts for, if bound
    label      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
