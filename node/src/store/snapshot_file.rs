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
//! A new snapshot is written to `snapshot.bin.tmp` (created with mode 0600), synced, renamed
//! over `snapshot.bin`, and the directory synced: a crash leaves the old file or the new one, never a mix. Openraft
//! purges the log only behind a snapshot it has been given, which is on disk by then. Whatever
//! reads the data checks the lengths and the hash (in pieces, as it reads), so a damaged file is
//! an error, never a wrong snapshot; only a look at the meta alone ([`read_meta`], or the data
//! handed to openraft by a build, which only keeps the meta) does not.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::raft_types::{LogId, SnapshotMeta};
use super::{from_cbor, to_cbor};

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

/// Temporary files (one per store under way) start with this.
const TEMPORARY_PREFIX: &str = "snapshot.bin.tmp";

/// Why [`SnapshotFile::store_copy`] stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The file copied from: unreadable, or not the whole file that was checked (kind
    /// `InvalidData`).
    #[error(transparent)]
    Source(std::io::Error),
    /// The copy being written.
    #[error(transparent)]
    Copy(std::io::Error),
}

/// The latest snapshot of a node.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    dir: PathBuf,
    /// The stored snapshot's position, `None` when there is none; locked for each store's
    /// comparison and rename, so that they are one step.
    stored: Mutex<Option<Option<LogId>>>,
    /// Numbers the temporary files of stores under way.
    temporaries: AtomicU64,
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("snapshot file {}: {what}", path.display()),
    )
}

/// The hash the header records: of the meta and the data, in that order.
fn content_hash(meta: &[u8], data: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(meta)
        .chain_update(data)
        .finalize()
        .into()
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

/// The snapshot file at `path`, positioned after its header, and the header checked against
/// the file's length.
fn open_with_header(path: &Path) -> std::io::Result<(File, Header)> {
    let mut file = File::open(path)?;
    let metadata = file.metadata()?;
    if metadata.is_dir() {
        return Err(invalid(
            path,
            "is a directory, not a snapshot or backup file".to_owned(),
        ));
    }
    let len = metadata.len();
    let mut header = [0u8; HEADER_LEN];
    file.read_exact(&mut header)
        .map_err(|_| invalid(path, format!("{len} bytes, shorter than a header")))?;
    let header = Header::decode(path, &header, len)?;
    Ok((file, header))
}

/// Reads only the meta of the snapshot file at `path` (its log position and membership), not
/// its data, and so without checking the hash over both: for a look before the whole file is
/// read (and then checked). Blocking.
///
/// # Errors
/// The file cannot be read (kind `NotFound` if it does not exist), or its header or meta is
/// damaged (kind `InvalidData`); a damaged data part goes unnoticed.
pub fn read_meta(path: &Path) -> std::io::Result<SnapshotMeta> {
    let (mut file, header) = open_with_header(path)?;
    let mut meta = vec![0u8; header.meta_len as usize];
    file.read_exact(&mut meta)?;
    from_cbor(&meta).map_err(|e| invalid(path, format!("meta: {e}")))
}

/// Reads the snapshot file at `path` (a node's, or a backup made of one) whole into memory and
/// checks its lengths and hash: for tests (nodes read snapshots in pieces). Blocking.
///
/// # Errors
/// The file cannot be read (kind `NotFound` if it does not exist), or is not a whole, undamaged
/// snapshot file (kind `InvalidData`, saying what is wrong).
#[cfg(test)]
pub fn read_from(path: &Path) -> std::io::Result<(SnapshotMeta, Vec<u8>)> {
    let (file, header) = open_with_header(path)?;
    let data_len = usize::try_from(header.data_len)
        .map_err(|_| invalid(path, "larger than this machine's memory"))?;
    // The lengths were checked against the file's size; `take` keeps the read to them should
    // the file grow meanwhile.
    let mut body = file.take(u64::from(header.meta_len) + header.data_len);
    let mut meta = vec![0u8; header.meta_len as usize];
    body.read_exact(&mut meta)?;
    let mut data = Vec::with_capacity(data_len);
    body.read_to_end(&mut data)?;
    if data.len() != data_len || content_hash(&meta, &data) != header.hash {
        return Err(invalid(path, "content does not match its hash"));
    }
    let meta = from_cbor(&meta).map_err(|e| invalid(path, format!("meta: {e}")))?;
    Ok((meta, data))
}

/// A reader of a snapshot file's data that hashes what passes through it (after the meta, which
/// the hash starts with) and tells `progress` how many bytes of the data have passed (of how
/// many).
struct Through<'p> {
    inner: std::io::Take<File>,
    hash: Sha256,
    done: u64,
    total: u64,
    progress: &'p mut dyn FnMut(u64, u64),
}

impl Read for Through<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.done += n as u64;
        (self.progress)(self.done, self.total);
        Ok(n)
    }
}

impl Through<'_> {
    /// Whether what passed through was the whole data its header describes.
    fn matches(self, header: &Header) -> bool {
        self.done == header.data_len && <[u8; 32]>::from(self.hash.finalize()) == header.hash
    }
}

/// Opens the snapshot file at `path` for reading in pieces: its header (checked against the
/// file's length), its meta as stored, and a reader of its data that hashes it.
fn open_through<'p>(
    path: &Path,
    progress: &'p mut dyn FnMut(u64, u64),
) -> std::io::Result<(Header, Vec<u8>, Through<'p>)> {
    let (file, header) = open_with_header(path)?;
    // The lengths were checked against the file's size; `take` keeps the read to them should
    // the file grow meanwhile.
    let mut body = file.take(u64::from(header.meta_len) + header.data_len);
    let mut meta = vec![0u8; header.meta_len as usize];
    body.read_exact(&mut meta)?;
    let mut hash = Sha256::new();
    hash.update(&meta);
    let through = Through {
        inner: body,
        hash,
        done: 0,
        total: header.data_len,
        progress,
    };
    Ok((header, meta, through))
}

/// How much of a file is read at a time when it is streamed.
const STREAM_BUFFER: usize = 1 << 20;

/// Reads the snapshot file at `path` in pieces, never holding its data whole: `consume` is
/// handed a reader of the data (it may stop early; the rest is read for the hash), `progress`
/// is told the bytes of data read so far and their total, and the hash is checked at the end.
/// A file whose hash does not match is refused even when `consume` succeeded, and the hash's
/// error is the one reported when both fail (a damaged file is what made `consume` fail).
/// Blocking.
///
/// # Errors
/// The file cannot be read (kind `NotFound` if it does not exist), or is not a whole, undamaged
/// snapshot file (kind `InvalidData`, saying what is wrong), or `consume`'s error.
pub fn read_streamed<T>(
    path: &Path,
    progress: &mut dyn FnMut(u64, u64),
    consume: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> std::io::Result<Streamed<T>> {
    let (header, meta, through) = open_through(path, progress)?;
    let mut through = std::io::BufReader::with_capacity(STREAM_BUFFER, through);
    let consumed = consume(&mut through);
    // What `consume` left (all of it, if it failed early) is read for the hash.
    std::io::copy(&mut through, &mut std::io::sink())?;
    if !through.into_inner().matches(&header) {
        return Err(invalid(path, "content does not match its hash"));
    }
    let meta = from_cbor(&meta).map_err(|e| invalid(path, format!("meta: {e}")))?;
    Ok(Streamed {
        meta,
        value: consumed?,
        hash: header.hash,
    })
}

/// What [`read_streamed`] read: the meta, what its consumer made of the data, and the hash the
/// file's header records (which the file matched), to know the file again.
#[derive(Debug)]
pub struct Streamed<T> {
    /// The file's meta.
    pub meta: SnapshotMeta,
    /// The consumer's result.
    pub value: T,
    /// The hash of meta and data.
    pub hash: [u8; 32],
}

/// The start of the snapshot file of `meta` and `data` (its header and meta): the whole file is
/// this followed by `data`.
///
/// # Errors
/// `meta` does not encode, or is too large.
pub fn head(meta: &SnapshotMeta, data: &[u8]) -> std::io::Result<Vec<u8>> {
    head_read(meta, &mut &data[..])
}

/// As [`head`], with the data read from `data` (to its end) for its length and hash rather than
/// held: a backup spooled to a file. Blocking.
///
/// # Errors
/// `meta` does not encode or is too large, or `data` cannot be read.
pub fn head_read(meta: &SnapshotMeta, data: &mut dyn Read) -> std::io::Result<Vec<u8>> {
    let meta = to_cbor(meta)?;
    let meta_len = u32::try_from(meta.len())
        .ok()
        .filter(|n| *n <= MAX_META_LEN)
        .ok_or_else(|| std::io::Error::other(format!("meta of {} bytes", meta.len())))?;
    let mut hash = Sha256::new();
    hash.update(&meta);
    let data_len = std::io::copy(data, &mut hash)?;
    let header = Header {
        meta_len,
        data_len,
        hash: hash.finalize().into(),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + meta.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&meta);
    Ok(out)
}

impl SnapshotFile {
    /// The snapshot file of data directory `dir`, which may hold none yet. Blocking: a stored
    /// file is read through (in pieces) and its hash checked once here, so that comparisons with it later can
    /// trust the position it records. A damaged file counts as none (with a warning) and is
    /// replaced by the next store. Temporary files left by stores a crash interrupted are
    /// removed.
    ///
    /// # Errors
    /// The directory cannot be read.
    pub fn open(dir: &Path) -> std::io::Result<SnapshotFile> {
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.starts_with(TEMPORARY_PREFIX))
            {
                std::fs::remove_file(dir.join(name))?;
            }
        }
        let file = SnapshotFile {
            path: dir.join(SNAPSHOT_FILE),
            dir: dir.to_owned(),
            stored: Mutex::new(None),
            temporaries: AtomicU64::new(0),
        };
        // A damaged file leaves `stored` at none (see `read`). Checked in pieces: its data is
        // not kept.
        match read_streamed(&file.path, &mut |_, _| {}, |_| Ok(())) {
            Ok(read) => *file.stored_slot() = Some(read.meta.last_log_id),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the damaged snapshot; the next one replaces it");
            }
        }
        Ok(file)
    }

    /// The position of the stored snapshot (`None`: none stored, or the one stored was damaged
    /// when the node started).
    pub fn stored(&self) -> Option<Option<LogId>> {
        *self.stored_slot()
    }

    fn stored_slot(&self) -> std::sync::MutexGuard<'_, Option<Option<LogId>>> {
        self.stored.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored snapshot, its hash checked, read whole: for tests ([`SnapshotFile::open_data`]
    /// is what nodes use). Blocking.
    ///
    /// # Errors
    /// The file cannot be read, or is damaged (kind `InvalidData`; it then counts as none, and
    /// the next store replaces it whatever its position).
    #[cfg(test)]
    pub fn read(&self) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let read = self.read_checked();
        if read
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::InvalidData)
        {
            *self.stored_slot() = None;
        }
        read
    }

    #[cfg(test)]
    fn read_checked(&self) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        match read_from(&self.path) {
            Ok(read) => Ok(Some(read)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The directory the snapshot file is in (where snapshots are spooled and received).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored snapshot's meta and its file, open and positioned where its data starts
    /// (returned too), without reading the data into memory. With `check`, the data is read
    /// through once first and its hash checked (a damaged file then counts as none, as one
    /// found damaged at the node's start does). The handle keeps the file that was opened, should a newer
    /// snapshot be stored meanwhile. Blocking.
    ///
    /// # Errors
    /// The file cannot be read, or is damaged (kind `InvalidData`).
    pub fn open_data(&self, check: bool) -> std::io::Result<Option<(SnapshotMeta, File, u64)>> {
        let opened = (|| {
            let (mut file, header) = open_with_header(&self.path)?;
            let mut meta = vec![0u8; header.meta_len as usize];
            file.read_exact(&mut meta)?;
            let base = HEADER_LEN as u64 + u64::from(header.meta_len);
            if check {
                let mut hash = Sha256::new();
                hash.update(&meta);
                let mut data = (&file).take(header.data_len);
                let read = std::io::copy(&mut data, &mut hash)?;
                if read != header.data_len || <[u8; 32]>::from(hash.finalize()) != header.hash {
                    return Err(invalid(&self.path, "content does not match its hash"));
                }
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(base))?;
            }
            let meta = from_cbor(&meta).map_err(|e| invalid(&self.path, format!("meta: {e}")))?;
            Ok((meta, file, base))
        })();
        match opened {
            Ok(opened) => Ok(Some(opened)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    *self.stored_slot() = None;
                }
                Err(e)
            }
        }
    }

    /// Stores the data of `data` from `base` to its end as the snapshot `meta` describes,
    /// unless the stored one is newer (see [`SnapshotFile::store_encoded`]): read once, in
    /// pieces, hashed as it is copied, never held whole; the header, which starts with the
    /// hash, is written last, over a blank one. Blocking.
    ///
    /// # Errors
    /// `data` cannot be read, or the file cannot be written; the stored snapshot is then
    /// unchanged.
    pub fn store_from(
        &self,
        meta: &SnapshotMeta,
        data: &mut File,
        base: u64,
    ) -> std::io::Result<bool> {
        use std::io::{Seek, SeekFrom};
        if self.stored().is_some_and(|at| at > meta.last_log_id) {
            return Ok(false);
        }
        let encoded = to_cbor(meta)?;
        let meta_len = u32::try_from(encoded.len())
            .ok()
            .filter(|n| *n <= MAX_META_LEN)
            .ok_or_else(|| std::io::Error::other(format!("meta of {} bytes", encoded.len())))?;
        let data_len = data.metadata()?.len().saturating_sub(base);
        self.replace_unless_newer(meta.last_log_id, |out| {
            data.seek(SeekFrom::Start(base))?;
            out.write_all(&[0u8; HEADER_LEN])?;
            out.write_all(&encoded)?;
            let mut hash = Sha256::new();
            hash.update(&encoded);
            let mut piece = vec![0u8; STREAM_BUFFER];
            let (mut copied, mut unsynced) = (0u64, 0usize);
            loop {
                let n = data.read(&mut piece)?;
                if n == 0 {
                    break;
                }
                out.write_all(&piece[..n])?;
                hash.update(&piece[..n]);
                copied += n as u64;
                unsynced += n;
                if unsynced >= SYNC_EVERY {
                    out.sync_data()?;
                    unsynced = 0;
                }
            }
            if copied != data_len {
                return Err(std::io::Error::other(format!(
                    "the snapshot's data changed while it was stored ({data_len} bytes when it \
                     started, {copied} copied)"
                )));
            }
            let header = Header {
                meta_len,
                data_len,
                hash: hash.finalize().into(),
            };
            out.seek(SeekFrom::Start(0))?;
            out.write_all(&header.encode())
        })
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
    /// Returns whether it was stored. Blocking (see [`SnapshotFile::replace_unless_newer`]).
    ///
    /// # Errors
    /// `meta` does not decode, or the file cannot be written; the stored snapshot is then
    /// unchanged.
    pub(super) fn store_encoded(&self, meta: &[u8], data: &[u8]) -> std::io::Result<bool> {
        let incoming: SnapshotMeta =
            from_cbor(meta).map_err(|e| invalid(&self.path, format!("meta: {e}")))?;
        // Before the data is hashed: a dump a newer install overtook is not stored.
        if self.stored().is_some_and(|at| at > incoming.last_log_id) {
            return Ok(false);
        }
        let meta_len = u32::try_from(meta.len())
            .ok()
            .filter(|n| *n <= MAX_META_LEN)
            .ok_or_else(|| invalid(&self.path, format!("meta of {} bytes", meta.len())))?;
        let header = Header {
            meta_len,
            data_len: data.len() as u64,
            hash: content_hash(meta, data),
        };
        self.replace_unless_newer(incoming.last_log_id, |file| {
            file.write_all(&header.encode())?;
            file.write_all(meta)?;
            for piece in data.chunks(SYNC_EVERY) {
                file.write_all(piece)?;
                file.sync_data()?;
            }
            Ok(())
        })
    }

    /// Stores a copy of the snapshot file `from` (a backup), read and written in pieces so that
    /// its data is never held whole, telling `progress` the bytes of data copied so far and
    /// their total. Only the file whose header records `expected` (the hash of the file that was
    /// checked, [`Streamed::hash`]) is copied, and its content is hashed again as it is copied:
    /// a file replaced, changed or damaged since it was checked is not stored. As
    /// [`SnapshotFile::store_encoded`], not over a newer snapshot. Blocking.
    ///
    /// # Errors
    /// [`CopyError::Source`]: `from` is not the file checked or not whole (kind `InvalidData`),
    /// or cannot be read; [`CopyError::Copy`]: the copy cannot be written. The stored snapshot
    /// is then unchanged.
    pub fn store_copy(
        &self,
        from: &Path,
        expected: [u8; 32],
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<bool, CopyError> {
        let short = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                invalid(from, "cut short while it was copied")
            } else {
                e
            }
        };
        let (header, meta, mut through) =
            open_through(from, progress).map_err(|e| CopyError::Source(short(e)))?;
        if header.hash != expected {
            return Err(CopyError::Source(invalid(
                from,
                "changed since it was checked",
            )));
        }
        let incoming: SnapshotMeta =
            from_cbor(&meta).map_err(|e| CopyError::Source(invalid(from, format!("meta: {e}"))))?;
        // An error of `from` met while copying, told apart from the copy's own.
        let mut source_error = None;
        let copied = self.replace_unless_newer(incoming.last_log_id, |out| {
            out.write_all(&header.encode())?;
            out.write_all(&meta)?;
            let mut piece = vec![0u8; STREAM_BUFFER];
            let mut unsynced = 0usize;
            let mut failed = |e: std::io::Error| {
                let said = std::io::Error::new(e.kind(), e.to_string());
                source_error = Some(e);
                said
            };
            loop {
                let n = through.read(&mut piece).map_err(|e| failed(short(e)))?;
                if n == 0 {
                    break;
                }
                out.write_all(&piece[..n])?;
                unsynced += n;
                if unsynced >= SYNC_EVERY {
                    out.sync_data()?;
                    unsynced = 0;
                }
            }
            if !through.matches(&header) {
                return Err(failed(invalid(from, "content does not match its hash")));
            }
            Ok(())
        });
        match (copied, source_error) {
            (Err(_), Some(e)) => Err(CopyError::Source(e)),
            (copied, _) => copied.map_err(CopyError::Copy),
        }
    }

    /// Writes a new snapshot file with `write` under a temporary name, syncs it, and renames it
    /// over the stored one unless the stored one is newer than `incoming` (then, or on an
    /// error, the temporary file is removed). Returns whether it was stored.
    ///
    /// The file is written without the lock: a slow build (in a thread of low priority) never
    /// holds up an install. Only the comparison and the rename are made under the lock, as one
    /// step.
    fn replace_unless_newer(
        &self,
        incoming: Option<LogId>,
        write: impl FnOnce(&mut File) -> std::io::Result<()>,
    ) -> std::io::Result<bool> {
        let newer_stored = |stored: &Option<Option<LogId>>| stored.is_some_and(|at| at > incoming);
        if newer_stored(&self.stored()) {
            return Ok(false);
        }
        let n = self.temporaries.fetch_add(1, Ordering::Relaxed);
        let temporary = self.dir.join(format!("{TEMPORARY_PREFIX}{n}"));
        let written = (|| {
            // Private from its creation, like every file of the data directory (`files`); the
            // rename keeps the mode.
            let mut file = super::files::private_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temporary)?;
            write(&mut file)?;
            file.sync_all()
        })();
        let mut stored = self.stored_slot();
        let replaced = written.and_then(|()| {
            if newer_stored(&stored) {
                return Ok(false);
            }
            std::fs::rename(&temporary, &self.path)?;
            File::open(&self.dir)?.sync_all()?;
            *stored = Some(incoming);
            Ok(true)
        });
        drop(stored);
        if !matches!(replaced, Ok(true)) {
            let _ = std::fs::remove_file(&temporary);
        }
        replaced
    }
}

#[cfg(test)]
mod tests {
    use std::io::Seek;

    use openraft::{CommittedLeaderId, StoredMembership};

    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 1), index)),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("s{index}"),
        }
    }

    fn at(index: u64) -> Option<Option<LogId>> {
        Some(meta(index).last_log_id)
    }

    #[test]
    fn a_stored_snapshot_reads_back_and_an_older_one_does_not_replace_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        assert!(file.read().expect("read").is_none());
        assert_eq!(file.stored(), None);
        assert!(file.store(&meta(100), b"new").expect("store"));
        // A dump that finished after a newer snapshot was installed does not replace it.
        assert!(!file.store(&meta(50), b"old").expect("store"));
        let (read, data) = file.read().expect("read").expect("stored");
        assert_eq!(read.snapshot_id, "s100");
        assert_eq!(data, b"new");
        assert!(file.store(&meta(150), b"newer").expect("store"));
        assert_eq!(file.stored(), at(150));
        // Reopened (a restarted node), the same; no temporary file is left behind.
        let file = SnapshotFile::open(dir.path()).expect("reopen");
        assert_eq!(file.stored(), at(150));
        assert_eq!(file.read().expect("read").expect("stored").1, b"newer");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [SNAPSHOT_FILE]);
    }

    #[test]
    fn a_damaged_or_cut_file_is_an_error_and_is_replaced_by_the_next_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        let data = vec![7u8; 3 * 1024];
        assert!(file.store(&meta(10), &data).expect("store"));
        let path = dir.path().join(SNAPSHOT_FILE);
        let whole = std::fs::read(&path).expect("file");
        let damaged = |bytes: &[u8], expected: &str| {
            std::fs::write(&path, bytes).expect("write");
            let e = file.read().expect_err(expected);
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains(expected), "{e}");
        };
        let mut flipped = whole.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        damaged(&flipped, "does not match its hash");
        assert_eq!(file.stored(), None, "a damaged file counts as none");
        damaged(&whole[..whole.len() - 10], "cut short");
        damaged(&[0u8; 200], "not an xchg snapshot");
        std::fs::write(&path, &whole[..10]).expect("write");
        assert!(
            file.read()
                .expect_err("short")
                .to_string()
                .contains("shorter than a header")
        );

        // A node started over the damaged file counts it as none, and the next store replaces
        // it even with an older position.
        std::fs::write(&path, &flipped).expect("write");
        let file = SnapshotFile::open(dir.path()).expect("open over a damaged file");
        assert_eq!(file.stored(), None);
        assert!(file.store(&meta(5), b"fresh").expect("store"));
        assert_eq!(file.read().expect("read").expect("stored").1, b"fresh");
    }

    /// A file read in pieces is checked as when read whole: its data reaches the reader and the
    /// progress in full, and a damaged one is refused for its hash even when its reader took
    /// what it was given (or gave up early).
    #[test]
    fn a_file_read_in_pieces_is_checked_against_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        let data: Vec<u8> = (0..3 * STREAM_BUFFER + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        assert!(file.store(&meta(10), &data).expect("store"));
        let path = dir.path().join(SNAPSHOT_FILE);
        let mut seen = Vec::new();
        let read = read_streamed(&path, &mut |done, total| seen.push((done, total)), |r| {
            let mut copy = Vec::new();
            r.read_to_end(&mut copy).map(|_| copy)
        })
        .expect("read");
        assert_eq!(read.meta.snapshot_id, "s10");
        assert_eq!(read.value, data);
        assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
        assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

        let mut flipped = std::fs::read(&path).expect("file");
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let damaged = dir.path().join("damaged");
        std::fs::write(&damaged, &flipped).expect("write");
        for give_up in [false, true] {
            let e = read_streamed(&damaged, &mut |_, _| {}, |r| {
                if give_up {
                    return Err(std::io::Error::other("undecodable"));
                }
                std::io::copy(r, &mut std::io::sink())
            })
            .expect_err("damaged");
            assert!(e.to_string().contains("does not match its hash"), "{e}");
        }
    }

    /// A copy stores the file byte for byte, not over a newer snapshot, and never a damaged
    /// file or another file than the one checked (nor any temporary file of them).
    #[test]
    fn a_stored_copy_is_the_file_itself_and_a_damaged_one_is_not_stored() {
        let source = tempfile::tempdir().expect("tempdir");
        let from = SnapshotFile::open(source.path()).expect("open");
        let data = vec![5u8; 2 * STREAM_BUFFER + 3];
        assert!(from.store(&meta(20), &data).expect("store"));
        let from_path = source.path().join(SNAPSHOT_FILE);

        let checked = read_streamed(&from_path, &mut |_, _| {}, |_| Ok(()))
            .expect("check")
            .hash;
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        let mut last = (0, 0);
        assert!(
            file.store_copy(&from_path, checked, &mut |d, t| last = (d, t))
                .expect("copy")
        );
        assert_eq!(last, (data.len() as u64, data.len() as u64));
        assert_eq!(file.stored(), at(20));
        assert_eq!(
            std::fs::read(dir.path().join(SNAPSHOT_FILE)).expect("copied"),
            std::fs::read(&from_path).expect("source")
        );

        // Not over a newer one.
        let newer = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(newer.path()).expect("open");
        assert!(file.store(&meta(30), b"newer").expect("store"));
        assert!(
            !file
                .store_copy(&from_path, checked, &mut |_, _| {})
                .expect("copy")
        );
        assert_eq!(file.read().expect("read").expect("stored").1, b"newer");

        // A damaged source is refused; the directory holds nothing of it.
        let mut flipped = std::fs::read(&from_path).expect("file");
        let last_byte = flipped.len() - 1;
        flipped[last_byte] ^= 1;
        let damaged = source.path().join("damaged");
        std::fs::write(&damaged, &flipped).expect("write");
        let empty = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(empty.path()).expect("open");
        let source_error = |e: CopyError| match e {
            CopyError::Source(e) => e,
            CopyError::Copy(e) => panic!("an error of the copy: {e}"),
        };
        let e = source_error(
            file.store_copy(&damaged, checked, &mut |_, _| {})
                .expect_err("damaged"),
        );
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        assert!(e.to_string().contains("does not match its hash"), "{e}");
        // Another whole file than the one checked (replaced between check and copy).
        let other = tempfile::tempdir().expect("tempdir");
        let other_file = SnapshotFile::open(other.path()).expect("open");
        assert!(other_file.store(&meta(40), b"another").expect("store"));
        let e = source_error(
            file.store_copy(&other.path().join(SNAPSHOT_FILE), checked, &mut |_, _| {})
                .expect_err("another file"),
        );
        assert!(
            e.to_string().contains("changed since it was checked"),
            "{e}"
        );
        // A file gone: its error names it.
        let e = source_error(
            file.store_copy(&source.path().join("gone"), checked, &mut |_, _| {})
                .expect_err("gone"),
        );
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        assert_eq!(file.stored(), None);
        assert_eq!(std::fs::read_dir(empty.path()).expect("dir").count(), 0);
    }

    /// A store never writes into the stored file: it is replaced whole by a rename, so a crash
    /// mid-store leaves the previous snapshot as it was (and a partial temporary file, which
    /// the next start removes).
    #[test]
    fn a_store_replaces_the_file_whole_and_a_crash_mid_store_leaves_the_previous_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = SnapshotFile::open(dir.path()).expect("open");
        assert!(file.store(&meta(10), b"kept").expect("store"));
        let mut before = File::open(dir.path().join(SNAPSHOT_FILE)).expect("open stored");
        assert!(file.store(&meta(20), b"replacing").expect("store"));
        // The handle opened before the store still reads the old file, byte for byte.
        let mut old = Vec::new();
        before.rewind().expect("rewind");
        before.read_to_end(&mut old).expect("read old");
        assert!(
            old.ends_with(b"kept"),
            "the stored file was written in place"
        );

        let temporary = dir.path().join(format!("{TEMPORARY_PREFIX}7"));
        std::fs::write(&temporary, b"xchgsnap partial").expect("write");
        let file = SnapshotFile::open(dir.path()).expect("reopen");
        assert!(!temporary.exists());
        assert_eq!(file.read().expect("read").expect("stored").1, b"replacing");
    }
}
