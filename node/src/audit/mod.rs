//! The audit chain: one record per applied command, each carrying the hash of the one before.
//!
//! A record's hash is SHA-256 over the canonical CBOR of the record without its `hash` field,
//! so anyone holding the records can recompute the chain; the first record's `prev_hash` is 32
//! zero bytes. Records hold only what the command carried, so every node's chain is identical.
//! (Merkle-tree proofs over this chain come with the verifiable-audit work.)
//!
//! This module is the `audit` table's only home: the state machine appends through
//! [`Chain`] on the catalog's writer, the API reads through [`range`].
//!
//! Layer: below the catalog and the store, which record into it; imports nothing of the crate.

use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection};
use xchg_protocol::Timestamp;
use xchg_protocol::canonical::to_canonical;

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
    /// The record's hash.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(to_canonical(self).unwrap_or_default()).into()
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
        }
        self.pending.clear();
        Ok(())
    }
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
            let to32 = |v: Vec<u8>| {
                let mut out = [0u8; 32];
                if v.len() == 32 {
                    out.copy_from_slice(&v);
                }
                out
            };
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
