//! A SQLite VFS that writes each transaction's WAL frames with one `pwrite`.
//!
//! SQLite appends a WAL frame as two `pwrite`s, its 24-byte header and then the page. A
//! state-machine commit of eight listings is about 47 frames, so every node made ~94 system
//! calls per commit for the catalog's WAL alone (about 2.4 µs each on the loaded bench
//! machine). This VFS wraps the default one (`unix`) and, for WAL files only, gathers
//! contiguous writes in memory and hands them to the real file in one write. Everything else
//! — the database file, the shared-memory index, locks, reads — goes straight through.
//!
//! When the gathered bytes go to the file, so that nothing SQLite relies on is ever only in
//! memory:
//!
//! - **the commit frame**: its header carries the database size, non-zero only for the frame
//!   that ends a transaction (the WAL format's documented frame header). The write of that
//!   frame's page flushes, and returns the real write's error, before SQLite goes on to publish
//!   the transaction in the shared index. Readers on other connections (with their own file
//!   handles) only look at frames the index publishes, so they never miss a frame.
//! - before every read, sync, truncate, size query and file control on the WAL, on close, and
//!   before a write that does not continue the gathered bytes (a rewritten frame, the header
//!   of a restarted WAL);
//! - before the database file's shared-memory barrier and lock calls (SQLite's steps that
//!   publish or give up a transaction), as a second line.
//!
//! A crash loses only bytes of a transaction that had not reached its commit frame, which SQLite
//! ignores on recovery anyway. Durability is unchanged: `synchronous=FULL` still syncs the WAL
//! (after the flush) before a commit returns.

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
const MAX_GATHERED: usize = 8 << 20;

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

/// The wrapped (default) VFS, as an address.
static BASE: OnceLock<usize> = OnceLock::new();

/// What SQLite allocates for each file (`szOsFile`): this header, then the real file.
#[repr(C)]
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

/// Contiguous bytes not yet written, starting at `start` in the file.
#[derive(Default)]
struct Gathered {
    start: i64,
    bytes: Vec<u8>,
    /// The last write was a commit frame's header: write everything out after its page.
    commit_pending: bool,
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

/// Writes out `file`'s gathered bytes, if any.
///
/// # Safety
/// `file` is a live shim.
unsafe fn flush(file: *mut Shim) -> c_int {
    // SAFETY: per the caller; `gathered` is owned by the shim and only touched under SQLite's
    // connection mutex, like the file itself.
    unsafe {
        let gathered = (*file).gathered;
        if gathered.is_null() || (*gathered).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let g = &mut *gathered;
        g.commit_pending = false;
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
        if (*real).pMethods.is_null() {
            // Not opened: SQLite will not call any method of this file.
            return if rc == ffi::SQLITE_OK {
                ffi::SQLITE_CANTOPEN
            } else {
                rc
            };
        }
        (*shim).file.pMethods = &METHODS;
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
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
        let Ok(len) = usize::try_from(amount) else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        if gathered.is_null() || len > MAX_GATHERED {
            let rc = flush(shim);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let (real, methods) = real(file);
            return match methods.xWrite {
                Some(w) => w(real, buf, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let continues = {
            let g = &*gathered;
            !g.bytes.is_empty()
                && i64::try_from(g.bytes.len()).is_ok_and(|n| g.start + n == offset)
                && g.bytes.len() + len <= MAX_GATHERED
        };
        if !continues {
            let rc = flush(shim);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            (*gathered).start = offset;
        }
        let g = &mut *gathered;
        g.bytes.extend_from_slice(bytes);
        if g.commit_pending {
            return flush(shim);
        }
        if len == FRAME_HEADER && bytes[4..8] != [0; 4] {
            g.commit_pending = true;
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
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush(file.cast()) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xRead, ffi::SQLITE_IOERR_READ, buf, amount, offset)
}

unsafe extern "C" fn truncate(file: *mut ffi::sqlite3_file, size: i64) -> c_int {
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush(file.cast()) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xTruncate, ffi::SQLITE_IOERR_TRUNCATE, size)
}

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush(file.cast()) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xSync, ffi::SQLITE_IOERR_FSYNC, flags)
}

unsafe extern "C" fn file_size(file: *mut ffi::sqlite3_file, size: *mut i64) -> c_int {
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush(file.cast()) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xFileSize, ffi::SQLITE_IOERR_FSTAT, size)
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
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush(file.cast()) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
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
            ffi::SQLITE_OK
        } else {
            flush(wal)
        }
    }
}

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    // SAFETY: `file` is a live shim.
    let rc = unsafe { flush_wal_of(file) };
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    forward!(file, xShmLock, ffi::SQLITE_IOERR_SHMLOCK, offset, n, flags)
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: `file` is a live shim. The commit frame has flushed already (see the module
    // docs); a failure here cannot be returned, so it is logged.
    let rc = unsafe { flush_wal_of(file) };
    if rc != ffi::SQLITE_OK {
        tracing::error!(code = rc, "writing gathered WAL frames failed at a barrier");
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
    use std::time::Duration;

    use super::super::Db;

    async fn count(db: &Db) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM sm_meta WHERE key LIKE 'k%'")
            .fetch_one(&db.read)
            .await
            .expect("count")
    }

    /// Transactions small and large (over the 128 KiB a single write may carry), with the
    /// background checkpointer copying and restarting the WAL meanwhile: every commit is
    /// visible to another connection at once, and the file is intact after a reopen.
    #[tokio::test]
    async fn gathered_wal_writes_are_visible_at_commit_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).await.expect("open");
        let blob = vec![7u8; 1500];
        for round in 0..40_i64 {
            // Every fifth transaction writes ~300 KiB of new rows.
            let rows = if round % 5 == 0 { 200 } else { 3 };
            let mut tx = db.sm.begin().await.expect("begin");
            for n in 0..rows {
                sqlx::query(
                    "INSERT INTO sm_meta (key, value) VALUES (?, ?) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )
                .bind(format!("k{round}-{n}"))
                .bind(&blob)
                .execute(&mut *tx)
                .await
                .expect("insert");
            }
            tx.commit().await.expect("commit");
            let expected: i64 = (0..=round).map(|r| if r % 5 == 0 { 200 } else { 3 }).sum();
            assert_eq!(count(&db).await, expected, "after round {round}");
            if round % 10 == 9 {
                // Let the checkpointer (every 100 ms) catch up, so the WAL restarts.
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        }
        let total = count(&db).await;
        db.close().await;
        let db = Db::open(dir.path()).await.expect("reopen");
        assert_eq!(count(&db).await, total);
        let check: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&db.read)
            .await
            .expect("integrity_check");
        assert_eq!(check, "ok");
        db.close().await;
    }
}
