//! SQLite's own page cache, with one walk it takes at every commit skipped when it cannot find
//! anything.
//!
//! When SQLite rebalances a b-tree it may swap two pages' numbers, parking one for a moment at
//! the number of the page that holds the file's lock bytes (page 524,289 with 2 KiB pages), a
//! page no file of ours reaches. Its page cache then remembers that number as the highest it
//! has held, and at the end of every transaction, where it drops any page beyond the end of the
//! file, it finds that range too wide to look up page by page and walks its whole hash table
//! instead, for nothing. With a few thousand pages cached, that walk was 2.4 % of the machine
//! under `scripts/bench-vs-etcd` at 64 clients (perf; a probe on `pcache1TruncateUnsafe` showed
//! `iMaxKey` 0x80001 against a file of 0x4100 pages at every catalog commit).
//!
//! [`install`] puts a thin layer in front of SQLite's cache that keeps its own bound on the page
//! numbers held (the parked page aside, which it follows separately) and passes a truncation on
//! only when some page may be at or beyond its limit. Every other call goes straight through,
//! so what the cache holds and evicts is SQLite's own doing.
//!
//! SQLite's caches share one list of unused pages (the bundled build defines
//! `SQLITE_ENABLE_MEMORY_MANAGEMENT`): a connection whose cache is full takes the oldest unused
//! page of any cache, from its own thread, without going through this layer. A page only ever
//! enters a cache through `xFetch` or `xRekey`, both seen here, so the bound stays an upper
//! bound; but the number of pages a cache holds can fall at any moment, and counting them
//! around a call says nothing about what the call did (see [`dropped_on_skip`]).

// SQLite's page cache interface is a table of C functions: implementing it needs `unsafe`.
// Every unsafe block below is one of three things: a call of SQLite's own method with the
// pointer its `xCreate` returned (sound as SQLite's default cache is sound); turning the pointer
// SQLite hands a method back into the `Cache` that `create` boxed (sound because SQLite passes a
// cache only between `xCreate` and `xDestroy`, from one connection at a time, and every
// connection here is used by one thread at a time); or `sqlite3_config` before SQLite's first
// use, as documented.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_uint};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::ffi;

/// One page cache's handle, as SQLite's cache interface passes it.
type Handle = *mut ffi::sqlite3_pcache;
/// One page, as SQLite's cache interface passes it.
type Page = *mut ffi::sqlite3_pcache_page;

/// SQLite's default page cache, as it was before [`install`] replaced it: every method it has
/// (SQLite's own cache has them all; [`install`] refuses one that lacks any).
struct Methods {
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> Handle,
    cachesize: unsafe extern "C" fn(Handle, c_int),
    pagecount: unsafe extern "C" fn(Handle) -> c_int,
    fetch: unsafe extern "C" fn(Handle, c_uint, c_int) -> Page,
    unpin: unsafe extern "C" fn(Handle, Page, c_int),
    rekey: unsafe extern "C" fn(Handle, Page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(Handle, c_uint),
    destroy: unsafe extern "C" fn(Handle),
    shrink: unsafe extern "C" fn(Handle),
}

static INNER: OnceLock<Methods> = OnceLock::new();

/// Truncations skipped, for tests.
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Pages parked at the lock page's number, for tests.
static PARKED: AtomicU64 = AtomicU64::new(0);

/// Debug builds: skipped truncations that, passed on, left the cache with fewer pages.
static DROPPED_ON_SKIP: AtomicU64 = AtomicU64::new(0);

/// How many truncations the layer found it could skip, in this process.
pub fn skipped() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// How many times SQLite parked a page at the lock page's number, in this process.
pub fn parked() -> u64 {
    PARKED.load(Ordering::Relaxed)
}

/// Debug builds pass on every truncation they skip and count here those after which the cache
/// held fewer pages: a wrong skip, unless another connection recycled a page of this cache
/// meanwhile, which it may do at any moment from its own thread. The count is a check only
/// while a single thread uses SQLite (as one test does); release builds leave it at zero.
pub fn dropped_on_skip() -> u64 {
    DROPPED_ON_SKIP.load(Ordering::Relaxed)
}

fn inner() -> &'static Methods {
    INNER
        .get()
        .expect("the page cache layer is installed before any cache is created")
}

/// One cache: SQLite's, and what this layer knows of the page numbers in it. SQLite uses a cache
/// from one connection at a time, so the fields need no lock.
struct Cache {
    inner: Handle,
    /// The lock-byte page's number for this page size.
    lock_page: c_uint,
    /// No page is held with a higher number, except one parked at `lock_page`.
    bound: c_uint,
    /// A page may be parked at `lock_page`.
    parked: bool,
}

/// # Safety
/// `p` is a pointer [`create`] returned and [`destroy`] has not freed.
unsafe fn cache<'a>(p: Handle) -> &'a mut Cache {
    unsafe { &mut *p.cast::<Cache>() }
}

unsafe extern "C" fn create(page_size: c_int, extra: c_int, purgeable: c_int) -> Handle {
    let p = unsafe { (inner().create)(page_size, extra, purgeable) };
    if p.is_null() {
        return p;
    }
    // As SQLite computes it: the page holding byte 2^30 of the file.
    let lock_page = c_uint::try_from(0x4000_0000 / page_size.max(1) + 1).unwrap_or(c_uint::MAX);
    Box::into_raw(Box::new(Cache {
        inner: p,
        lock_page,
        bound: 0,
        parked: false,
    }))
    .cast()
}

unsafe extern "C" fn cachesize(p: Handle, n: c_int) {
    unsafe { (inner().cachesize)(cache(p).inner, n) }
}

unsafe extern "C" fn pagecount(p: Handle) -> c_int {
    unsafe { (inner().pagecount)(cache(p).inner) }
}

unsafe extern "C" fn fetch(p: Handle, key: c_uint, create: c_int) -> Page {
    let c = unsafe { cache(p) };
    let page = unsafe { (inner().fetch)(c.inner, key, create) };
    if !page.is_null() {
        c.bound = c.bound.max(key);
    }
    page
}

unsafe extern "C" fn unpin(p: Handle, page: Page, discard: c_int) {
    unsafe { (inner().unpin)(cache(p).inner, page, discard) }
}

unsafe extern "C" fn rekey(p: Handle, page: Page, old: c_uint, new: c_uint) {
    let c = unsafe { cache(p) };
    unsafe { (inner().rekey)(c.inner, page, old, new) }
    if new == c.lock_page {
        PARKED.fetch_add(1, Ordering::Relaxed);
        c.parked = true;
    } else {
        c.bound = c.bound.max(new);
        if old == c.lock_page {
            c.parked = false;
        }
    }
}

unsafe extern "C" fn truncate(p: Handle, limit: c_uint) {
    let c = unsafe { cache(p) };
    // Pages numbered `limit` or higher are to go; there are none unless one is parked at the
    // lock page or the bound reaches the limit.
    let parked_beyond = c.parked && c.lock_page >= limit;
    if !parked_beyond && c.bound < limit {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        // Debug builds pass the truncation on anyway and count what it may have dropped
        // (`dropped_on_skip`). Never an assertion: another thread may take a page of this
        // cache between the two counts, and a panic here aborts the process (it cannot unwind
        // into SQLite), which is how a debug-built node died while building a snapshot.
        if cfg!(debug_assertions) {
            let before = unsafe { (inner().pagecount)(c.inner) };
            unsafe { (inner().truncate)(c.inner, limit) }
            let after = unsafe { (inner().pagecount)(c.inner) };
            if after != before {
                DROPPED_ON_SKIP.fetch_add(1, Ordering::Relaxed);
            }
        }
        return;
    }
    unsafe { (inner().truncate)(c.inner, limit) }
    c.bound = c.bound.min(limit.saturating_sub(1));
    c.parked = c.parked && c.lock_page < limit;
}

unsafe extern "C" fn destroy(p: Handle) {
    let c = unsafe { Box::from_raw(p.cast::<Cache>()) };
    unsafe { (inner().destroy)(c.inner) }
}

unsafe extern "C" fn shrink(p: Handle) {
    unsafe { (inner().shrink)(cache(p).inner) }
}

/// Puts the layer in front of SQLite's page cache for every connection opened afterwards in this
/// process. Only possible before SQLite is first used (before any connection is opened); later,
/// or a second time, it changes nothing and says why.
///
/// # Errors
/// SQLite's refusal (it was already in use).
pub fn install() -> Result<(), String> {
    let mut default = ffi::sqlite3_pcache_methods2 {
        iVersion: 0,
        pArg: std::ptr::null_mut(),
        xInit: None,
        xShutdown: None,
        xCreate: None,
        xCachesize: None,
        xPagecount: None,
        xFetch: None,
        xUnpin: None,
        xRekey: None,
        xTruncate: None,
        xDestroy: None,
        xShrink: None,
    };
    // SAFETY: the configuration call SQLite documents for reading the current page cache; it
    // writes the methods into `default`.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_GETPCACHE2,
            std::ptr::from_mut(&mut default),
        )
    };
    if rc != ffi::SQLITE_OK {
        return Err(format!("SQLite did not give its page cache (code {rc})"));
    }
    let whole = || {
        Some(Methods {
            create: default.xCreate?,
            cachesize: default.xCachesize?,
            pagecount: default.xPagecount?,
            fetch: default.xFetch?,
            unpin: default.xUnpin?,
            rekey: default.xRekey?,
            truncate: default.xTruncate?,
            destroy: default.xDestroy?,
            shrink: default.xShrink?,
        })
    };
    let Some(methods) = whole() else {
        return Err("SQLite's page cache lacks a method the layer passes calls on to".into());
    };
    let ours = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: default.pArg,
        xInit: default.xInit,
        xShutdown: default.xShutdown,
        xCreate: Some(create),
        xCachesize: Some(cachesize),
        xPagecount: Some(pagecount),
        xFetch: Some(fetch),
        xUnpin: Some(unpin),
        xRekey: Some(rekey),
        xTruncate: Some(truncate),
        xDestroy: Some(destroy),
        xShrink: Some(shrink),
    };
    // Set once: a second call finds it set (SQLite would give it this layer as its cache).
    if INNER.set(methods).is_err() {
        return Err("the page cache layer is already installed".into());
    }
    // SAFETY: SQLite copies the methods; it refuses (SQLITE_MISUSE) once it is initialised.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, std::ptr::from_ref(&ours)) };
    if rc != ffi::SQLITE_OK {
        return Err(format!(
            "SQLite refused the page cache layer (code {rc}): it was in use already"
        ));
    }
    Ok(())
}
