-- xchg Raft log database (raft-log.db), schema version 1: the log and the vote.

-- Raft log: one row per entry; `entry` is the CBOR of openraft's Entry.
CREATE TABLE raft_log (
    idx   INTEGER PRIMARY KEY,
    term  INTEGER NOT NULL,
    entry BLOB    NOT NULL
);

-- Raft metadata: vote, committed log id, last purged log id (CBOR values).
CREATE TABLE raft_meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
