//! A SQLite VFS that writes each transaction's appended WAL frames in a few large writes.
//!
//! SQLite appends a WAL frame as two `pwrite`s, its 24-byte header and then the page. A
//! state-machine commit of eight listings is about 47 frames, so every node made ~94 system
//! calls per commit for the catalog's WAL alone (about 2.4 µs each on the loaded bench
//! machine). This VFS wraps the default one (`unix`) and, for WAL files only, gathers writes
//! that append to the previous one in memory and hands them to the real file in writes of up
//! to 64 KiB (the most the unix VFS takes in one call). Everything else — the database file,
//! the shared-memory index, locks, reads — goes straight through.
//!
//! What is gathered, and when it goes to the file:
//!
//! - Only appends are gathered. A write anywhere else (SQLite rewriting a frame of the open
//!   transaction in place, rewriting frame checksums at commit, the header of a restarted WAL)
//!   first writes out what is gathered, then goes to the file itself, in order, and returns
//!   its own error.
//! - **The commit frame** ends every transaction: its header carries the database size,
//!   non-zero only for that frame (the WAL format's documented frame header). Writing the page
//!   that follows it writes out everything gathered and returns the real write's error, before
//!   SQLite goes on to publish the transaction in the shared index. Readers on other
//!   connections (with their own file handles) only read frames the index publishes.
//! - Before every read, sync, truncate and size query of the WAL, and on close.
//! - A failed write poisons the file: every later write or sync of it fails with that error, so
//!   SQLite never publishes a transaction that lost a frame.
//! - At the database file's shared-memory barrier (SQLite writes the index header around it)
//!   nothing should be left. If something is and cannot be written, the process aborts rather
//!   than let SQLite publish it (the index header is not complete yet, so recovery drops the
//!   transaction).
//!
//! A crash loses only bytes of a transaction that had not reached its commit frame, which SQLite
//! ignores on recovery anyway. Durability is unchanged: `synchronous=FULL` still syncs the WAL
//! (after writing out) before a commit returns. A file is used by one thread at a time: every
//! connection is opened with `SQLITE_OPEN_NOMUTEX`, the writers are used only under the
//! store's lock ([`super::writer`]) and sqlx's readers only from their worker thread, and a WAL
//! and its database file belong to one connection.
//!
//! This module is compiled only with the cargo feature `wal-batch-vfs`; it and the page cache
//! layer (`super::pcache`) are the only modules with unsafe code. Each block states why it is
//! sound.

#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name to open databases with (`SqliteConnectOptions::vfs`).
pub const NAME: &str = "xchg-wal-batch";
const C_NAME: &CStr = c"xchg-wal-batch";

/// Gathered bytes beyond this are written out and gathering starts again (a snapshot install
/// writes far more than any normal batch).
#[cfg(not(test))]
const MAX_GATHERED: usize = 8 << 20;
/// Small in tests, so that transactions cross it at every kind of frame.
#[cfg(test)]
const MAX_GATHERED: usize = 40 << 10;

/// The most one write to the real file may carry: the unix VFS takes at most 128 KiB - 1 bytes
/// per call (it never writes more than a page and a frame header itself).
const MAX_WRITE: usize = 64 << 10;

/// Size of a WAL frame header; bytes 4..8 hold the database size for a commit frame.
const FRAME_HEADER: usize = 24;

/// Registers the VFS with SQLite (once per process).
///
/// # Errors
/// A message if SQLite has no default VFS to wrap or refuses the registration.
pub fn register() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        // SAFETY: runs once; `sqlite3_vfs_find` initializes SQLite if needed and returns the
        // default VFS, which lives for the process. The copy is leaked, as SQLite keeps the
        // pointer for the process's life.
        unsafe {
            let base = ffi::sqlite3_vfs_find(ptr::null());
            if base.is_null() {
                return Err("SQLite has no default VFS".into());
            }
            let _ = BASE.set(base as usize);
            let mut vfs: ffi::sqlite3_vfs = *base;
            vfs.pNext = ptr::null_mut();
            vfs.zName = C_NAME.as_ptr();
            vfs.szOsFile =
                c_int::try_from(size_of::<Shim>()).unwrap_or(c_int::MAX) + (*base).szOsFile;
            vfs.xOpen = Some(open);
            let rc = ffi::sqlite3_vfs_register(Box::leak(Box::new(vfs)), 0);
            if rc == ffi::SQLITE_OK {
                Ok(())
            } else {
                Err(format!("SQLite refused the {NAME} VFS (code {rc})"))
            }
        }
    })
    .clone()
}

/// How many times a barrier found bytes not yet written (each a bug: see the module docs).
static LATE_AT_BARRIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The wrapped (default) VFS, as an address.
static BASE: OnceLock<usize> = OnceLock::new();

/// What SQLite allocates for each file (`szOsFile`): this header, then the real file (hence
/// the alignment, whatever the pointer size).
#[repr(C, align(8))]
struct Shim {
    /// Must come first: SQLite sees a `sqlite3_file` whose methods are [`METHODS`].
    file: ffi::sqlite3_file,
    /// The wrapped file, in the same allocation right after this struct.
    real: *mut ffi::sqlite3_file,
    /// For a WAL file: its connection's database file.
    db: *mut Shim,
    /// For a database file: its connection's WAL file, while open.
    wal: *mut Shim,
    /// For a WAL file: the gathered writes.
    gathered: *mut Gathered,
}

/// Appended bytes not yet written, starting at `start` in the file.
#[derive(Default)]
struct Gathered {
    start: i64,
    bytes: Vec<u8>,
    /// Where the last write (gathered or not) ended: a write starting there appends.
    next: Option<i64>,
    /// The last write was a commit frame's header: write everything out after its page.
    commit_pending: bool,
    /// The error of a failed write, returned by every later write and sync.
    poisoned: Option<c_int>,
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// The real file behind `file` and its methods.
///
/// # Safety
/// `file` was opened by [`open`] and not yet closed.
unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    // SAFETY: per the caller, `file` is a live `Shim` whose real file opened successfully, and
    // SQLite's own method tables are static.
    unsafe {
        let real = (*file.cast::<Shim>()).real;
        (real, &*(*real).pMethods)
    }
}

/// Calls the real file's method `$m` with `$args`, or returns `$missing` if it has none.
macro_rules! forward {
    ($file:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: the caller's `$file` is a live shim (SQLite only calls methods of files it
        // opened through `open`).
        let (real, methods) = unsafe { real($file) };
        match methods.$m {
            // SAFETY: forwarding SQLite's own arguments to the wrapped file's method.
            Some(f) => unsafe { f(real $(, $arg)*) },
            None => $missing,
        }
    }};
}

/// Writes out `$file`'s gathered bytes (returning the error if that fails), then forwards as
/// [`forward!`] does: for the calls that must see every byte written so far.
macro_rules! flush_then_forward {
    ($file:expr, $m:ident, $missing:expr $(, $arg:expr)*) => {{
        // SAFETY: the caller's `$file` is a live shim.
        let rc = unsafe { flush($file.cast()) };
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        forward!($file, $m, $missing $(, $arg)*)
    }};
}

/// Writes out `file`'s gathered bytes, if any.
///
/// # Safety
/// `file` is a live shim.
unsafe fn flush(file: *mut Shim) -> c_int {
    // SAFETY: per the caller; `gathered` is owned by the shim and, like the file, used by one
    // thread at a time (see the module docs).
    unsafe {
        let gathered = (*file).gathered;
        if gathered.is_null() {
            return ffi::SQLITE_OK;
        }
        if let Some(rc) = (*gathered).poisoned {
            return rc;
        }
        if (*gathered).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let g = &mut *gathered;
        let (real, methods) = real(file.cast());
        let Some(w) = methods.xWrite else {
            g.bytes.clear();
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut rc = ffi::SQLITE_OK;
        let mut offset = g.start;
        for chunk in g.bytes.chunks(MAX_WRITE) {
            // Both fit: a chunk is at most MAX_WRITE bytes.
            rc = w(real, chunk.as_ptr().cast(), chunk.len() as c_int, offset);
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        g.bytes.clear();
        if rc != ffi::SQLITE_OK {
            g.poisoned = Some(rc);
        }
        rc
    }
}

/// Writes straight to the real file behind `file`, poisoning it on failure.
///
/// # Safety
/// `file` is a live shim; `buf` holds `amount` bytes.
unsafe fn write_through(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: per the caller.
    unsafe {
        let (real, methods) = real(file);
        let rc = match methods.xWrite {
            Some(w) => w(real, buf, amount, offset),
            None => ffi::SQLITE_IOERR_WRITE,
        };
        let gathered = (*file.cast::<Shim>()).gathered;
        if rc != ffi::SQLITE_OK && !gathered.is_null() {
            (*gathered).poisoned = Some(rc);
        }
        rc
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(&base) = BASE.get() else {
        return ffi::SQLITE_ERROR;
    };
    let base = base as *mut ffi::sqlite3_vfs;
    let shim = file.cast::<Shim>();
    // SAFETY: SQLite gives `szOsFile` bytes at `file`: a `Shim` followed by the base VFS's
    // file (`Shim` is pointer-aligned, and so is its size).
    unsafe {
        let real = shim
            .cast::<u8>()
            .add(size_of::<Shim>())
            .cast::<ffi::sqlite3_file>();
        ptr::write(
            shim,
            Shim {
                file: ffi::sqlite3_file {
                    pMethods: ptr::null(),
                },
                real,
                db: ptr::null_mut(),
                wal: ptr::null_mut(),
                gathered: ptr::null_mut(),
            },
        );
        (*real).pMethods = ptr::null();
        let Some(base_open) = (*base).xOpen else {
            return ffi::SQLITE_ERROR;
        };
        let rc = base_open(base, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK || (*real).pMethods.is_null() {
            // Not opened: this file's methods stay null, so SQLite calls none of them (it
            // requires exactly that of a failed open); a half-open real file is closed here.
            if !(*real).pMethods.is_null()
                && let Some(close) = (*(*real).pMethods).xClose
            {
                close(real);
            }
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        (*shim).file.pMethods = &METHODS;
        if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
            let db = ffi::sqlite3_database_file_object(name).cast::<Shim>();
            // Gather only when the database file is one of ours (it always is: SQLite opens a
            // WAL through its database's VFS), so the barrier can find this file.
            if !db.is_null() && ptr::eq((*db).file.pMethods, &METHODS) {
                (*shim).db = db;
                (*shim).gathered = Box::into_raw(Box::default());
                (*db).wal = shim;
            }
        }
        rc
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    let shim = file.cast::<Shim>();
    // SAFETY: SQLite closes each file it opened once; the links are cleared on both sides so
    // neither file keeps a pointer to a closed one.
    let flushed = unsafe { flush(shim) };
    let closed = forward!(file, xClose, ffi::SQLITE_OK);
    // SAFETY: as above.
    unsafe {
        if !(*shim).gathered.is_null() {
            drop(Box::from_raw((*shim).gathered));
            (*shim).gathered = ptr::null_mut();
        }
        if !(*shim).db.is_null() {
            (*(*shim).db).wal = ptr::null_mut();
        }
        if !(*shim).wal.is_null() {
            (*(*shim).wal).db = ptr::null_mut();
        }
        (*shim).file.pMethods = ptr::null();
        if flushed == ffi::SQLITE_OK {
            closed
        } else {
            flushed
        }
    }
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let shim = file.cast::<Shim>();
    // SAFETY: `file` is a live shim; `buf` holds `amount` bytes (SQLite's contract).
    unsafe {
        let gathered = (*shim).gathered;
        if gathered.is_null() {
            return write_through(file, buf, amount, offset);
        }
        if let Some(rc) = (*gathered).poisoned {
            return rc;
        }
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let commit_header = len == FRAME_HEADER && bytes[4..8] != [0; 4];
        // Read before anything is written out: this write may be the commit frame's page.
        let ends_commit = std::mem::take(&mut (*gathered).commit_pending);
        let appends = (*gathered).next == Some(offset);
        (*gathered).next = Some(offset + i64::from(amount));
        if !appends || len > MAX_GATHERED {
            let rc = flush(shim);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let rc = write_through(file, buf, amount, offset);
            (*gathered).commit_pending = rc == ffi::SQLITE_OK && commit_header;
            return rc;
        }
        if (*gathered).bytes.len() + len > MAX_GATHERED {
            let rc = flush(shim);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        {
            let g = &mut *gathered;
            if g.bytes.is_empty() {
                g.start = offset;
            }
            g.bytes.extend_from_slice(bytes);
            g.commit_pending = commit_header;
        }
        if ends_commit {
            return flush(shim);
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    flush_then_forward!(file, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    flush_then_forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    flush_then_forward!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    flush_then_forward!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
}

unsafe extern "C" fn lock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xLock, ffi::SQLITE_IOERR_LOCK, level)
}

unsafe extern "C" fn unlock(file: *mut ffi::sqlite3_file, level: c_int) -> c_int {
    forward!(file, xUnlock, ffi::SQLITE_IOERR_UNLOCK, level)
}

unsafe extern "C" fn check_reserved_lock(file: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    forward!(
        file,
        xCheckReservedLock,
        ffi::SQLITE_IOERR_CHECKRESERVEDLOCK,
        out
    )
}

unsafe extern "C" fn file_control(
    file: *mut ffi::sqlite3_file,
    op: c_int,
    arg: *mut c_void,
) -> c_int {
    forward!(file, xFileControl, ffi::SQLITE_NOTFOUND, op, arg)
}

unsafe extern "C" fn sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xSectorSize, 4096)
}

unsafe extern "C" fn device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    forward!(file, xDeviceCharacteristics, 0)
}

unsafe extern "C" fn shm_map(
    file: *mut ffi::sqlite3_file,
    page: c_int,
    page_size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    forward!(
        file,
        xShmMap,
        ffi::SQLITE_IOERR_SHMMAP,
        page,
        page_size,
        extend,
        out
    )
}

/// Writes out the gathered bytes of the WAL of the database file `file`, if it has one open.
///
/// # Safety
/// `file` is a live shim.
unsafe fn flush_wal_of(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: per the caller; the link is cleared when the WAL closes.
    unsafe {
        let wal = (*file.cast::<Shim>()).wal;
        if wal.is_null() {
            return ffi::SQLITE_OK;
        }
        let gathered = (*wal).gathered;
        if !gathered.is_null() && !(*gathered).bytes.is_empty() {
            LATE_AT_BARRIER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        flush(wal)
    }
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is a live shim. The commit frame has been written already (see the
    // module docs). A failure here cannot be returned, and SQLite is about to publish: stop.
    let rc = unsafe { flush_wal_of(file) };
    if rc != ffi::SQLITE_OK {
        tracing::error!(
            code = rc,
            "gathered WAL frames could not be written before SQLite published them"
        );
        std::process::abort();
    }
    forward!(file, xShmBarrier, ());
}

unsafe extern "C" fn shm_unmap(file: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    forward!(file, xShmUnmap, ffi::SQLITE_OK, delete)
}

unsafe extern "C" fn fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: `out` is SQLite's to fill; without the method there is no mapping to give.
    let (_, methods) = unsafe { real(file) };
    if methods.xFetch.is_none() {
        unsafe { *out = ptr::null_mut() };
        return ffi::SQLITE_OK;
    }
    forward!(file, xFetch, ffi::SQLITE_OK, offset, amount, out)
}

unsafe extern "C" fn unfetch(file: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    forward!(file, xUnfetch, ffi::SQLITE_OK, offset, p)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;

    use crate::sqlite::in_transaction;

    /// Bytes left for the barrier anywhere in this process (they must never be).
    fn late_at_barrier() -> u64 {
        super::LATE_AT_BARRIER.load(Ordering::Relaxed)
    }

    /// A connection to `dir`'s test file through this VFS, in WAL mode, with the scratch table.
    fn open(dir: &Path) -> rusqlite::Connection {
        super::register().expect("register");
        let db = rusqlite::Connection::open_with_flags_and_vfs(
            dir.join("t.db"),
            rusqlite::OpenFlags::default(),
            super::NAME,
        )
        .expect("open");
        db.busy_timeout(Duration::from_secs(10)).expect("timeout");
        db.pragma_update(None, "page_size", 2048)
            .expect("page size");
        db.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
            .expect("wal");
        // As the catalog's writer: no sync at commit, so only this VFS's own writing out puts
        // a transaction on disk before SQLite publishes it.
        db.pragma_update(None, "synchronous", "NORMAL")
            .expect("synchronous");
        db.execute_batch("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)")
            .expect("table");
        db
    }

    fn count(db: &rusqlite::Connection) -> i64 {
        db.query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .expect("count")
    }

    /// What a crash right now would leave: the file and its WAL copied as they are on disk
    /// (without the shared-memory index), opened through the plain unix VFS, which recovers
    /// the WAL by its checksums. Returns the rows found, after checking the copy's integrity.
    fn count_after_crash(dir: &Path) -> i64 {
        let copy = tempfile::tempdir().expect("tempdir");
        for suffix in ["", "-wal"] {
            let name = format!("t.db{suffix}");
            std::fs::copy(dir.join(&name), copy.path().join(&name)).expect("copy");
        }
        let db = rusqlite::Connection::open(copy.path().join("t.db")).expect("open copy");
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        count(&db)
    }

    fn insert(db: &rusqlite::Connection, key: String, value: &[u8]) {
        db.prepare_cached(
            "INSERT INTO t (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        )
        .and_then(|mut s| s.execute(rusqlite::params![key, value]))
        .expect("insert");
    }

    /// Transactions of many sizes (crossing the 128 KiB a single write may carry, and the
    /// gathering limit at every kind of frame), with another connection checkpointing and
    /// restarting the WAL meanwhile: every commit is visible to another connection at once and
    /// on disk as a crash would find it, and the file is intact after a reopen.
    #[test]
    fn gathered_wal_writes_are_visible_at_commit_and_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let writer = open(dir.path());
        let reader = open(dir.path());
        let blob = vec![7u8; 1500];
        let mut expected = 0;
        for round in 0..40_i64 {
            // Sizes from 1 to ~300 KiB of new rows.
            let rows = if round % 5 == 0 { 200 } else { 1 + round * 3 };
            in_transaction(&writer, || {
                for n in 0..rows {
                    insert(&writer, format!("k{round}-{n}"), &blob);
                }
                Ok(())
            })
            .expect("commit");
            expected += rows;
            assert_eq!(count(&reader), expected, "after round {round}");
            assert_eq!(
                count_after_crash(dir.path()),
                expected,
                "crash after round {round}"
            );
            if round % 10 == 9 {
                // The WAL is copied into the file and starts over at the next commit.
                reader
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .expect("checkpoint");
            }
        }
        drop((writer, reader));
        let db = open(dir.path());
        assert_eq!(count(&db), expected);
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok");
        assert_eq!(late_at_barrier(), 0);
    }

    /// A transaction larger than the page cache spills frames to the WAL before its commit;
    /// changing a spilled page again rewrites its frame in place and, at the commit, the
    /// checksums of every later frame, the commit frame's header last. Those rewrites go to
    /// the file as they come, so a crash finds the transaction whole.
    #[test]
    fn a_transaction_that_spills_and_rewrites_frames_is_whole_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open(dir.path());
        db.pragma_update(None, "cache_size", 20)
            .expect("small cache");
        in_transaction(&db, || {
            for n in 0..500 {
                insert(&db, format!("k{n:04}"), &[1u8; 600]);
            }
            db.execute("UPDATE t SET v = x'02'", []).map(drop)
        })
        .expect("commit");
        assert_eq!(count(&db), 500);
        assert_eq!(count_after_crash(dir.path()), 500);
        assert_eq!(late_at_barrier(), 0);
    }

    /// The files copied while a writer commits, as a crash at any moment would leave them:
    /// every copy opens intact through the plain unix VFS and holds whole transactions only,
    /// never fewer than were committed before the copy began. (No checkpoint runs meanwhile:
    /// the database file then never changes, so copying it and then the WAL is one image.)
    #[test]
    fn files_copied_in_the_middle_of_writes_reopen_whole() {
        const ROWS: i64 = 37;
        const ROUNDS: i64 = 300;
        let dir = tempfile::tempdir().expect("tempdir");
        // Kept open to the end: the last connection to close checkpoints and deletes the WAL.
        let held = open(dir.path());
        let committed = std::sync::Arc::new(AtomicI64::new(0));
        let writing = {
            let (committed, path) = (committed.clone(), dir.path().to_owned());
            std::thread::spawn(move || {
                let db = open(&path);
                db.pragma_update(None, "wal_autocheckpoint", 0)
                    .expect("no checkpoints");
                let blob = vec![9u8; 700];
                for round in 1..=ROUNDS {
                    in_transaction(&db, || {
                        for n in 0..ROWS {
                            insert(&db, format!("r{round}-{n}"), &blob);
                        }
                        Ok(())
                    })
                    .expect("commit");
                    committed.store(round * ROWS, Ordering::Release);
                    // Room for the copies to land between and inside commits.
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let (mut last, mut mid_write) = (0, 0);
        while !writing.is_finished() {
            let before = committed.load(Ordering::Acquire);
            let found = count_after_crash(dir.path());
            assert_eq!(found % ROWS, 0, "a transaction in part: {found} rows");
            assert!(found >= before, "{found} rows, {before} committed before");
            assert!(found >= last, "{found} rows after {last}");
            if found > 0 && found < ROUNDS * ROWS {
                mid_write += 1;
            }
            last = found;
        }
        writing.join().expect("writer");
        assert!(mid_write > 0, "no copy was taken while the writer wrote");
        assert_eq!(count_after_crash(dir.path()), ROUNDS * ROWS);
        drop(held);
        assert_eq!(late_at_barrier(), 0);
    }

    /// The VFS depends on the WAL format and on the unix VFS's way of writing it, as SQLite
    /// 3.46.0 has them (libsqlite3-sys 0.30.1, pinned in node/Cargo.toml): a new SQLite is
    /// checked against this module before the pin moves.
    #[test]
    fn the_sqlite_this_vfs_was_checked_against_is_the_one_linked() {
        assert_eq!(rusqlite::version(), "3.46.0");
    }
}
