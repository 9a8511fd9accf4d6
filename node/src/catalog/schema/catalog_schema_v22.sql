-- Catalog schema version 22: search leaves the catalog file (issue #17).
--
-- 1. The FTS5 trigram index is gone: search is served by a separate index derived from the
--    applied catalog (`node::search`), written off the Raft apply path. With it go the copies
--    of the listing's text that only the trigram index read (title, description, keywords,
--    scenarios, provider name: the canonical body holds them).
DROP TRIGGER listings_fts_update;
DROP TRIGGER listings_fts_delete;
DROP TABLE listings_fts;
ALTER TABLE listings DROP COLUMN provider_name;
ALTER TABLE listings DROP COLUMN title;
ALTER TABLE listings DROP COLUMN description;
ALTER TABLE listings DROP COLUMN keywords;
ALTER TABLE listings DROP COLUMN scenarios;

-- 2. Every change of a listings row takes the next number of this member's listing clock
--    (`listing_changes`), so the search index finds what it has not indexed yet with one range
--    read, after a restart too. `epoch` names the numbering: restoring a snapshot renumbers
--    every row and draws a new epoch, which tells the index to start over. The clock and the
--    numbers are this member's own (not replicated, not in snapshots), like the index they
--    serve; the listings rows stay identical on every member.
CREATE TABLE listing_clock (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    n     INTEGER NOT NULL,
    epoch INTEGER NOT NULL
);
INSERT INTO listing_clock (id, n, epoch)
    VALUES (1, (SELECT COALESCE(MAX(seq), 0) FROM listings), abs(random() % 9007199254740991));
CREATE TABLE listing_changes (
    seq    INTEGER PRIMARY KEY,               -- listings.seq
    change INTEGER NOT NULL                   -- the clock's number of the row's latest change
);
INSERT INTO listing_changes (seq, change) SELECT seq, seq FROM listings;
CREATE INDEX listing_changes_change ON listing_changes (change);
CREATE TRIGGER listings_changed_insert AFTER INSERT ON listings BEGIN
    UPDATE listing_clock SET n = n + 1;
    INSERT OR REPLACE INTO listing_changes (seq, change)
        VALUES (NEW.seq, (SELECT n FROM listing_clock));
END;
CREATE TRIGGER listings_changed_update AFTER UPDATE ON listings BEGIN
    UPDATE listing_clock SET n = n + 1;
    INSERT OR REPLACE INTO listing_changes (seq, change)
        VALUES (NEW.seq, (SELECT n FROM listing_clock));
END;
CREATE TRIGGER listings_changed_delete AFTER DELETE ON listings BEGIN
    DELETE FROM listing_changes WHERE seq = OLD.seq;
END;
