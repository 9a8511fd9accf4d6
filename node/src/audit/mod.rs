//! The audit chain: one record per applied command, each carrying the hash of the one before.
//!
//! A record's hash is SHA-256 over the canonical CBOR of the record without its `hash` field,
//! so anyone holding the records can recompute the chain; the first record's `prev_hash` is 32
//! zero bytes. Records hold only what the command carried, so every node's chain is identical.
//!
//! The records are also the leaves of a Merkle tree (PROTOCOL.md 12): leaf `seq - 1` is
//! `SHA-256(0x00 ‖ b)` where `b` is the same canonical CBOR the record's `hash` is taken over.
//! [`Chain::flush`] stores, with each record, its leaf hash and the hash of every aligned
//! subtree it completes (`audit_tree`, on average two rows a record), so a root or a proof
//! reads O(log² n) stored hashes and never rehashes the log ([`tree_node`], [`root`]).
//!
//! This module is the `audit` and `audit_tree` tables' only home: the state machine appends
//! through [`Chain`] on the catalog's writer, the API reads through [`range`] and the tree
//! reads.
//!
//! Layer: below the catalog and the store, which record into it; imports nothing of the crate.

use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection};
use xchg_protocol::Timestamp;
use xchg_protocol::application::SignedMessage;
use xchg_protocol::canonical::to_canonical;
use xchg_protocol::merkle::{self, Hash};
use xchg_protocol::tree_head::{self, TreeHead};

/// The hashed content of an audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContent {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The Raft log index of the command.
    pub raft_index: u64,
    /// When (the command's time).
    pub at: Timestamp,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// What (the command's action name).
    pub action: String,
    /// On what (listing id, token hash, member name).
    pub object_id: String,
    /// `ok`, or `refused:<code>: <message>`.
    pub result: String,
    /// Hash of the previous record (hex in JSON, bytes in CBOR).
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
}

/// An audit record as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The hashed fields.
    #[serde(flatten)]
    pub content: AuditContent,
    /// SHA-256 of the canonical CBOR of `content`.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

impl AuditContent {
    /// The record bytes: the canonical CBOR of the record without its `hash` (a map of the nine
    /// keys of [`AuditContent`], `prev_hash` a 32-byte string).
    pub fn bytes(&self) -> Vec<u8> {
        to_canonical(self).unwrap_or_default()
    }

    /// The record's hash, SHA-256 of [`AuditContent::bytes`].
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.bytes()).into()
    }

    /// The record's leaf hash in the Merkle tree, `SHA-256(0x00 ‖ bytes)`.
    pub fn leaf_hash(&self) -> [u8; 32] {
        merkle::leaf_hash(&self.bytes())
    }
}

/// The chain's head and the records appended in the current state-machine batch, which are
/// written in one statement by [`Chain::flush`] (one round trip per batch instead of two per
/// command).
#[derive(Debug, Clone)]
pub struct Chain {
    seq: u64,
    hash: [u8; 32],
    at: Timestamp,
    pending: Vec<AuditRecord>,
}

impl Chain {
    /// Reads the head of the chain (or its origin: seq 0, zero hash) on the catalog's writer.
    ///
    /// # Errors
    /// Storage errors, or a stored hash that is not 32 bytes.
    pub fn load(db: &rusqlite::Connection) -> rusqlite::Result<Chain> {
        let head: Option<(i64, Vec<u8>, i64)> = db
            .prepare_cached("SELECT seq, hash, at FROM audit ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((seq, hash, at)) = head else {
            return Ok(Chain {
                seq: 0,
                hash: [0u8; 32],
                at: Timestamp(0),
                pending: Vec::new(),
            });
        };
        Ok(Chain {
            seq: seq as u64,
            hash: hash.as_slice().try_into().map_err(|_| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Blob,
                    "audit hash is not 32 bytes".into(),
                )
            })?,
            at: Timestamp(at as u64),
            pending: Vec::new(),
        })
    }

    /// The time of the last record (commands without a time of their own reuse it).
    pub fn last_at(&self) -> Timestamp {
        self.at
    }

    /// Appends one record after the head.
    pub fn append(&mut self, event: Event<'_>) {
        let content = AuditContent {
            seq: self.seq + 1,
            raft_index: event.raft_index,
            at: event.at,
            actor: event.actor.to_owned(),
            role: event.role.to_owned(),
            action: event.action.to_owned(),
            object_id: event.object_id.to_owned(),
            result: event.result,
            prev_hash: self.hash,
        };
        let hash = content.hash();
        self.seq = content.seq;
        self.hash = hash;
        self.at = content.at;
        self.pending.push(AuditRecord { content, hash });
    }

    /// Writes the records appended since the last flush, inside the caller's transaction (on
    /// the catalog's writer).
    ///
    /// # Errors
    /// Storage errors.
    pub fn flush(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
        if let Some(first) = self.pending.first() {
            // Records older than the tree (written before schema v20) get their leaves first.
            fill_tree(db, first.content.seq - 1)?;
        }
        let mut insert = db.prepare_cached(
            "INSERT INTO audit (seq, raft_index, at, actor, role, action, object_id, result, \
             prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for r in &self.pending {
            let c = &r.content;
            insert.execute(rusqlite::params![
                c.seq as i64,
                c.raft_index as i64,
                c.at.0 as i64,
                c.actor,
                c.role,
                c.action,
                c.object_id,
                c.result,
                &c.prev_hash[..],
                &r.hash[..],
            ])?;
            add_leaf(db, c.seq - 1, c.leaf_hash())?;
        }
        self.pending.clear();
        Ok(())
    }
}

/// Stores leaf `index` and every aligned subtree it completes. The leaves before it must be in
/// the tree.
pub(crate) fn add_leaf(db: &rusqlite::Connection, index: u64, leaf: Hash) -> rusqlite::Result<()> {
    let mut insert = db.prepare_cached(
        "INSERT OR REPLACE INTO audit_tree (level, idx, hash) VALUES (?1, ?2, ?3)",
    )?;
    let mut sibling =
        db.prepare_cached("SELECT hash FROM audit_tree WHERE level = ?1 AND idx = ?2")?;
    let (mut level, mut idx, mut hash) = (0i64, index, leaf);
    loop {
        insert.execute(rusqlite::params![level, idx as i64, &hash[..]])?;
        if idx % 2 == 0 {
            return Ok(());
        }
        let left: Vec<u8> =
            sibling.query_row(rusqlite::params![level, (idx - 1) as i64], |r| r.get(0))?;
        hash = merkle::node_hash(&to32(left), &hash);
        level += 1;
        idx /= 2;
    }
}

/// Makes the tree hold the first `size` records' leaves, adding those missing from the stored
/// records (a chain written before the tree existed, or a snapshot just installed).
fn fill_tree(db: &rusqlite::Connection, size: u64) -> rusqlite::Result<()> {
    let held: Option<i64> = db
        .prepare_cached("SELECT max(idx) FROM audit_tree WHERE level = 0")?
        .query_row([], |r| r.get(0))?;
    let held = held.map_or(0, |i| i as u64 + 1);
    if held >= size {
        return Ok(());
    }
    let mut rows = db.prepare(
        "SELECT seq, raft_index, at, actor, role, action, object_id, result, prev_hash \
         FROM audit WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
    )?;
    // A chunk of records at a time, read whole before their leaves are written: memory stays
    // bounded however long the chain (a snapshot install rebuilds the tree of every record).
    let mut from = held;
    while from < size {
        let to = size.min(from + FILL_CHUNK);
        let contents: Vec<AuditContent> = rows
            .query_map(rusqlite::params![from as i64, to as i64], |r| {
                Ok(AuditContent {
                    seq: r.get::<_, i64>(0)? as u64,
                    raft_index: r.get::<_, i64>(1)? as u64,
                    at: Timestamp(r.get::<_, i64>(2)? as u64),
                    actor: r.get(3)?,
                    role: r.get(4)?,
                    action: r.get(5)?,
                    object_id: r.get(6)?,
                    result: r.get(7)?,
                    prev_hash: to32(r.get(8)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        for c in contents {
            add_leaf(db, c.seq - 1, c.leaf_hash())?;
        }
        from = to;
    }
    Ok(())
}

/// Records [`fill_tree`] reads at a time.
pub(crate) const FILL_CHUNK: u64 = 4096;

/// Rebuilds the Merkle tree from the stored records, inside the caller's transaction on the
/// catalog's writer (after a snapshot is installed).
///
/// # Errors
/// Storage errors.
pub fn rebuild_tree(db: &rusqlite::Connection) -> rusqlite::Result<()> {
    db.execute("DELETE FROM audit_tree", [])?;
    let size: Option<i64> = db.query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))?;
    fill_tree(db, size.map_or(0, |s| s as u64))
}

fn to32(v: Vec<u8>) -> [u8; 32] {
    let mut out = [0u8; 32];
    if v.len() == 32 {
        out.copy_from_slice(&v);
    }
    out
}

/// The number of leaves in the tree: the audit records on this replica.
///
/// # Errors
/// Storage errors.
pub async fn tree_size(conn: &mut SqliteConnection) -> Result<u64, sqlx::Error> {
    let held: Option<i64> = sqlx::query_scalar("SELECT max(idx) FROM audit_tree WHERE level = 0")
        .fetch_one(&mut *conn)
        .await?;
    Ok(held.map_or(0, |i| i as u64 + 1))
}

/// The stored hash of the aligned subtree at `level`, `index`.
///
/// # Errors
/// Storage errors, or [`sqlx::Error::RowNotFound`] if that subtree is not complete.
pub async fn tree_node(
    conn: &mut SqliteConnection,
    level: u32,
    index: u64,
) -> Result<Hash, sqlx::Error> {
    let h: Vec<u8> = sqlx::query_scalar("SELECT hash FROM audit_tree WHERE level = ? AND idx = ?")
        .bind(i64::from(level))
        .bind(index as i64)
        .fetch_one(&mut *conn)
        .await?;
    Ok(to32(h))
}

/// `MTH(D[start:end])` from the stored subtrees (`end` at most [`tree_size`]).
///
/// # Errors
/// Storage errors.
pub async fn subtree(
    conn: &mut SqliteConnection,
    start: u64,
    end: u64,
) -> Result<Hash, sqlx::Error> {
    let mut nodes = std::collections::HashMap::new();
    for (level, index) in merkle::aligned_nodes(start, end) {
        nodes.insert((level, index), tree_node(conn, level, index).await?);
    }
    merkle::subtree_hash(start, end, &mut |l, i| {
        nodes.get(&(l, i)).copied().ok_or(sqlx::Error::RowNotFound)
    })
}

/// The root of the tree of the first `size` records.
///
/// # Errors
/// Storage errors.
pub async fn root(conn: &mut SqliteConnection, size: u64) -> Result<Hash, sqlx::Error> {
    subtree(conn, 0, size).await
}

/// The inclusion proof of record `index` (from 0) in the tree of `size` records (RFC 9162
/// 2.1.3.1), and the record's leaf hash. `index < size <= tree_size`.
///
/// # Errors
/// Storage errors.
pub async fn inclusion_proof(
    conn: &mut SqliteConnection,
    index: u64,
    size: u64,
) -> Result<(Hash, Vec<Hash>), sqlx::Error> {
    let leaf = tree_node(conn, 0, index).await?;
    let mut path = Vec::new();
    for (a, b) in merkle::inclusion_ranges(index, size) {
        path.push(subtree(conn, a, b).await?);
    }
    Ok((leaf, path))
}

/// The consistency proof between the trees of `from` and `to` records (RFC 9162 2.1.4.1).
/// `from <= to <= tree_size`.
///
/// # Errors
/// Storage errors.
pub async fn consistency_proof(
    conn: &mut SqliteConnection,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, sqlx::Error> {
    let mut proof = Vec::new();
    for (a, b) in merkle::consistency_ranges(from, to) {
        proof.push(subtree(conn, a, b).await?);
    }
    Ok(proof)
}

/// The file in a node's data directory holding the largest tree head this node has signed
/// (the canonical CBOR of the SignedMessage): what `xchg audit verify --data-dir` checks a
/// stopped node's log against.
pub const HEAD_FILE: &str = "audit-head.cbor";

/// Most often a node rewrites [`HEAD_FILE`]: it signs a head for every request and answer
/// (`GET /v1/audit/head`, every other zone's check every 5 s, the heads it publishes), and a
/// synced write for each stalled a busy node. The kept head is therefore the largest signed at
/// least this long after the one kept before it, never older than that.
pub const KEEP_HEAD_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Writes `signed`, a head of `size` records, to [`HEAD_FILE`] in `dir` unless the file holds
/// a head at least as large, or one was kept there less than [`KEEP_HEAD_AT_MOST_EVERY`] ago;
/// best effort (a failure is logged: the head is still served).
pub fn keep_head(dir: &std::path::Path, signed: &SignedMessage, size: u64) {
    static KEPT: std::sync::Mutex<
        std::collections::BTreeMap<std::path::PathBuf, std::time::Instant>,
    > = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let path = dir.join(HEAD_FILE);
    {
        let mut kept = KEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept
            .get(&path)
            .is_some_and(|t| t.elapsed() < KEEP_HEAD_AT_MOST_EVERY)
        {
            return;
        }
        kept.insert(path.clone(), std::time::Instant::now());
    }
    if let Some(kept) = kept_head(&path)
        && kept.size >= size
    {
        return;
    }
    if let Err(e) = write_private(&path, &signed.to_bytes()) {
        tracing::warn!(error = %e, "could not keep the signed tree head");
    }
}

/// Replaces `path` with `bytes` through a temporary file of mode 0600 renamed over it, as
/// private as the rest of the data directory.
///
/// # Errors
/// IO errors.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

/// The head kept in `path`, decoded without verification (the caller verifies).
pub fn kept_head(path: &std::path::Path) -> Option<TreeHead> {
    let bytes = std::fs::read(path).ok()?;
    let signed = SignedMessage::from_bytes(&bytes, &tree_head::limits()).ok()?;
    xchg_protocol::canonical::from_canonical(&signed.body, &tree_head::limits()).ok()
}

/// Signs the head of the first `size` records, whose root is `root_hash`, for `zone` at `at`,
/// with `key` under `delegation`, and keeps it in `dir` ([`keep_head`]).
pub fn sign_and_keep(
    dir: &std::path::Path,
    head: TreeHead,
    key: &xchg_protocol::Keypair,
    delegation: xchg_protocol::SignedDelegation,
) -> SignedMessage {
    let signed = tree_head::sign(&head, key, delegation);
    keep_head(dir, &signed, head.size);
    signed
}

/// What to record; seq and hashes are filled in by [`Chain::append`].
pub struct Event<'a> {
    /// Raft log index.
    pub raft_index: u64,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: &'a str,
    /// Role.
    pub role: &'a str,
    /// Action name.
    pub action: &'a str,
    /// Object.
    pub object_id: &'a str,
    /// Result text.
    pub result: String,
}

/// Reads up to `limit` records with `seq >= from`, in order.
///
/// # Errors
/// Storage errors.
pub async fn range(
    conn: &mut SqliteConnection,
    from: u64,
    limit: u32,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, raft_index, at, actor, role, action, object_id, result, prev_hash, hash
         FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?",
    )
    .bind(from as i64)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                content: AuditContent {
                    seq: r.try_get::<i64, _>(0)? as u64,
                    raft_index: r.try_get::<i64, _>(1)? as u64,
                    at: Timestamp(r.try_get::<i64, _>(2)? as u64),
                    actor: r.try_get(3)?,
                    role: r.try_get(4)?,
                    action: r.try_get(5)?,
                    object_id: r.try_get(6)?,
                    result: r.try_get(7)?,
                    prev_hash: to32(r.try_get(8)?),
                },
                hash: to32(r.try_get(9)?),
            })
        })
        .collect()
}

/// Recomputes the chain from the start; returns the first seq whose hash or link is wrong.
pub fn first_broken_link(records: &[AuditRecord], mut prev: [u8; 32]) -> Option<u64> {
    for r in records {
        if r.content.prev_hash != prev || r.content.hash() != r.hash {
            return Some(r.content.seq);
        }
        prev = r.hash;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_head_is_kept_at_most_every_5_s() {
        let dir = tempfile::tempdir().expect("dir");
        let head = |size: u64| {
            let h = TreeHead {
                zone: "xuchang/yuzhou".parse().expect("zone"),
                size,
                root_hash: [size as u8; 32],
                timestamp: Timestamp(1),
            };
            xchg_protocol::tree_head::sign(
                &h,
                &xchg_protocol::application_vectors::origin_node(),
                xchg_protocol::application_vectors::origin_delegation("xuchang/yuzhou"),
            )
        };
        keep_head(dir.path(), &head(3), 3);
        let kept = || kept_head(&dir.path().join(HEAD_FILE)).map(|h| h.size);
        assert_eq!(kept(), Some(3));
        keep_head(dir.path(), &head(9), 9);
        assert_eq!(
            kept(),
            Some(3),
            "a larger head within 5 s waits: no synced write per head"
        );
    }
}
