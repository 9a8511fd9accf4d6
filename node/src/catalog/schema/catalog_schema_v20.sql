-- Catalog schema version 20: the audit chain as a Merkle tree (PROTOCOL.md 12). `audit_tree`
-- holds the hash of every complete aligned subtree of the tree over the audit records: level 0
-- the leaf hashes, SHA-256(0x00 ‖ canonical CBOR of the record without `hash`), level l + 1 the
-- hash of two adjacent level-l nodes. It is derived from `audit` (a member's own table, rebuilt
-- after a snapshot is installed, filled for older records the first time the chain grows) and
-- answers roots and proofs without rehashing the log. SQL: `audit`.
CREATE TABLE audit_tree (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB    NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
