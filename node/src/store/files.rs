//! The data directory as files: private from the moment they exist, and held by one process.
//!
//! A data directory holds the zone's whole catalog, its audit chain and the hashes of its API
//! tokens, so it is readable by the node's user only: the directory is created with mode 0700
//! and every file in it with mode 0600. SQLite creates a database's `-wal` and `-shm` files with
//! the mode of the database file, so the database files are created here, empty and 0600,
//! before SQLite first opens them; nothing is `chmod`-ed after it was written. A directory left
//! by an older xchg with looser modes is tightened once, at the next start, and the node logs
//! what it changed.
//!
//! [`DataDirLock`] is held by the running node for as long as its databases are open, so that an
//! offline tool (`xchg token create --data-dir`) can tell a stopped node from a running one.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "xchg.lock";

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one and every
/// file in it to 0700/0600; returns what had to be tightened.
///
/// # Errors
/// Any IO error.
pub fn prepare_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    if !dir.exists() {
        xchg_federation_config::create_private_dir(dir)?;
        return Ok(Vec::new());
    }
    tighten(dir)
}

/// Creates the empty file `path` with mode 0600 unless it exists (an existing file is left to
/// [`prepare_dir`]): a database file created so before SQLite opens it gets its journal files
/// with the same mode.
///
/// # Errors
/// Any IO error other than the file existing.
pub fn create_private_file(path: &Path) -> io::Result<()> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Open options that create a file with mode 0600 (on unix).
pub fn private_options() -> OpenOptions {
    #[allow(unused_mut)]
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

#[cfg(unix)]
fn tighten(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut tightened = Vec::new();
    tighten_one(dir, 0o700, &mut tightened)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // Symbolic links are not followed: their targets are not the node's files.
        if entry.file_type()?.is_file() {
            tighten_one(&entry.path(), 0o600, &mut tightened)?;
        }
    }
    Ok(tightened)
}

/// Sets `path` to `mode` if group or others have any access to it, and notes it.
#[cfg(unix)]
fn tighten_one(path: &Path, mode: u32, tightened: &mut Vec<PathBuf>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if xchg_federation_config::loose_mode(path).is_some() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        tightened.push(path.to_owned());
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten(_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(Vec::new())
}

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process (a running node) holds it.
    #[error(
        "another process holds {} (a node is running on this data directory)",
        path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
}

/// An exclusive advisory lock on a data directory (`flock` on [`LOCK_FILE`]), released when
/// dropped or when the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `dir`, or says that another process holds it.
    ///
    /// # Errors
    /// [`LockError::Held`] if another process (or another open of it in this one) holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let file = private_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        #[cfg(unix)]
        {
            use rustix::fs::{FlockOperation, flock};
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                    return Err(LockError::Held { path });
                }
                Err(e) => return Err(io(e.into())),
            }
        }
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn a_new_data_directory_is_created_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data/node-1");
        assert_eq!(prepare_dir(&dir).expect("prepare"), Vec::<PathBuf>::new());
        assert_eq!(mode(&dir), 0o700);
        create_private_file(&dir.join("catalog.db")).expect("create");
        assert_eq!(mode(&dir.join("catalog.db")), 0o600);
    }

    #[test]
    fn an_older_directory_with_loose_modes_is_tightened_once_and_says_what_changed() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for (file, m) in [("catalog.db", 0o644), ("raft-log.db", 0o600)] {
            std::fs::write(dir.join(file), b"").expect("file");
            std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(m))
                .expect("chmod");
        }
        let tightened = prepare_dir(&dir).expect("prepare");
        assert_eq!(tightened, [dir.clone(), dir.join("catalog.db")]);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("catalog.db")), 0o600);
        assert_eq!(prepare_dir(&dir).expect("again"), Vec::<PathBuf>::new());
    }

    #[test]
    fn a_held_data_directory_cannot_be_locked_again_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let held = DataDirLock::acquire(dir.path()).expect("first");
        assert!(matches!(
            DataDirLock::acquire(dir.path()),
            Err(LockError::Held { .. })
        ));
        drop(held);
        DataDirLock::acquire(dir.path()).expect("after release");
        assert_eq!(mode(&dir.path().join(LOCK_FILE)), 0o600);
    }
}
