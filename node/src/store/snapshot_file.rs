//! The latest snapshot, in a file of its own next to the databases (`snapshot.bin`).
//!
//! A snapshot holds every row of the zone (about 100 MB at 80,000 listings). Kept as a row of
//! `catalog.db`, storing one went through the catalog's single writer — every batch waited
//! while 100 MB went into the WAL — and then through the checkpointer a second time. In a file
//! of its own it is written once, by the thread that built it, and the catalog's writer never
//! sees it.
//!
//! # Layout
//!
//! ```text
//! magic "xchgsnap" | format u32 LE | meta length u32 LE | data length u64 LE |
//! SHA-256 of meta and data (32 bytes) | meta (CBOR SnapshotMeta) | data (CBOR payload)
//! ```
//!
//! # Durability
//!
//! A new snapshot is written to `snapshot.bin.tmp`, synced, renamed over `snapshot.bin`, and
//! the directory synced: a crash leaves the old file or the new one, never a mix. Openraft
//! purges the log only behind a snapshot it has been given, which is on disk by then. Reading
//! checks the lengths and the hash, so a damaged file is an error, never a wrong snapshot.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::{from_cbor, to_cbor};
use crate::raft::SnapshotMeta;

/// The snapshot file in a data directory.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";

const MAGIC: &[u8; 8] = b"xchgsnap";
/// The layout version of the file (the payload inside has its own format number).
const LAYOUT: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 32;
/// Far above any real meta (a membership of a few nodes), so a damaged length is caught
/// before anything is allocated for it.
const MAX_META_LEN: u32 = 1 << 20;
/// The written file is synced every this many bytes, so the disk takes it in pieces instead
/// of one flush of the whole file competing with the Raft log's fsyncs.
const SYNC_EVERY: usize = 16 << 20;

/// The latest snapshot of a node. Every store is made under one lock, so a check for a newer
/// stored snapshot and the replacement are one step.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    dir: PathBuf,
    storing: Mutex<()>,
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("snapshot file {}: {what}", path.display()),
    )
}

/// The fixed-size start of the file.
struct Header {
    meta_len: u32,
    data_len: u64,
    hash: [u8; 32],
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(MAGIC);
        out[8..12].copy_from_slice(&LAYOUT.to_le_bytes());
        out[12..16].copy_from_slice(&self.meta_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.data_len.to_le_bytes());
        out[24..].copy_from_slice(&self.hash);
        out
    }

    fn decode(path: &Path, bytes: &[u8; HEADER_LEN], file_len: u64) -> std::io::Result<Header> {
        if &bytes[..8] != MAGIC {
            return Err(invalid(path, "not an xchg snapshot"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let layout = word(8);
        if layout != LAYOUT {
            return Err(invalid(
                path,
                format!("layout {layout}; this xchg reads layout {LAYOUT}"),
            ));
        }
        let meta_len = word(12);
        let mut data_len = [0u8; 8];
        data_len.copy_from_slice(&bytes[16..24]);
        let data_len = u64::from_le_bytes(data_len);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[24..]);
        if meta_len > MAX_META_LEN {
            return Err(invalid(path, format!("meta of {meta_len} bytes")));
        }
        let expected = (HEADER_LEN as u64)
            .checked_add(u64::from(meta_len))
            .and_then(|n| n.checked_add(data_len));
        if expected != Some(file_len) {
            return Err(invalid(
                path,
                format!(
                    "{file_len} bytes where the header says {HEADER_LEN} + {meta_len} + \
                     {data_len} (cut short or damaged)"
                ),
            ));
        }
        Ok(Header {
            meta_len,
            data_len,
            hash,
        })
    }
}

impl SnapshotFile {
    /// The snapshot file of data directory `dir` (which may hold none yet). A temporary file
    /// left by a store that a crash interrupted is removed.
    pub fn new(dir: &Path) -> SnapshotFile {
        let file = SnapshotFile {
            path: dir.join(SNAPSHOT_FILE),
            dir: dir.to_owned(),
            storing: Mutex::new(()),
        };
        let _ = std::fs::remove_file(file.temporary());
        file
    }

    fn temporary(&self) -> PathBuf {
        self.path.with_extension("bin.tmp")
    }

    fn open(&self) -> std::io::Result<Option<(File, Header)>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let mut header = [0u8; HEADER_LEN];
        file.read_exact(&mut header)
            .map_err(|_| invalid(&self.path, format!("{len} bytes, shorter than a header")))?;
        let header = Header::decode(&self.path, &header, len)?;
        Ok(Some((file, header)))
    }

    fn read_meta_from(&self, file: &mut File, header: &Header) -> std::io::Result<SnapshotMeta> {
        let mut meta = vec![0u8; header.meta_len as usize];
        file.read_exact(&mut meta)?;
        from_cbor(&meta).map_err(|e| invalid(&self.path, format!("meta: {e}")))
    }

    /// The stored snapshot's meta, without reading its data. Blocking.
    ///
    /// # Errors
    /// The file cannot be read, or is damaged.
    pub fn read_meta(&self) -> std::io::Result<Option<SnapshotMeta>> {
        let Some((mut file, header)) = self.open()? else {
            return Ok(None);
        };
        self.read_meta_from(&mut file, &header).map(Some)
    }

    /// The stored snapshot, its hash checked. Blocking.
    ///
    /// # Errors
    /// The file cannot be read, or is damaged.
    pub fn read(&self) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let Some((mut file, header)) = self.open()? else {
            return Ok(None);
        };
        let mut meta = vec![0u8; header.meta_len as usize];
        file.read_exact(&mut meta)?;
        let data_len = usize::try_from(header.data_len)
            .map_err(|_| invalid(&self.path, "larger than this machine's memory"))?;
        let mut data = Vec::with_capacity(data_len);
        file.read_to_end(&mut data)?;
        let hash: [u8; 32] = Sha256::new()
            .chain_update(&meta)
            .chain_update(&data)
            .finalize()
            .into();
        if data.len() != data_len || hash != header.hash {
            return Err(invalid(&self.path, "content does not match its hash"));
        }
        let meta = from_cbor(&meta).map_err(|e| invalid(&self.path, format!("meta: {e}")))?;
        Ok(Some((meta, data)))
    }

    /// Stores `data` as the snapshot `meta` describes, unless the stored one is newer (see
    /// [`SnapshotFile::store_encoded`]). Blocking: it writes and syncs the whole file.
    ///
    /// # Errors
    /// The file cannot be written; the stored snapshot is then unchanged.
    pub fn store(&self, meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<bool> {
        self.store_encoded(&to_cbor(meta)?, data)
    }

    /// Stores `data` with the encoded `meta` unless the stored snapshot is newer than the one
    /// `meta` describes: openraft builds snapshots in a task of its own, so a snapshot installed
    /// from the leader meanwhile may be newer than this node's dump, which started before it.
    /// Returns whether it was stored. Blocking.
    ///
    /// # Errors
    /// `meta` does not decode, or the file cannot be written; the stored snapshot is then
    /// unchanged.
    pub(super) fn store_encoded(&self, meta: &[u8], data: &[u8]) -> std::io::Result<bool> {
        let incoming: SnapshotMeta =
            from_cbor(meta).map_err(|e| invalid(&self.path, format!("meta: {e}")))?;
        let _storing = self.storing.lock().unwrap_or_else(PoisonError::into_inner);
        // A damaged stored file is replaced: it could not be served anyway.
        if let Ok(Some(stored)) = self.read_meta()
            && stored.last_log_id > incoming.last_log_id
        {
            return Ok(false);
        }
        let meta_len = u32::try_from(meta.len())
            .ok()
            .filter(|n| *n <= MAX_META_LEN)
            .ok_or_else(|| invalid(&self.path, format!("meta of {} bytes", meta.len())))?;
        let header = Header {
            meta_len,
            data_len: data.len() as u64,
            hash: Sha256::new()
                .chain_update(meta)
                .chain_update(data)
                .finalize()
                .into(),
        };
        let temporary = self.temporary();
        let mut file = File::create(&temporary)?;
        file.write_all(&header.encode())?;
        file.write_all(meta)?;
        for piece in data.chunks(SYNC_EVERY) {
            file.write_all(piece)?;
            file.sync_data()?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, StoredMembership};

    use super::*;
    use crate::raft::LogId;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    #[test]
    fn a_stored_snapshot_reads_back_and_an_older_one_does_not_replace_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::new(dir.path());
        assert!(file.read().expect("read").is_none());
        assert!(file.store(&meta(100), b"new").expect("store"));
        // A dump that finished after a newer snapshot was installed does not replace it.
        assert!(!file.store(&meta(50), b"old").expect("store"));
        let (read, data) = file.read().expect("read").expect("stored");
        assert_eq!(read.snapshot_id, "s100");
        assert_eq!(data, b"new");
        assert!(file.store(&meta(150), b"newer").expect("store"));
        assert_eq!(
            file.read_meta().expect("meta").expect("stored").snapshot_id,
            "s150"
        );
        // Reopened (a restarted node), the same.
        let file = SnapshotFile::new(dir.path());
        assert_eq!(file.read().expect("read").expect("stored").1, b"newer");
    }

    #[test]
    fn a_damaged_or_cut_file_is_an_error_and_is_replaced_by_the_next_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::new(dir.path());
        let data = vec![7u8; 3 * 1024];
        assert!(file.store(&meta(10), &data).expect("store"));
        let path = dir.path().join(SNAPSHOT_FILE);
        let whole = std::fs::read(&path).expect("file");

        // One byte of the data changed.
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&path, &flipped).expect("write");
        let e = file.read().expect_err("a changed byte");
        assert!(e.to_string().contains("does not match its hash"), "{e}");

        // Cut short.
        std::fs::write(&path, &whole[..whole.len() - 10]).expect("write");
        let e = file.read().expect_err("cut");
        assert!(e.to_string().contains("cut short"), "{e}");
        std::fs::write(&path, &whole[..10]).expect("write");
        let e = file.read_meta().expect_err("shorter than a header");
        assert!(e.to_string().contains("shorter than a header"), "{e}");

        // Something else.
        std::fs::write(&path, vec![0u8; 200]).expect("write");
        let e = file.read().expect_err("not ours");
        assert!(e.to_string().contains("not an xchg snapshot"), "{e}");

        // The next store replaces the damaged file, even with an older index.
        assert!(file.store(&meta(5), b"fresh").expect("store"));
        assert_eq!(file.read().expect("read").expect("stored").1, b"fresh");
    }

    #[test]
    fn a_store_interrupted_by_a_crash_leaves_the_previous_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::new(dir.path());
        assert!(file.store(&meta(10), b"kept").expect("store"));
        // A crash mid-store leaves a partial temporary file; the stored one is untouched and a
        // restarted node removes the leftover.
        let temporary = dir.path().join("snapshot.bin.tmp");
        std::fs::write(&temporary, b"xchgsnap partial").expect("write");
        let file = SnapshotFile::new(dir.path());
        assert!(!temporary.exists());
        assert_eq!(file.read().expect("read").expect("stored").1, b"kept");
    }
}
