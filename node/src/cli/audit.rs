//! `xchg audit verify`: checks a zone's whole audit log against a signed tree head
//! (PROTOCOL.md 12), from a running node's API (`--node`, `--token`: a regulator's or admin's,
//! which reads the records) or offline from a stopped node's data directory (`--data-dir`,
//! against the last head that node signed, kept in `audit-head.cbor`).
//!
//! The checks: the head's signature and its signer's delegation; then every record in order:
//! its seq, its `prev_hash` (the previous record's `hash`), its `hash` (SHA-256 of its fields'
//! canonical CBOR), and offline its leaf hash as the node's Merkle tree stores it and then every
//! node of that stored tree (each aligned subtree the records complete, none more); then the
//! root of the first `size` leaves, recomputed from the records, against the head's. The first
//! record that does not match is named with the field found wrong; exit status 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use xchg_protocol::application::SignedMessage;
use xchg_protocol::merkle::{Hash, MemoryTree};
use xchg_protocol::tree_head::{self, TreeHead};
use xchg_protocol::{PublicKey, Timestamp, TrustStore};

use super::args::AuditVerifyArgs;
use xchg_node::audit::{AuditContent, AuditRecord};

/// Records asked for per page (the API's largest page).
const PAGE: u32 = 1000;

/// The first disagreement found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The record's seq, when one record is to blame.
    pub seq: Option<u64>,
    /// The field found wrong (`seq`, `prev_hash`, `hash`, `leaf_hash`, `root_hash`, `size`).
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "record {seq}, field {}: {}", self.field, self.message),
            None => write!(f, "field {}: {}", self.field, self.message),
        }
    }
}

/// Checks records one at a time against the chain and builds the tree from them.
pub struct Checker {
    tree: MemoryTree,
    prev: Hash,
    next_seq: u64,
    /// The size of the signed head the records were finished against, once they were.
    signed: std::cell::Cell<Option<u64>>,
}

impl Default for Checker {
    fn default() -> Self {
        Checker {
            tree: MemoryTree::default(),
            prev: [0; 32],
            next_seq: 1,
            signed: std::cell::Cell::new(None),
        }
    }
}

impl Checker {
    /// Records checked so far.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// Checks the next record; `stored_leaf` is the leaf hash the node's tree holds for it,
    /// when known.
    ///
    /// # Errors
    /// The record's first wrong field.
    pub fn push(&mut self, r: &AuditRecord, stored_leaf: Option<Hash>) -> Result<(), Mismatch> {
        let c = &r.content;
        let at = |field, message: String| Mismatch {
            seq: Some(c.seq),
            field,
            message,
        };
        if c.seq != self.next_seq {
            return Err(at(
                "seq",
                format!(
                    "expected record {} here: a record is missing or moved",
                    self.next_seq
                ),
            ));
        }
        if c.prev_hash != self.prev {
            return Err(at(
                "prev_hash",
                format!(
                    "{} is not the hash of the record before, {}",
                    hex::encode(c.prev_hash),
                    hex::encode(self.prev)
                ),
            ));
        }
        let computed = c.hash();
        if computed != r.hash {
            return Err(at(
                "hash",
                format!(
                    "the record's fields (at {}, actor {:?}, role {:?}, action {:?}, object \
                     {:?}, result {:?}) hash to {}, not to its stored hash {}: a field was \
                     changed after the record was written",
                    c.at.0,
                    c.actor,
                    c.role,
                    c.action,
                    c.object_id,
                    c.result,
                    hex::encode(computed),
                    hex::encode(r.hash)
                ),
            ));
        }
        let leaf = c.leaf_hash();
        if let Some(stored) = stored_leaf
            && stored != leaf
        {
            return Err(at(
                "leaf_hash",
                format!(
                    "the Merkle tree holds leaf {} for it, its fields give {}",
                    hex::encode(stored),
                    hex::encode(leaf)
                ),
            ));
        }
        self.tree.push(leaf);
        self.prev = r.hash;
        self.next_seq += 1;
        Ok(())
    }

    /// Checks the records seen against `head`: at least `size` of them, and the root of the
    /// first `size` the head's.
    ///
    /// # Errors
    /// What disagrees.
    pub fn finish(&self, head: &TreeHead) -> Result<(), Mismatch> {
        self.signed.set(Some(head.size));
        if self.size() < head.size {
            return Err(Mismatch {
                seq: Some(self.size() + 1),
                field: "size",
                message: format!(
                    "the head signs {} records, the log has {}: records were removed",
                    head.size,
                    self.size()
                ),
            });
        }
        let root = self.tree.root(head.size);
        if root != head.root_hash {
            return Err(Mismatch {
                seq: None,
                field: "root_hash",
                message: format!(
                    "the first {} records give root {}, the signed head says {}: the log was \
                     rewritten after the head was signed",
                    head.size,
                    hex::encode(root),
                    hex::encode(head.root_hash)
                ),
            });
        }
        Ok(())
    }
}

/// Verifies a signed head's signature and delegation, trusting `root_key` (or, without one,
/// the root key its delegation names, said so).
///
/// # Errors
/// The head does not verify.
pub fn verify_head(bytes: &[u8], root_key: Option<&str>) -> anyhow::Result<TreeHead> {
    let limits = tree_head::limits();
    let signed = SignedMessage::from_bytes(bytes, &limits).context("the head does not decode")?;
    let claimed: TreeHead = xchg_protocol::canonical::from_canonical(&signed.body, &limits)
        .context("the head's body does not decode")?;
    let root = match root_key {
        Some(k) => PublicKey::from_base64(k)
            .or_else(|_| k.parse())
            .map_err(|_| {
                anyhow::anyhow!("--root-key: not a public key: base64 or 64 hex digits")
            })?,
        None => {
            let named = signed.delegation.root_key;
            outln!(
                "note: trusting the root key the head's delegation names, {named}; pass \
                 --root-key to check it against the exchange's"
            );
            named
        }
    };
    let mut trust = TrustStore::default();
    trust.trust(signed.delegation.delegation.exchange.clone(), root);
    let verified = tree_head::verify(bytes, &claimed.zone, &trust, Timestamp::now(), &limits)
        .map_err(|e| anyhow::anyhow!("the signed head does not verify: {} ({e})", e.kind()))?;
    outln!(
        "signed head: zone {}, {} records, root {}, signed at {} by {}: signature and delegation \
         valid",
        verified.body.zone,
        verified.body.size,
        hex::encode(verified.body.root_hash),
        verified.body.timestamp,
        verified.signer
    );
    Ok(verified.body)
}

/// What a check that passed covers: every record's chain link, hash and leaf, and the root of
/// the first `signed` of them (the signed head's size), if a head was checked.
fn ok_line(records: u64, signed: Option<u64>) -> String {
    let checked = format!("ok: {records} records: every chain link, record hash and leaf checks");
    match signed {
        Some(s) if s >= records => format!("{checked}, and the root matches the signed head"),
        Some(s) => format!(
            "{checked}; the root of the first {s} matches the signed head, the {} after it are \
             checked as a chain only (the log grew after the head was signed)",
            records - s
        ),
        None => format!("{checked}; no signed head was kept to check the root against"),
    }
}

fn report(checker: &Checker, result: Result<(), Mismatch>) -> ExitCode {
    match result {
        Ok(()) => {
            outln!("{}", ok_line(checker.size(), checker.signed.get()));
            ExitCode::SUCCESS
        }
        Err(m) => {
            eprintln!("tampered: {m}");
            ExitCode::FAILURE
        }
    }
}

/// `xchg audit verify`.
///
/// # Errors
/// The node or the files cannot be read, or the head does not verify.
pub fn verify(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    match args.data_dir.clone() {
        Some(dir) => offline(&dir, args.root_key.as_deref()),
        None => super::block_on(online(args)),
    }
}

async fn online(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    let root_key = args.root_key.clone();
    let t = args.target.into_target()?;
    let head = t.call(reqwest::Method::GET, "/v1/audit/head", None).await?;
    let bytes = hex::decode(head["signed_head"].as_str().unwrap_or_default())
        .context("the head's signed_head is not hex")?;
    let head = verify_head(&bytes, root_key.as_deref())?;
    let mut checker = Checker::default();
    loop {
        let from = checker.size() + 1;
        let page = t
            .call(
                reqwest::Method::GET,
                &format!("/v1/audit?from={from}&limit={PAGE}"),
                None,
            )
            .await?;
        let items: Vec<AuditRecord> = serde_json::from_value(page["items"].clone())
            .context("the audit page is not a list of records")?;
        if items.is_empty() {
            break;
        }
        for r in &items {
            if let Err(m) = checker.push(r, None) {
                return Ok(report(&checker, Err(m)));
            }
        }
        if checker.size() >= head.size && (items.len() as u32) < PAGE {
            break;
        }
    }
    let result = checker.finish(&head);
    Ok(report(&checker, result))
}

fn offline(dir: &Path, root_key: Option<&str>) -> anyhow::Result<ExitCode> {
    let (checker, result) = check_offline(dir, root_key)?;
    Ok(report(&checker, result))
}

/// The offline check of a stopped node's data directory: the checker over its records and the
/// first mismatch, if any.
fn check_offline(
    dir: &Path,
    root_key: Option<&str>,
) -> anyhow::Result<(Checker, Result<(), Mismatch>)> {
    let catalog: PathBuf = dir.join(xchg_node::store::CATALOG_FILE);
    if !catalog.exists() {
        bail!(
            "{}: no catalog here; is it a node's data directory?",
            catalog.display()
        );
    }
    let db = rusqlite::Connection::open_with_flags(
        &catalog,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", catalog.display()))?;
    let head_file = dir.join(xchg_node::audit::HEAD_FILE);
    let head = match std::fs::read(&head_file) {
        Ok(bytes) => Some(verify_head(&bytes, root_key)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            outln!(
                "note: no signed head kept in {} (the node never served one): checking the \
                 chain and its tree only",
                head_file.display()
            );
            None
        }
        Err(e) => return Err(e).context(format!("cannot read {}", head_file.display())),
    };
    let mut rows = db.prepare(
        "SELECT a.seq, a.raft_index, a.at, a.actor, a.role, a.action, a.object_id, a.result, \
         a.prev_hash, a.hash, t.hash FROM audit a \
         LEFT JOIN audit_tree t ON t.level = 0 AND t.idx = a.seq - 1 ORDER BY a.seq",
    )?;
    let mut records = rows.query([])?;
    let mut checker = Checker::default();
    let mut leaves = Vec::new();
    let hash = |v: Vec<u8>| -> Hash { v.try_into().unwrap_or([0xff; 32]) };
    while let Some(r) = records.next()? {
        let record = AuditRecord {
            content: AuditContent {
                seq: r.get::<_, i64>(0)? as u64,
                raft_index: r.get::<_, i64>(1)? as u64,
                at: Timestamp(r.get::<_, i64>(2)? as u64),
                actor: r.get(3)?,
                role: r.get(4)?,
                action: r.get(5)?,
                object_id: r.get(6)?,
                result: r.get(7)?,
                prev_hash: hash(r.get(8)?),
            },
            hash: hash(r.get(9)?),
        };
        let stored: Option<Vec<u8>> = r.get(10)?;
        if let Err(m) = checker.push(&record, stored.map(hash)) {
            return Ok((checker, Err(m)));
        }
        leaves.push(record.content.leaf_hash());
    }
    if let Err(m) = stored_tree(&db, &leaves)? {
        return Ok((checker, Err(m)));
    }
    let result = match &head {
        Some(h) => checker.finish(h),
        None => Ok(()),
    };
    Ok((checker, result))
}

/// The hashes of the complete pairs of a level: the level above.
fn parents(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks_exact(2)
        .map(|pair| xchg_protocol::merkle::node_hash(&pair[0], &pair[1]))
        .collect()
}

/// The record whose leaf is the first of the aligned subtree `(level, index)`, if it can be
/// one.
fn first_record(level: u64, index: u64) -> Option<u64> {
    let width = 1u64.checked_shl(u32::try_from(level).ok()?)?;
    index.checked_mul(width)?.checked_add(1)
}

/// Checks every node the node stores of its Merkle tree (`audit_tree`) against the tree the
/// records' `leaves` give: the node holds the hash of every aligned subtree its records
/// complete, from all of them (or none, for a log written before schema v20 and not appended
/// to since), so a node changed, removed or added is named by the first record it covers.
fn stored_tree(db: &rusqlite::Connection, leaves: &[Hash]) -> anyhow::Result<Result<(), Mismatch>> {
    let node = |level: u64, index: u64, message: String| Mismatch {
        seq: first_record(level, index),
        field: "audit_tree",
        message: format!("level {level}, index {index}: {message}"),
    };
    let mut rows = db.prepare("SELECT level, idx, hash FROM audit_tree ORDER BY level, idx")?;
    let mut rows = rows.query([])?;
    // The expected tree, a level at a time; `next` is the index expected at `level`.
    let mut level_hashes: Vec<Hash> = leaves.to_vec();
    let (mut level, mut next) = (0u64, 0u64);
    let mut any = false;
    while let Some(r) = rows.next()? {
        let (l, i, h): (i64, i64, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
        // No tree of this log has a level of 64 or more (nor a negative one).
        let (Ok(l @ 0..64), Ok(i)) = (u64::try_from(l), u64::try_from(i)) else {
            return Ok(Err(Mismatch {
                seq: None,
                field: "audit_tree",
                message: format!("a node at level {l}, index {i}, which no tree has"),
            }));
        };
        if !any && leaves.is_empty() {
            return Ok(Err(node(
                l,
                i,
                "a node of a tree the log has no records for".into(),
            )));
        }
        any = true;
        while level < l {
            if usize::try_from(next).is_ok_and(|n| n < level_hashes.len()) {
                return Ok(Err(node(
                    level,
                    next,
                    "missing from the stored tree".into(),
                )));
            }
            level_hashes = parents(&level_hashes);
            level += 1;
            next = 0;
        }
        if i > next {
            return Ok(Err(node(
                level,
                next,
                "missing from the stored tree".into(),
            )));
        }
        let Some(expected) = level_hashes.get(usize::try_from(i).unwrap_or(usize::MAX)) else {
            return Ok(Err(node(
                l,
                i,
                format!(
                    "a node no record completes (the log has {} records)",
                    leaves.len()
                ),
            )));
        };
        if h.as_slice() != expected.as_slice() {
            return Ok(Err(node(
                l,
                i,
                format!(
                    "holds {}, the records give {}",
                    hex::encode(&h),
                    hex::encode(expected)
                ),
            )));
        }
        next = i + 1;
    }
    if !any {
        // No tree yet: it is built from the records at the node's next append.
        return Ok(Ok(()));
    }
    // Every node the records complete above the last row read must be there too.
    loop {
        if usize::try_from(next).is_ok_and(|n| n < level_hashes.len()) {
            return Ok(Err(node(
                level,
                next,
                "missing from the stored tree".into(),
            )));
        }
        if level_hashes.len() < 2 {
            return Ok(Ok(()));
        }
        level_hashes = parents(&level_hashes);
        level += 1;
        next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passing_check_says_how_many_records_the_signed_head_covers() {
        assert!(ok_line(5, Some(5)).ends_with("and the root matches the signed head"));
        let grown = ok_line(7, Some(0));
        assert!(
            grown.contains(
                "the root of the first 0 matches the signed head, the 7 after it are \
                 checked as a chain only"
            ),
            "{grown}"
        );
        assert!(ok_line(3, None).contains("no signed head was kept"));
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = [0u8; 32];
        (1..=n)
            .map(|seq| {
                let content = AuditContent {
                    seq,
                    raft_index: seq + 2,
                    at: Timestamp(1_000 + seq),
                    actor: "admin".into(),
                    role: "admin".into(),
                    action: "submit_listing".into(),
                    object_id: format!("o{seq}"),
                    result: "ok".into(),
                    prev_hash: prev,
                };
                let hash = content.hash();
                prev = hash;
                AuditRecord { content, hash }
            })
            .collect()
    }

    fn head_of(records: &[AuditRecord], size: u64) -> TreeHead {
        let tree = MemoryTree::new(records.iter().map(|r| r.content.leaf_hash()));
        TreeHead {
            zone: "xuchang/yuzhou".parse().expect("zone"),
            size,
            root_hash: tree.root(size),
            timestamp: Timestamp(5),
        }
    }

    fn check(records: &[AuditRecord], head: &TreeHead) -> Result<(), Mismatch> {
        let mut c = Checker::default();
        for r in records {
            c.push(r, None)?;
        }
        c.finish(head)
    }

    /// A stopped node's data directory holding a log of `n` records and its Merkle tree, as
    /// the node writes them.
    fn data_dir(n: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("dir");
        let db = rusqlite::Connection::open(dir.path().join(xchg_node::store::CATALOG_FILE))
            .expect("open");
        xchg_node::sqlite::migrate(&db, xchg_node::catalog::SCHEMA).expect("schema");
        let mut chain = xchg_node::audit::Chain::load(&db).expect("load");
        for i in 0..n {
            chain.append(xchg_node::audit::Event {
                raft_index: i + 3,
                at: Timestamp(1_000 + i),
                actor: "admin",
                role: "admin",
                action: "submit_listing",
                object_id: "o",
                result: "ok".into(),
            });
        }
        chain.flush(&db).expect("flush");
        dir
    }

    fn tamper(dir: &tempfile::TempDir, sql: &str) {
        let db = rusqlite::Connection::open(dir.path().join(xchg_node::store::CATALOG_FILE))
            .expect("open");
        db.execute_batch(sql).expect("tamper");
    }

    #[test]
    fn offline_every_stored_node_of_the_tree_is_checked_not_only_the_leaves() {
        let field = |dir: &tempfile::TempDir| {
            let (_, result) = check_offline(dir.path(), None).expect("checks");
            result.err().map(|m| (m.field, m.seq))
        };
        assert_eq!(field(&data_dir(6)), None);
        // An inner node changed: the proofs and the heads the node serves would be wrong.
        let dir = data_dir(6);
        tamper(
            &dir,
            "UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 1 AND idx = 1",
        );
        assert_eq!(field(&dir), Some(("audit_tree", Some(3))));
        // A leaf removed from the middle of the tree.
        let dir = data_dir(6);
        tamper(&dir, "DELETE FROM audit_tree WHERE level = 0 AND idx = 2");
        assert_eq!(field(&dir), Some(("audit_tree", Some(3))));
        // The last leaf of an odd log removed: what is left is a whole tree, of one record less.
        let dir = data_dir(7);
        tamper(&dir, "DELETE FROM audit_tree WHERE level = 0 AND idx = 6");
        assert_eq!(field(&dir), Some(("audit_tree", Some(7))));
        // A node no record completes.
        let dir = data_dir(6);
        tamper(
            &dir,
            "INSERT INTO audit_tree (level, idx, hash) VALUES (1, 3, zeroblob(32))",
        );
        assert_eq!(field(&dir), Some(("audit_tree", Some(7))));
        // A node at a level no tree has is named at once, without climbing to it.
        let dir = data_dir(6);
        tamper(
            &dir,
            "INSERT INTO audit_tree (level, idx, hash) VALUES (9223372036854775807, 0, x'00')",
        );
        assert_eq!(field(&dir), Some(("audit_tree", None)));
        // A log written before the tree (schema v20) holds no tree yet: that is no tamper.
        let dir = data_dir(6);
        tamper(&dir, "DELETE FROM audit_tree");
        assert_eq!(field(&dir), None);
    }

    #[test]
    fn a_changed_field_a_removed_record_and_a_rewritten_log_are_each_named() {
        let records = chain(9);
        let head = head_of(&records, 8);
        assert_eq!(check(&records, &head), Ok(()));

        let mut changed = records.clone();
        changed[4].content.result = "refused:forbidden: no".into();
        let e = check(&changed, &head).expect_err("caught");
        assert_eq!((e.seq, e.field), (Some(5), "hash"));

        let mut removed = records.clone();
        removed.remove(3);
        let e = check(&removed, &head).expect_err("caught");
        assert_eq!((e.seq, e.field), (Some(5), "seq"));

        let e = check(&records[..6], &head).expect_err("caught");
        assert_eq!((e.seq, e.field), (Some(7), "size"));

        // Every hash recomputed after the change: the chain holds, the signed root does not.
        let mut rewritten = chain(9);
        rewritten[2].content.actor = "someone else".into();
        let mut prev = [0u8; 32];
        for r in &mut rewritten {
            r.content.prev_hash = prev;
            r.hash = r.content.hash();
            prev = r.hash;
        }
        let e = check(&rewritten, &head).expect_err("caught");
        assert_eq!((e.seq, e.field), (None, "root_hash"));
    }
}
