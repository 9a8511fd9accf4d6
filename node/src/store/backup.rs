//! Backups of a node: the zone's replicated state and its log position in one file, taken
//! online (`GET /v1/zone/backup`) or from a stopped node's data directory, and the restore of a
//! data directory from one (`xchg backup`, `xchg restore`).
//!
//! A backup is a snapshot in the layout of the snapshot file (`snapshot_file`): header, meta
//! (the log position and the zone's membership) and payload (every replicated table), read in
//! one read transaction of the catalog, so a consistent point of the zone's history, with a
//! hash over the whole. Restoring puts it in an empty data directory as the node's stored
//! snapshot and nothing else: the node, started, loads its catalog from it (as after a crash
//! between storing a leader's snapshot and applying it), and its zone's leader sends what came
//! after. Its Raft log is empty and it has no vote: it may have voted in the zone's current
//! term before it was lost, so until a leader has reached it, it refuses votes in the terms the
//! other members report (`raft::bootstrap`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::raft_types::{LogId, MemberNode, NodeId, SnapshotMeta, StoredMembership};
use super::snapshot_file::{self, SNAPSHOT_FILE, SnapshotFile};
use super::{CATALOG_FILE, CATALOG_SCHEMA, LOG_FILE, files, snapshot};

/// One backup, in memory (tests compare it with the spooled one).
#[cfg(test)]
pub struct Backup {
    /// Its position and membership.
    pub meta: SnapshotMeta,
    /// The encoded payload.
    pub data: Vec<u8>,
    /// Rows of the replicated tables it holds.
    pub rows: u64,
}

#[cfg(test)]
impl Backup {
    /// The file's start (header and meta): the backup file is this followed by [`Backup::data`].
    ///
    /// # Errors
    /// The meta does not encode.
    pub fn head(&self) -> std::io::Result<Vec<u8>> {
        snapshot_file::head(&self.meta, &self.data)
    }

    /// The log position it holds the zone at.
    pub fn position(&self) -> Option<LogId> {
        self.meta.last_log_id
    }

    /// Writes it as the backup file `out` (head, then data), as [`write_file`] does.
    ///
    /// # Panics
    /// If the file cannot be written (tests only).
    pub fn write_to(&self, out: &Path) {
        write_file(out, &[&self.head().expect("head"), &self.data]).expect("write");
    }
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data directory is in use.
    #[error(
        "the data directory is in use; stop the node first (or back it up online: xchg backup \
         --node URL)"
    )]
    Locked(#[from] files::LockError),
    /// The directory holds no node database.
    #[error("{} holds no node database ({CATALOG_FILE}): give a node's data directory", .0.display())]
    NoCatalog(PathBuf),
    /// The catalog was written by another version of xchg.
    #[error(
        "{} has catalog schema version {found}, this xchg writes version {expected}: back it \
         up with the xchg that wrote it, or start the node once with this one (which upgrades \
         it) and back it up then",
        path.display()
    )]
    Schema {
        /// The catalog file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This build's version.
        expected: usize,
    },
    /// The backup is of another zone than the node it is restored for.
    #[error(transparent)]
    Foreign(#[from] ForeignBackup),
    /// The target directory is not empty.
    #[error(
        "{} is not empty ({first} and maybe more): a backup is restored into an empty data \
         directory only; move the old one aside (it may be what you need to keep)",
        dir.display()
    )]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// An entry found in it.
        first: String,
    },
    /// The backup file is damaged, cut short, or not a backup.
    #[error("{}: not a usable backup: {source}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: std::io::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The file `xchg restore` leaves in a data directory: the node started on it stays out of
/// elections until it has caught up (`raft::bootstrap::guard_restored`), then deletes it.
pub const RESTORED_MARKER: &str = "restored-from-backup";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads the catalog at `catalog` in one read transaction and encodes it as a backup in
/// memory. Blocking.
///
/// # Errors
/// The catalog cannot be read.
#[cfg(test)]
pub fn encode(catalog: &Path) -> std::io::Result<Backup> {
    let encoded = snapshot::encode_file(catalog)?;
    Ok(Backup {
        meta: backup_meta(
            encoded.last_applied,
            encoded.membership,
            encoded.data.len() as u64,
        ),
        data: encoded.data,
        rows: encoded.rows,
    })
}

/// The meta of a backup at `position` whose payload is `len` bytes.
fn backup_meta(position: Option<LogId>, membership: StoredMembership, len: u64) -> SnapshotMeta {
    let snapshot_id = match position {
        Some(id) => format!("backup-{}-{}-{len}", id.leader_id.term, id.index),
        None => format!("backup-empty-{len}"),
    };
    SnapshotMeta {
        last_log_id: position,
        last_membership: membership,
        snapshot_id,
    }
}

/// One backup, its payload in an unnamed temporary file rather than in memory: what a running
/// node sends (`GET /v1/zone/backup`). The file has no name (it goes when it is closed, or
/// with the process) and is private to the node's user.
pub struct Spooled {
    /// Its position and membership.
    pub meta: SnapshotMeta,
    /// The file's start (header and meta), in memory: the backup file is this followed by
    /// `data`.
    pub head: Vec<u8>,
    /// The encoded payload, positioned at its start.
    pub data: std::fs::File,
    /// Its length in bytes.
    pub data_len: u64,
    /// Rows of the replicated tables it holds.
    pub rows: u64,
}

/// Reads the catalog at `catalog` in one read transaction and encodes it as a backup, the
/// payload written to an unnamed temporary file in `spool_dir` as it is encoded: memory does not
/// grow with the catalog. Blocking; safe while the node runs (it reads on a connection of its
/// own, as a snapshot build does).
///
/// # Errors
/// The catalog cannot be read, or the file cannot be written (a full disk).
pub fn spool(catalog: &Path, spool_dir: &Path) -> std::io::Result<Spooled> {
    use std::io::{Seek as _, SeekFrom};
    let (dumped, mut data, data_len) = snapshot::encode_file_spooled(catalog, spool_dir)?;
    let meta = backup_meta(dumped.last_applied, dumped.membership, data_len);
    data.seek(SeekFrom::Start(0))?;
    let head = snapshot_file::head_read(&meta, &mut data)?;
    data.seek(SeekFrom::Start(0))?;
    Ok(Spooled {
        meta,
        head,
        data,
        data_len,
        rows: dumped.rows,
    })
}

/// A backup of the stopped node whose data directory is `dir`, spooled in `spool_dir` (the
/// directory the backup file goes to). Blocking.
///
/// # Errors
/// A running node holds the directory, it holds no catalog or one of another schema version,
/// the catalog cannot be read, or the spool cannot be written.
pub fn offline(dir: &Path, spool_dir: &Path) -> Result<Spooled, BackupError> {
    let catalog = dir.join(CATALOG_FILE);
    if !catalog.is_file() {
        return Err(BackupError::NoCatalog(dir.to_owned()));
    }
    let _lock = files::DataDirLock::acquire(dir)?;
    let version: i64 = rusqlite::Connection::open_with_flags(
        &catalog,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|db| db.query_row("PRAGMA user_version", [], |r| r.get(0)))
    .map_err(|e| BackupError::Io {
        path: catalog.clone(),
        source: std::io::Error::other(e),
    })?;
    if usize::try_from(version).ok() != Some(CATALOG_SCHEMA.len()) {
        return Err(BackupError::Schema {
            path: catalog,
            found: version,
            expected: CATALOG_SCHEMA.len(),
        });
    }
    spool(&catalog, spool_dir).map_err(|source| BackupError::Io {
        path: catalog,
        source: std::io::Error::new(
            source.kind(),
            format!(
                "{source} (reading the catalog, spooled in {})",
                spool_dir.display()
            ),
        ),
    })
}

/// Writes `pieces` as the new file `out`: first to `out` + `.partial` (created new, mode
/// 0600: a backup holds every party's contact and every token's hash), synced, then renamed,
/// so `out` is a whole file or none. Refuses to replace an existing `out`. Blocking.
///
/// # Errors
/// `out` exists, or the file cannot be written.
pub fn write_file(out: &Path, pieces: &[&[u8]]) -> Result<(), BackupError> {
    write_file_with(out, &mut |file| {
        for piece in pieces {
            file.write_all(piece)?;
        }
        Ok(())
    })
}

/// Writes `spooled` as the new file `out`, as [`write_file`] does, copying its payload from
/// the spool in pieces; `progress` is told the bytes written so far and the total. Blocking.
///
/// # Errors
/// `out` exists, or a file cannot be read or written.
pub fn write_spooled(
    out: &Path,
    spooled: &mut Spooled,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BackupError> {
    use std::io::Read as _;
    let total = spooled.head.len() as u64 + spooled.data_len;
    write_file_with(out, &mut |file| {
        file.write_all(&spooled.head)?;
        let mut done = spooled.head.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = spooled.data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n])?;
            done += n as u64;
            progress(done, total);
        }
        if done != total {
            return Err(std::io::Error::other(format!(
                "the spooled backup holds {done} bytes, {total} were written to it"
            )));
        }
        Ok(())
    })
}

/// Creates `out` + `.partial`, has `fill` write it, syncs it and renames it to `out`; removes
/// the partial file if anything fails.
fn write_file_with(
    out: &Path,
    fill: &mut dyn FnMut(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<(), BackupError> {
    if out.exists() {
        return Err(BackupError::Io {
            path: out.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists already; choose another name",
            ),
        });
    }
    let partial = partial_path(out);
    let mut file = create_partial(&partial)?;
    let written = fill(&mut file)
        .and_then(|()| file.sync_all())
        .map_err(io(&partial))
        .and_then(|()| publish(&partial, out));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}

/// Creates `partial` (new, mode 0600), saying what to do about one an interrupted backup left.
///
/// # Errors
/// It exists, or cannot be created.
pub fn create_partial(partial: &Path) -> Result<std::fs::File, BackupError> {
    files::private_options()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Io {
                    path: partial.to_owned(),
                    source: std::io::Error::new(
                        source.kind(),
                        "exists: an interrupted backup left it (a partial copy, mode 0600); \
                         delete it and run the backup again",
                    ),
                }
            } else {
                io(partial)(source)
            }
        })
}

/// Gives the whole, synced `partial` its name `out` without ever replacing a file of that name
/// (a hard link fails if `out` exists), then removes `partial` and syncs the directory.
///
/// # Errors
/// `out` exists, or a file system call fails.
pub fn publish(partial: &Path, out: &Path) -> Result<(), BackupError> {
    std::fs::hard_link(partial, out).map_err(io(out))?;
    std::fs::remove_file(partial).map_err(io(partial))?;
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    std::fs::File::open(parent.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(io(out))
}

/// Where a backup is written before it is whole.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_owned();
    name.push(".partial");
    out.with_file_name(name)
}

/// What [`check`] found in a backup file.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Its position and membership.
    pub meta: SnapshotMeta,
    /// Rows of the replicated tables it holds.
    pub rows: u64,
    /// The hash its header records, which it matched: the file a restore then copies must be
    /// this one.
    pub hash: [u8; 32],
}

impl Checked {
    /// The log position it was taken at (`None`: a zone that never applied anything).
    pub fn position(&self) -> Option<LogId> {
        self.meta.last_log_id
    }
}

/// Checks the backup file `from`: whole, its hash right, its payload readable by this xchg.
/// The file is read in pieces and its rows decoded one at a time, so the check needs little
/// memory whatever the file's size; `progress` is told the bytes read so far and their total.
/// Blocking.
///
/// # Errors
/// [`BackupError::Unusable`] saying what is wrong; [`BackupError::Io`] if it cannot be read.
pub fn check(from: &Path, progress: &mut dyn FnMut(u64, u64)) -> Result<Checked, BackupError> {
    let unusable = |source| BackupError::Unusable {
        path: from.to_owned(),
        source,
    };
    let read = snapshot_file::read_streamed(from, progress, |data| {
        snapshot::check_streamed(data)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            unusable(e)
        } else {
            io(from)(e)
        }
    })?;
    let (meta, payload) = (read.meta, read.value);
    if payload.last_applied != meta.last_log_id || payload.membership != meta.last_membership {
        return Err(unusable(std::io::Error::other(
            "its header and its payload name different log positions or memberships",
        )));
    }
    Ok(Checked {
        meta,
        rows: payload.rows,
        hash: read.hash,
    })
}

/// Refuses a directory that holds anything but a lock file, and a path that is no directory.
fn refuse_unless_empty(dir: &Path) -> Result<(), BackupError> {
    let not_a_directory = || {
        io(dir)(std::io::Error::other(
            "not a directory (a file, or a link to nothing): name an empty or missing directory",
        ))
    };
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(not_a_directory()),
        // Missing through a link that leads nowhere, not missing itself.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::fs::symlink_metadata(dir).is_ok() =>
        {
            return Err(not_a_directory());
        }
        _ => {}
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let name = entry.map_err(io(dir))?.file_name();
        if name != files::LOCK_FILE {
            return Err(BackupError::NotEmpty {
                dir: dir.to_owned(),
                first: name.to_string_lossy().into_owned(),
            });
        }
    }
    Ok(())
}

/// Loads every row of the backup at `from` (of `meta`) into a scratch catalog of this build's
/// schema, a private temporary SQLite file (in `SQLITE_TMPDIR` or `TMPDIR`, else `/var/tmp` or
/// `/tmp`) that is gone when the check ends, crash or not: a backup whose rows this node's
/// catalog does not take (a column its schema lacks, a value a constraint refuses) is refused
/// by `xchg restore`, not by the node at its first start.
///
/// # Errors
/// [`BackupError::Unusable`] naming SQLite's refusal; [`BackupError::Io`] if the file cannot
/// be read or the scratch catalog made.
fn check_loads(
    from: &Path,
    meta: &SnapshotMeta,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), BackupError> {
    let scratch = || -> rusqlite::Result<rusqlite::Connection> {
        let db = rusqlite::Connection::open("")?;
        // Foreign keys as the node's writer has them (not left to the build's default).
        db.execute_batch(
            "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA foreign_keys = ON;",
        )?;
        crate::sqlite::migrate(&db, CATALOG_SCHEMA).map_err(|e| match e {
            crate::sqlite::MigrateError::Sqlite(e) => e,
            other => crate::sqlite::undecodable(other.to_string()),
        })?;
        Ok(db)
    };
    let db = scratch()
        .map_err(|e| io(from)(std::io::Error::other(format!("a scratch catalog: {e}"))))?;
    snapshot_file::read_streamed(from, progress, |data| {
        crate::sqlite::in_transaction(&db, || snapshot::restore(&db, data, meta))
            .map(drop)
            .map_err(|e| {
                // The scratch file's own trouble (a full or unwritable temporary directory)
                // is not the backup's.
                if of_the_machine(&e) {
                    std::io::Error::other(format!(
                        "loading it into a scratch catalog in the temporary directory \
                         (SQLITE_TMPDIR, TMPDIR, /var/tmp or /tmp) failed: {e}"
                    ))
                } else {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("its rows do not load into this node's catalog: {e}"),
                    )
                }
            })
    })
    .map(drop)
    .map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidData {
            BackupError::Unusable {
                path: from.to_owned(),
                source: e,
            }
        } else {
            io(from)(e)
        }
    })
}

/// Whether SQLite's `e` is the machine's (disk, memory, files, locks) rather than the data's.
fn of_the_machine(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, OutOfMemory, PermissionDenied,
        ReadOnly, SystemIoFailure,
    };
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            CannotOpen
                | DatabaseBusy
                | DatabaseLocked
                | DiskFull
                | OutOfMemory
                | PermissionDenied
                | ReadOnly
                | SystemIoFailure
        )
    )
}

/// The passes of a restore over the backup file, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreStep {
    /// Reading it whole: its hash, and every row decoded.
    Checking,
    /// Reading it again, every row loaded into a scratch catalog of this build's schema.
    Loading,
    /// Copying it into the data directory as the node's snapshot (its hash checked again).
    Writing,
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The log position the node starts from.
    pub position: Option<LogId>,
    /// Rows of the replicated tables.
    pub rows: u64,
    /// The zone's voters in the backup, by Raft id.
    pub voters: Vec<u64>,
}

/// A backup of another zone than the node's: no member of its membership has the name and node
/// key of a member of the node's zone.
#[derive(Debug, thiserror::Error)]
#[error(
    "the backup is not of this node's zone: its members are {theirs}, and this node's zone has \
     {ours} (no member with the same name and node key)"
)]
pub struct ForeignBackup {
    /// The backup's members, as `name@raft address`.
    pub theirs: String,
    /// The node's zone's members.
    pub ours: String,
}

/// Checks that a backup with `membership` belongs to the zone whose members are `members`: at
/// least one of its members is one of them, by name and node key. Restoring another zone's
/// catalog and log position would have the node's leader extend a log it never wrote, mixing
/// two zones. A backup with no membership is of no zone (every zone's first log entry is its
/// membership: a catalog without one never applied it, a benchmark's say) and fits none: its
/// rows under this zone's log would be rows the zone never wrote.
///
/// # Errors
/// [`ForeignBackup`] naming both memberships.
pub fn check_zone(
    membership: &StoredMembership,
    members: &std::collections::BTreeMap<NodeId, MemberNode>,
) -> Result<(), ForeignBackup> {
    let theirs: Vec<(&NodeId, &MemberNode)> = membership.membership().nodes().collect();
    let shared = theirs.iter().any(|(id, node)| {
        members
            .get(id)
            .is_some_and(|ours| ours.public_key == node.public_key)
    });
    if shared {
        return Ok(());
    }
    let list = |nodes: &mut dyn Iterator<Item = &MemberNode>| {
        nodes
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let listed = list(&mut theirs.iter().map(|(_, n)| *n));
    Err(ForeignBackup {
        theirs: if listed.is_empty() {
            "none (its catalog never applied a zone's membership: a backup of no zone)".to_owned()
        } else {
            listed
        },
        ours: list(&mut members.values()),
    })
}

/// Restores the backup file `from` into the data directory `dir`, which must be empty or not
/// exist: it becomes the directory of a node that holds the backup as its stored snapshot.
/// Blocking.
///
/// With `zone` (the members of the node's zone, by Raft id), a backup of another zone is
/// refused before anything is written ([`check_zone`]).
///
/// # Errors
/// The backup is unusable or of another zone, `dir` is not empty or is locked by a running
/// node, or a file cannot be written; `dir` is then left without a snapshot or marker (empty
/// but for its lock file), and can be restored into again.
pub fn restore(
    from: &Path,
    dir: &Path,
    zone: Option<&std::collections::BTreeMap<NodeId, MemberNode>>,
    progress: &mut dyn FnMut(RestoreStep, u64, u64),
) -> Result<Restored, BackupError> {
    let backup = check(from, &mut |done, total| {
        progress(RestoreStep::Checking, done, total)
    })?;
    if let Some(members) = zone {
        check_zone(&backup.meta.last_membership, members)?;
    }
    // Refused before anything in it is touched (prepare_dir would tighten its modes).
    refuse_unless_empty(dir)?;
    check_loads(from, &backup.meta, &mut |done, total| {
        progress(RestoreStep::Loading, done, total)
    })?;
    files::prepare_dir(dir).map_err(io(dir))?;
    let _lock = files::DataDirLock::acquire(dir)?;
    refuse_unless_empty(dir)?;
    // The marker first: a node started on a directory with the snapshot and no marker would
    // vote as if it had never lost anything.
    let marker = dir.join(RESTORED_MARKER);
    let position = backup.position().map_or_else(
        || "none".to_owned(),
        |id| format!("{}-{}", id.leader_id.term, id.index),
    );
    files::private_options()
        .write(true)
        .create_new(true)
        .open(&marker)
        .and_then(|mut f| f.write_all(format!("restored at log position {position}\n").as_bytes()))
        .map_err(io(&marker))?;
    let file = SnapshotFile::open(dir).map_err(io(dir));
    let stored = file.and_then(|file| {
        file.store_copy(from, backup.hash, &mut |done, total| {
            progress(RestoreStep::Writing, done, total);
        })
        .map_err(|e| match e {
            snapshot_file::CopyError::Source(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                BackupError::Unusable {
                    path: from.to_owned(),
                    source: e,
                }
            }
            snapshot_file::CopyError::Source(e) => io(from)(e),
            snapshot_file::CopyError::Copy(e) => io(&dir.join(SNAPSHOT_FILE))(e),
        })
    });
    if let Err(e) = stored {
        // Nothing of the restore is left: the directory can be restored into again.
        let _ = std::fs::remove_file(&marker);
        return Err(e);
    }
    debug_assert!(!dir.join(LOG_FILE).exists());
    Ok(Restored {
        position: backup.position(),
        rows: backup.rows,
        voters: backup
            .meta
            .last_membership
            .membership()
            .voter_ids()
            .collect(),
    })
}
