//! The catalog state machine in SQLite (openraft `RaftStateMachine`), and its snapshots.
//!
//! A batch of entries is applied in one transaction together with the new last-applied log id,
//! so the tables and the recorded position never disagree. A snapshot is a dump of the
//! replicated tables (generic rows, so new tables only need adding to [`REPLICATED_TABLES`]);
//! installing one replaces those tables in one transaction.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use sqlx::Connection;

use super::raft_types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use super::raw::{in_transaction, with_view};
use super::snapshot_file::SnapshotFile;
use super::{BatchObserver, Db, blocking, from_cbor, meta_value, to_cbor};
use crate::audit;
use crate::catalog::apply::{apply_batch, as_submission, submit_run};
use crate::catalog::{BatchResponse, CatalogCommand, ZoneFacts};

/// Tables whose content is the replicated state, in restore order.
pub const REPLICATED_TABLES: &[&str] = &[
    "listings",
    "listing_history",
    "audit",
    "tokens",
    "outbox",
    "announcements",
    "recognitions",
    "revocations",
    "idempotency",
    "parties",
    "party_history",
    "entrustments",
];

/// Counters bumped after an applied batch changed something others cache or wait for.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// The tokens table changed (the API caches token rows).
    pub tokens: Arc<AtomicU64>,
    /// Revoked keys were added (the federation layer caches its trust store).
    pub revocations: Arc<AtomicU64>,
    /// Outbox entries may have been added (the publisher waits on it).
    pub outbox: Arc<tokio::sync::Notify>,
}

/// The state machine; cheap to clone.
#[derive(Clone, Debug)]
pub struct StateMachine {
    db: Db,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    observer: Option<BatchObserver>,
    /// The audit chain's head after the last applied batch; read from the table when absent
    /// (at start, after a snapshot install or a failed batch).
    chain: Option<audit::Chain>,
    /// Raised after batches that changed cached tables.
    signals: Signals,
    /// The zone's facts (export policy, ids).
    zone: Arc<ZoneFacts>,
}

/// A value of one SQLite cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(serde_bytes::ByteBuf),
}

#[derive(Debug, Serialize, Deserialize)]
struct TableDump {
    name: String,
    columns: Vec<String>,
    rows: Vec<Vec<Cell>>,
}

/// What a snapshot holds: the position, the membership and the replicated tables.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    tables: Vec<TableDump>,
}

/// Whether [`StateMachine::restore`] stores the snapshot it restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    /// From the leader: stored before the tables are replaced.
    Store,
    /// Read from the snapshot file.
    AlreadyStored,
}

/// A snapshot [`StateMachine::build`] made, and whether it is the stored one now.
struct Built {
    meta: SnapshotMeta,
    data: Vec<u8>,
    stored: bool,
}

/// The format written. 2 since catalog schema v4: `listing_history` rows carry `listing_seq`.
/// A node before v4 refuses these by number; this node still restores format 1 (the
/// snapshot a zone holds right after upgrading), deriving the column, see [`insert_sql`].
const SNAPSHOT_FORMAT: u32 = 2;
/// The oldest format this node restores.
const FIRST_SNAPSHOT_FORMAT: u32 = 1;

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Cell::Null => ValueRef::Null,
            Cell::Int(v) => ValueRef::Integer(*v),
            Cell::Real(v) => ValueRef::Real(*v),
            Cell::Text(v) => ValueRef::Text(v.as_bytes()),
            Cell::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

/// The INSERT for one row of a dumped table. History rows of a format-1 snapshot have no
/// `listing_seq`: it is looked up from the listing (restored before the history).
fn insert_sql(table: &TableDump) -> String {
    let marks: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
    let listing_id = table.columns.iter().position(|c| c == "listing_id");
    match listing_id {
        Some(at)
            if table.name == "listing_history"
                && !table.columns.iter().any(|c| c == "listing_seq") =>
        {
            format!(
                "INSERT INTO listing_history (listing_seq, {}) \
                 VALUES ((SELECT seq FROM listings WHERE id = ?{}), {})",
                table.columns.join(", "),
                at + 1,
                marks.join(", ")
            )
        }
        _ => format!(
            "INSERT INTO {} ({}) VALUES ({})",
            table.name,
            table.columns.join(", "),
            marks.join(", ")
        ),
    }
}

fn sm_read(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(e)).into()
}

fn sm_write(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(e)).into()
}

fn snap_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

fn snap_read(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(e)).into()
}

/// A value of `sm_meta`, read through the read pool (keeps `StateMachine::new`'s future `Send`
/// for any lifetime).
async fn pool_meta<T: serde::de::DeserializeOwned>(
    db: &Db,
    key: &str,
) -> Result<Option<T>, sqlx::Error> {
    let row = sqlx::query("SELECT value FROM sm_meta WHERE key = ?")
        .bind(key)
        .fetch_optional(&db.read)
        .await?;
    meta_value(row)
}

fn set_meta<T: Serialize>(db: &rusqlite::Connection, key: &str, value: &T) -> rusqlite::Result<()> {
    let bytes = to_cbor(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    db.prepare_cached(
        "INSERT INTO sm_meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute(rusqlite::params![key, bytes])?;
    Ok(())
}

/// One `apply` call's progress: the audit chain, what the entries changed, their responses.
struct Applying {
    chain: audit::Chain,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    membership_changed: bool,
    tokens_changed: bool,
    revocations_changed: bool,
    outbox_changed: bool,
    responses: Vec<BatchResponse>,
}

impl Applying {
    /// Takes note of `entry`; returns its commands if it has any (the caller applies them and
    /// pushes their responses), else records its (empty) response itself.
    fn enter<'e>(&mut self, entry: &'e Entry) -> Option<&'e [CatalogCommand]> {
        self.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => {}
            EntryPayload::Normal(batch) => {
                self.tokens_changed |= batch.0.iter().any(CatalogCommand::changes_tokens);
                self.revocations_changed |= batch.0.iter().any(CatalogCommand::changes_revocations);
                self.outbox_changed |= batch.0.iter().any(CatalogCommand::changes_outbox);
                return Some(&batch.0);
            }
            EntryPayload::Membership(m) => {
                self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                self.membership_changed = true;
                // A membership entry carries no time: it reuses the chain's last one, which
                // every node has, so the record is the same everywhere. The entries that form
                // the zone come before any command (there is no time yet): nobody asked for
                // them, they are the members' configs, and they get no record (they were dated
                // 1970-01-01). A change an admin asks for is recorded with the admin and the
                // time of the request (`request_membership_change`).
                let at = self.chain.last_at();
                if at == xchg_protocol::Timestamp(0) {
                    self.responses.push(Vec::new());
                    return None;
                }
                let voters: Vec<String> = m.nodes().map(|(_, n)| n.name.clone()).collect();
                self.chain.append(audit::Event {
                    raft_index: entry.log_id.index,
                    at,
                    actor: "raft",
                    role: "system",
                    action: "change_membership",
                    object_id: &voters.join(","),
                    result: "ok".into(),
                });
            }
        }
        self.responses.push(Vec::new());
        None
    }

    /// Writes the audit records and the new position (the caller commits).
    fn finish(&mut self, db: &rusqlite::Connection) -> rusqlite::Result<()> {
        self.chain.flush(db)?;
        set_meta(db, "last_applied", &self.last_applied)?;
        if self.membership_changed {
            set_meta(db, "membership", &self.membership)?;
        }
        Ok(())
    }
}

/// Whether every command of `entries` is a submission (the whole batch can then be written in
/// one hand-off, see [`crate::store::raw`]).
fn only_submissions(entries: &[Entry]) -> bool {
    entries.iter().all(|e| match &e.payload {
        EntryPayload::Normal(batch) => batch.0.iter().all(|c| as_submission(c).is_some()),
        EntryPayload::Blank | EntryPayload::Membership(_) => true,
    })
}

impl StateMachine {
    /// Loads the last applied position and membership from the database.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn new(db: Db, zone: ZoneFacts) -> Result<Self, sqlx::Error> {
        let last_applied = pool_meta::<Option<LogId>>(&db, "last_applied")
            .await?
            .flatten();
        let membership = pool_meta(&db, "membership").await?.unwrap_or_default();
        let mut sm = StateMachine {
            db,
            last_applied,
            membership,
            observer: None,
            chain: None,
            signals: Signals::default(),
            zone: Arc::new(zone),
        };
        // A snapshot from the leader is stored before the tables are replaced: after a crash
        // in between, the catalog catches up from the file here, before Raft starts (openraft
        // would not install the same snapshot again, and may have purged the log behind it).
        if sm.db.snapshot.stored().is_some_and(|at| at > last_applied) {
            let file = sm.db.snapshot.clone();
            let stored = blocking(move || file.read())
                .await
                .map_err(sqlx::Error::Io)?;
            if let Some((meta, data)) = stored {
                tracing::info!(
                    snapshot = %meta.snapshot_id,
                    "the catalog is behind the stored snapshot; restoring it"
                );
                sm.restore(&meta, data, Store::AlreadyStored)
                    .await
                    .map_err(|e| sqlx::Error::Io(std::io::Error::other(e.to_string())))?;
            }
        }
        sm.set_applied(sm.last_applied);
        Ok(sm)
    }

    /// Records `at` as the last applied position, here and for the log's purges
    /// ([`Db::applied`]).
    fn set_applied(&mut self, at: Option<LogId>) {
        self.last_applied = at;
        self.db.applied.send_replace(at.map_or(0, |id| id.index));
    }

    /// Reports every applied batch to `observer`.
    pub fn with_apply_observer(mut self, observer: BatchObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Raises `signals` after batches that change what they stand for.
    pub fn with_signals(mut self, signals: Signals) -> Self {
        self.signals = signals;
        self
    }

    /// Dumps and encodes the replicated state and stores it in the snapshot file (unless a
    /// newer one was stored meanwhile). In a thread of its own at a lower priority: reading and
    /// encoding every row is the largest piece of work a node does, and writes keep coming
    /// meanwhile (measured at 64 clients while the nodes dumped 100 MB: p99 37–38 ms through
    /// sqlx, 48–51 ms in a full-priority thread, 42–44 ms at the lowest priority).
    async fn build(&self) -> Result<Built, StorageError> {
        let path = self.db.catalog_path.clone();
        let file = self.db.snapshot.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("xchg-snapshot".into())
            .spawn(move || {
                lower_this_threads_priority();
                let _ = done.send(build_file(&path, &file));
            })
            .map_err(|e| snap_err(&e))?;
        result
            .await
            .map_err(|e| snap_err(&std::io::Error::other(e)))?
    }

    /// Replaces the replicated tables with the snapshot `data`.
    ///
    /// A snapshot from the leader is decoded and stored in the snapshot file, in a blocking
    /// thread, before the tables are replaced: a crash in between leaves the stored snapshot
    /// ahead of the tables, and [`StateMachine::new`] restores from it at the next start. (The
    /// other order could leave the tables ahead of a stored snapshot older than the purged log,
    /// which this node could then not serve to a lagging member.)
    async fn restore(
        &mut self,
        meta: &SnapshotMeta,
        data: Vec<u8>,
        store: Store,
    ) -> Result<(), StorageError> {
        let file = self.db.snapshot.clone();
        let stored_meta = meta.clone();
        let payload = tokio::task::spawn_blocking(move || {
            let payload: SnapshotPayload = from_cbor(&data).map_err(|e| snap_err(&e))?;
            if !(FIRST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&payload.format) {
                return Err(snap_err(&std::io::Error::other(format!(
                    "snapshot format {} is not one this node reads ({FIRST_SNAPSHOT_FORMAT} to \
                     {SNAPSHOT_FORMAT}); it was made by a newer xchg",
                    payload.format
                ))));
            }
            if store == Store::Store {
                file.store(&stored_meta, &data).map_err(|e| snap_err(&e))?;
            }
            Ok(payload)
        })
        .await
        .map_err(|e| snap_err(&std::io::Error::other(e)))??;
        let mut writer = self.db.sm_writer.lock().await.map_err(|e| sm_write(&e))?;
        let (conn, view) = writer.split();
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| sm_write(&e))?;
        // Every row in one hand-off to SQLite (a snapshot holds every listing of the zone):
        // seconds for a large catalog, so the runtime is told to move its other tasks away.
        with_view(&mut tx, view, |db| {
            long_blocking(|| {
                for name in REPLICATED_TABLES.iter().rev() {
                    db.execute(&format!("DELETE FROM {name}"), [])?;
                }
                for table in &payload.tables {
                    if !REPLICATED_TABLES.contains(&table.name.as_str()) || table.rows.is_empty() {
                        continue;
                    }
                    let mut insert = db.prepare(&insert_sql(table))?;
                    for row in &table.rows {
                        insert.execute(rusqlite::params_from_iter(row))?;
                    }
                }
                // New listings rows are indexed by the state machine, not by a trigger (schema v4).
                db.execute_batch("INSERT INTO listings_fts (listings_fts) VALUES ('rebuild')")?;
                set_meta(db, "last_applied", &meta.last_log_id)?;
                set_meta(db, "membership", &meta.last_membership)
            })
        })
        .await
        .map_err(|e| sm_write(&e))?;
        tx.commit().await.map_err(|e| sm_write(&e))?;
        drop(writer);
        self.set_applied(meta.last_log_id);
        self.membership = meta.last_membership.clone();
        self.chain = None;
        self.signals.tokens.fetch_add(1, Ordering::Release);
        self.signals.revocations.fetch_add(1, Ordering::Release);
        self.signals.outbox.notify_one();
        Ok(())
    }
}

/// Runs `f`, which blocks its thread for long, after telling a multi-threaded runtime so (its
/// other tasks then move to other workers instead of waiting behind `f`); on a single-threaded
/// runtime, or outside one, `f` just runs.
fn long_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19) short of idle scheduling; best
/// effort (an error leaves it as it was).
#[allow(unsafe_code)]
fn lower_this_threads_priority() {
    // SAFETY: `setpriority` on the calling thread's own id (Linux threads have one each) only
    // changes its scheduling priority; it reads and writes no memory of ours.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid.unsigned_abs(), 19)
    };
    if rc != 0 {
        tracing::debug!("could not lower the snapshot thread's priority");
    }
}

/// A read-only connection of its own to the catalog at `path`, in a read transaction.
///
/// In WAL mode one read transaction sees a consistent cut (tables and `last_applied` together)
/// while batches keep being applied, so building a snapshot does not stall the zone's writes.
/// Reading through `rusqlite` directly rather than a sqlx pool: sqlx hands every row from its
/// worker thread over a channel, and a snapshot reads every row of the zone.
fn open_for_dump(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    let db = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    db.busy_timeout(std::time::Duration::from_secs(30))?;
    db.execute_batch("BEGIN")?;
    Ok(db)
}

/// The last applied log id and the membership recorded in `sm_meta`.
fn read_position(db: &rusqlite::Connection) -> rusqlite::Result<(Option<LogId>, StoredMembership)> {
    let meta = |key: &str| -> rusqlite::Result<Option<Vec<u8>>> {
        db.query_row("SELECT value FROM sm_meta WHERE key = ?1", [key], |row| {
            row.get(0)
        })
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })
    };
    let decode = |e: std::io::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let last_applied = match meta("last_applied")? {
        Some(bytes) => from_cbor::<Option<LogId>>(&bytes).map_err(decode)?,
        None => None,
    };
    let membership = match meta("membership")? {
        Some(bytes) => from_cbor(&bytes).map_err(decode)?,
        None => StoredMembership::default(),
    };
    Ok((last_applied, membership))
}

/// A snapshot encoded straight from the catalog's rows ([`encode_file`]).
struct Encoded {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    data: Vec<u8>,
    rows: u64,
}

/// Reads the replicated tables and the position of the catalog at `path` in one read
/// transaction ([`open_for_dump`]) and encodes them as a [`SnapshotPayload`] as they are read,
/// in the calling (blocking) thread: each cell goes from SQLite's row into the CBOR output
/// without a copy of the table in between (measured: the copy took about twice the encoded
/// size in extra memory, 449 against 231 MiB peak for a 115 MB snapshot, and a quarter of the
/// time).
fn encode_file(path: &std::path::Path) -> std::io::Result<Encoded> {
    let db = open_for_dump(path).map_err(std::io::Error::other)?;
    let (last_applied, membership) = read_position(&db).map_err(std::io::Error::other)?;
    let rows = std::cell::Cell::new(0);
    let data = to_cbor(&StreamedPayload {
        format: SNAPSHOT_FORMAT,
        last_applied,
        membership: &membership,
        tables: StreamedTables {
            db: &db,
            rows: &rows,
        },
    })?;
    db.execute_batch("COMMIT").map_err(std::io::Error::other)?;
    Ok(Encoded {
        last_applied,
        membership,
        data,
        rows: rows.get(),
    })
}

/// Serialized exactly as [`SnapshotPayload`] (same names, same order), with the tables read
/// while they are written out.
#[derive(Serialize)]
#[serde(rename = "SnapshotPayload")]
struct StreamedPayload<'a> {
    format: u32,
    last_applied: Option<LogId>,
    membership: &'a StoredMembership,
    tables: StreamedTables<'a>,
}

/// [`REPLICATED_TABLES`], each read as it is serialized.
struct StreamedTables<'a> {
    db: &'a rusqlite::Connection,
    /// Rows written so far.
    rows: &'a std::cell::Cell<u64>,
}

/// Serialized exactly as [`TableDump`].
#[derive(Serialize)]
#[serde(rename = "TableDump")]
struct StreamedTable<'a, 's> {
    name: &'a str,
    columns: Vec<String>,
    rows: StreamedRows<'a, 's>,
}

/// A table's rows, read while serialized (a sequence of rows, each a sequence of cells).
struct StreamedRows<'a, 's> {
    rows: std::cell::RefCell<rusqlite::Rows<'s>>,
    count: usize,
    width: usize,
    written: &'a std::cell::Cell<u64>,
}

/// One row of [`StreamedRows`].
struct StreamedRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    width: usize,
}

/// The names of `select`'s columns, in order.
fn column_names(select: &rusqlite::Statement<'_>) -> Vec<String> {
    select
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// Serialized exactly as [`Cell`].
#[derive(Serialize)]
#[serde(rename = "Cell")]
enum CellRef<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a serde_bytes::Bytes),
}

impl Serialize for StreamedTables<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut tables = s.serialize_seq(Some(REPLICATED_TABLES.len()))?;
        for name in REPLICATED_TABLES {
            let count: i64 = self
                .db
                .query_row(&format!("SELECT count(*) FROM {name}"), [], |r| r.get(0))
                .map_err(S::Error::custom)?;
            let mut select = self
                .db
                .prepare(&format!("SELECT * FROM {name} ORDER BY rowid"))
                .map_err(S::Error::custom)?;
            let columns = column_names(&select);
            let width = columns.len();
            let rows = select.query([]).map_err(S::Error::custom)?;
            tables.serialize_element(&StreamedTable {
                name,
                columns,
                rows: StreamedRows {
                    rows: std::cell::RefCell::new(rows),
                    count: usize::try_from(count).map_err(S::Error::custom)?,
                    width,
                    written: self.rows,
                },
            })?;
        }
        tables.end()
    }
}

impl Serialize for StreamedRows<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut rows = self.rows.borrow_mut();
        let mut out = s.serialize_seq(Some(self.count))?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(S::Error::custom)? {
            out.serialize_element(&StreamedRow {
                row,
                width: self.width,
            })?;
            n += 1;
        }
        // One read transaction: the count and the rows agree, or the encoding would be wrong.
        if n != self.count {
            return Err(S::Error::custom(format!(
                "counted {} rows, read {n}",
                self.count
            )));
        }
        self.written.set(self.written.get() + n as u64);
        out.end()
    }
}

impl Serialize for StreamedRow<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use rusqlite::types::ValueRef;
        use serde::ser::{Error, SerializeSeq};
        let mut cells = s.serialize_seq(Some(self.width))?;
        for i in 0..self.width {
            let cell = match self.row.get_ref(i).map_err(S::Error::custom)? {
                ValueRef::Null => CellRef::Null,
                ValueRef::Integer(v) => CellRef::Int(v),
                ValueRef::Real(v) => CellRef::Real(v),
                ValueRef::Text(t) => {
                    CellRef::Text(std::str::from_utf8(t).map_err(S::Error::custom)?)
                }
                ValueRef::Blob(b) => CellRef::Blob(serde_bytes::Bytes::new(b)),
            };
            cells.serialize_element(&cell)?;
        }
        cells.end()
    }
}

/// The replicated tables and the position as values: what [`encode_file`] writes out as it
/// reads, for the test that the two agree byte for byte.
#[cfg(test)]
fn dump_file(path: &std::path::Path) -> rusqlite::Result<SnapshotPayload> {
    use rusqlite::types::ValueRef;
    let db = open_for_dump(path)?;
    let (last_applied, membership) = read_position(&db)?;
    let mut tables = Vec::with_capacity(REPLICATED_TABLES.len());
    for name in REPLICATED_TABLES {
        let mut select = db.prepare(&format!("SELECT * FROM {name} ORDER BY rowid"))?;
        let columns = column_names(&select);
        let width = columns.len();
        let mut rows = select.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut cells = Vec::with_capacity(width);
            for i in 0..width {
                cells.push(match row.get_ref(i)? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Real(v),
                    ValueRef::Text(t) => Cell::Text(
                        std::str::from_utf8(t)
                            .map_err(rusqlite::Error::Utf8Error)?
                            .to_owned(),
                    ),
                    ValueRef::Blob(b) => Cell::Blob(serde_bytes::ByteBuf::from(b.to_vec())),
                });
            }
            out.push(cells);
        }
        tables.push(TableDump {
            name: (*name).to_owned(),
            columns,
            rows: out,
        });
    }
    db.execute_batch("COMMIT")?;
    Ok(SnapshotPayload {
        format: SNAPSHOT_FORMAT,
        last_applied,
        membership,
        tables,
    })
}

/// Dumps the catalog at `path`, encodes it and stores it in `file`, in the calling (blocking)
/// thread.
fn build_file(path: &std::path::Path, file: &SnapshotFile) -> Result<Built, StorageError> {
    let started = Instant::now();
    let Encoded {
        last_applied,
        membership,
        data,
        rows,
    } = encode_file(path).map_err(|e| sm_read(&e))?;
    let encoded = started.elapsed();
    let snapshot_id = match last_applied {
        Some(id) => format!("{}-{}-{}", id.leader_id.term, id.index, data.len()),
        None => format!("empty-{}", data.len()),
    };
    let meta = SnapshotMeta {
        last_log_id: last_applied,
        last_membership: membership,
        snapshot_id,
    };
    let stored = file.store(&meta, &data).map_err(|e| snap_err(&e))?;
    tracing::info!(
        snapshot = %meta.snapshot_id,
        rows,
        bytes = data.len(),
        stored,
        encode_ms = encoded.as_millis(),
        store_ms = (started.elapsed() - encoded).as_millis(),
        "snapshot built"
    );
    Ok(Built { meta, data, stored })
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let Built { meta, data, stored } = self.build().await?;
        if !stored {
            // The newer one stays current; openraft gets that one back.
            if let Some(current) = self.get_current_snapshot().await? {
                return Ok(current);
            }
        }
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let started = Instant::now();
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut writer = self.db.sm_writer.lock().await.map_err(|e| sm_write(&e))?;
        let chain = match self.chain.take() {
            Some(c) => c,
            None => audit::Chain::load(writer.conn())
                .await
                .map_err(|e| sm_write(&e))?,
        };
        let mut batch = Applying {
            chain,
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            membership_changed: false,
            tokens_changed: false,
            revocations_changed: false,
            outbox_changed: false,
            responses: Vec::with_capacity(entries.len()),
        };
        let written = if only_submissions(&entries) {
            // The common case under load: the whole transaction in one hand-off.
            writer
                .raw(|db| {
                    in_transaction(db, || {
                        entries
                            .iter()
                            .try_for_each(|entry| {
                                if let Some(commands) = batch.enter(entry) {
                                    let index = entry.log_id.index;
                                    let r = submit_run(db, &mut batch.chain, index, commands)?;
                                    batch.responses.push(r);
                                }
                                Ok(())
                            })
                            .and_then(|()| batch.finish(db))
                    })
                })
                .await
        } else {
            // sqlx's own transaction here: dropped on an error, a panic or a cancelled future,
            // it rolls back before the connection is used again. (The fast path above awaits
            // nothing between its BEGIN and its COMMIT or ROLLBACK.)
            let (conn, view) = writer.split();
            async {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                for entry in &entries {
                    if let Some(commands) = batch.enter(entry) {
                        let index = entry.log_id.index;
                        let r = apply_batch(
                            &mut tx,
                            view,
                            &mut batch.chain,
                            &self.zone,
                            index,
                            commands,
                        )
                        .await?;
                        batch.responses.push(r);
                    }
                }
                with_view(&mut tx, view, |db| batch.finish(db)).await?;
                tx.commit().await
            }
            .await
        };
        // On failure the chain stays unset: the next batch reads it back from the table.
        written.map_err(|e| sm_write(&e))?;
        let Applying {
            chain,
            last_applied,
            membership,
            tokens_changed,
            revocations_changed,
            outbox_changed,
            responses,
            ..
        } = batch;
        drop(writer);
        self.set_applied(last_applied);
        self.membership = membership;
        self.chain = Some(chain);
        if tokens_changed {
            self.signals.tokens.fetch_add(1, Ordering::Release);
        }
        if revocations_changed {
            self.signals.revocations.fetch_add(1, Ordering::Release);
        }
        if outbox_changed {
            self.signals.outbox.notify_one();
        }
        if let Some(observer) = &self.observer {
            (observer.0)(started.elapsed(), responses.iter().map(Vec::len).sum());
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.restore(meta, snapshot.into_inner(), Store::Store)
            .await
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let file = self.db.snapshot.clone();
        let stored = match blocking(move || file.read()).await {
            Ok(stored) => stored,
            // A damaged file is no snapshot: a new one is built in its place (a leader asks
            // for the current snapshot to send it, and would stop on an error).
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "the stored snapshot is damaged; building a new one");
                let Built { meta, data, .. } = self.build().await?;
                return Ok(Some(Snapshot {
                    meta,
                    snapshot: Box::new(Cursor::new(data)),
                }));
            }
            Err(e) => return Err(snap_read(&e)),
        };
        let Some((meta, data)) = stored else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use xchg_federation_config::Role;
    use xchg_protocol::{Listing, Timestamp};

    use super::*;
    use crate::catalog::{Actor, Batch, Refusal, Review};

    fn submission(title: &str) -> (Listing, CatalogCommand) {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = title.into();
        let listing = Listing::first_version(
            draft,
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(1_000),
        );
        let cmd = CatalogCommand::SubmitListing {
            listing: Box::new(listing.clone()),
            actor: Actor {
                id: "p1".into(),
                role: Role::Provider,
            },
        };
        (listing, cmd)
    }

    /// A submission sent with an `Idempotency-Key` at `at` (ms), its listing created then.
    fn keyed_submission(key: &str, request: u8, at: u64) -> CatalogCommand {
        let mut draft = xchg_protocol::vectors::credit_draft();
        draft.title = "许昌禹州信用核验接口 (idempotent)".into();
        let listing = Listing::first_version(
            draft,
            "xuchang/yuzhou".parse().expect("zone"),
            Timestamp(at),
        );
        CatalogCommand::Idempotent(Box::new(crate::catalog::Idempotent {
            key: key.into(),
            request: vec![request; 32],
            at: Timestamp(at),
            command: CatalogCommand::SubmitListing {
                listing: Box::new(listing),
                actor: Actor {
                    id: "p1".into(),
                    role: Role::Provider,
                },
            },
        }))
    }

    /// Issue #12: submitting the same body twice created two listings (the id includes the
    /// time), so a retry after `outcome_unknown` duplicated.
    #[tokio::test]
    async fn a_keyed_write_applies_once_per_key_until_the_key_expires() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut sm) = super::super::open_pair(dir.path()).await.expect("open");
        let hour = 60 * 60 * 1000;
        let first = sm
            .apply(vec![entry(1, vec![keyed_submission("k-1", 1, hour)])])
            .await
            .expect("apply");
        let first = first[0][0].clone().expect("submitted");
        // The retry, an hour later, with the same request: the first answer, nothing new.
        let retry = sm
            .apply(vec![entry(2, vec![keyed_submission("k-1", 1, 2 * hour)])])
            .await
            .expect("apply");
        assert_eq!(retry[0][0], Ok(first.clone()));
        let listings: i64 = sqlx::query_scalar("SELECT count(*) FROM listings")
            .fetch_one(&sm.db.read)
            .await
            .expect("count");
        assert_eq!(listings, 1);
        // Another request under the same key is refused.
        let reused = sm
            .apply(vec![entry(3, vec![keyed_submission("k-1", 2, 3 * hour)])])
            .await
            .expect("apply");
        assert_eq!(
            reused[0][0].as_ref().map_err(Refusal::code),
            Err("idempotency_key_reused")
        );
        // A day after its first use the key is forgotten: the same request applies anew.
        let later = sm
            .apply(vec![entry(4, vec![keyed_submission("k-1", 1, 26 * hour)])])
            .await
            .expect("apply");
        let later = later[0][0].clone().expect("submitted again");
        assert_ne!(later.object_id, first.object_id);
        let audit: Vec<String> = sqlx::query_scalar("SELECT result FROM audit ORDER BY seq")
            .fetch_all(&sm.db.read)
            .await
            .expect("audit");
        assert_eq!(audit.len(), 4, "{audit:?}");
        assert!(audit[1].starts_with("replayed"), "{audit:?}");
    }

    /// A state machine in `dir` with one listing applied, and its snapshot.
    async fn one_listing_and_a_snapshot(
        dir: &std::path::Path,
    ) -> (StateMachine, Snapshot<TypeConfig>) {
        let (_, mut sm) = super::super::open_pair(dir).await.expect("open");
        let (_, submit) = submission("许昌禹州信用核验接口甲");
        sm.apply(vec![entry(1, vec![submit])]).await.expect("apply");
        let snapshot = sm.build_snapshot().await.expect("snapshot");
        (sm, snapshot)
    }

    /// An operator's approval of `listing`.
    fn approval(listing: &Listing) -> CatalogCommand {
        CatalogCommand::ApproveListing {
            listing_id: listing.id(),
            review: Review::default(),
            at: Timestamp(2_000),
            actor: Actor {
                id: "op".into(),
                role: Role::Operator,
            },
        }
    }

    fn entry(index: u64, commands: Vec<CatalogCommand>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(Batch(commands)),
        }
    }

    /// The entries of the log fixture: one of each common kind of command.
    fn fixture_entries() -> Vec<Entry> {
        let (listing, submit) = submission("许昌禹州信用核验接口 (log format fixture)");
        let keyed = keyed_submission("fixture-key", 7, 3_000);
        let delist = CatalogCommand::DelistListing {
            listing_id: listing.id(),
            reason: "fixture".into(),
            at: Timestamp(4_000),
            actor: Actor {
                id: "op".into(),
                role: Role::Operator,
            },
        };
        let token = CatalogCommand::CreateToken {
            token_hash: "ab".repeat(32),
            role: Role::Buyer,
            party: None,
            label: "fixture buyer".into(),
            at: Timestamp(5_000),
            actor: Actor {
                id: "admin".into(),
                role: Role::Admin,
            },
        };
        vec![
            entry(1, vec![submit]),
            entry(2, vec![approval(&listing), keyed]),
            entry(3, vec![delist, token]),
        ]
    }

    /// Log entries written in format 0 (before batches carried a version) by the release
    /// before it, kept as hex, one entry per line: [`fixture_entries`] as that release wrote
    /// them. Never regenerate it; a later format change adds a fixture of its own.
    const LOG_FIXTURE_V0: &str = include_str!("fixtures/log_entries_v0.hex");

    /// Issue #13: a log written by the previous release must still be replayed, and renaming a
    /// command variant must not break that.
    #[tokio::test]
    async fn entries_written_in_the_previous_log_format_are_still_applied() {
        let old: Vec<Entry> = LOG_FIXTURE_V0
            .lines()
            .map(|line| from_cbor(&hex::decode(line).expect("hex")).expect("a format 0 entry"))
            .collect();
        assert_eq!(
            old,
            fixture_entries(),
            "the fixture decodes to what was written"
        );
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut sm) = super::super::open_pair(dir.path()).await.expect("open");
        let answers = sm.apply(old).await.expect("apply");
        let all: Vec<&crate::catalog::CommandResponse> = answers.iter().flatten().collect();
        assert_eq!(all.len(), 5);
        assert!(all.iter().all(|a| a.is_ok()), "{all:?}");
        let states: Vec<String> = sqlx::query_scalar("SELECT state FROM listings ORDER BY state")
            .fetch_all(&sm.db.read)
            .await
            .expect("states");
        assert_eq!(states, ["delisted", "submitted"]);
        let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM tokens")
            .fetch_one(&sm.db.read)
            .await
            .expect("tokens");
        assert_eq!(tokens, 1);
    }

    #[test]
    fn new_entries_are_written_in_the_current_format() {
        let entry = &fixture_entries()[0];
        let old_line = LOG_FIXTURE_V0.lines().next().expect("a line");
        let now = hex::encode(to_cbor(entry).expect("cbor"));
        assert_ne!(now, old_line, "the current format differs from format 0");
        let back: Entry = from_cbor(&to_cbor(entry).expect("cbor")).expect("decode");
        assert_eq!(&back, entry);
    }

    /// How many listings the search index finds for `text` (a substring, as the API's `q`).
    async fn found(sm: &StateMachine, text: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM listings_fts WHERE listings_fts MATCH ?")
            .bind(format!("\"{text}\""))
            .fetch_one(&sm.db.read)
            .await
            .expect("search")
    }

    /// A snapshot from the leader is stored before the tables are replaced. After a crash in
    /// between, the next start restores the catalog from the stored file.
    #[tokio::test]
    async fn a_catalog_behind_its_stored_snapshot_is_restored_from_it_at_start() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (sm, snapshot) = one_listing_and_a_snapshot(dirs[0].path()).await;
        sm.db.close().await;

        // The crash: the file is stored, the tables are not replaced.
        let db = Db::open(dirs[1].path()).await.expect("open");
        assert!(
            db.snapshot
                .store(&snapshot.meta, snapshot.snapshot.get_ref())
                .expect("store")
        );
        db.close().await;

        let (_, restarted) = super::super::open_pair(dirs[1].path())
            .await
            .expect("reopen");
        let (applied, _) = restarted.clone().applied_state().await.expect("state");
        assert_eq!(applied, snapshot.meta.last_log_id);
        assert_eq!(*restarted.db.applied.borrow(), 1);
        assert_eq!(found(&restarted, "禹州信用核验").await, 1);
        restarted.db.close().await;
    }

    /// A leader asks for its current snapshot to send it: a damaged file is replaced by a new
    /// snapshot rather than failing the request (which would stop Raft).
    #[tokio::test]
    async fn a_damaged_snapshot_file_is_rebuilt_when_the_snapshot_is_asked_for() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut sm, built) = one_listing_and_a_snapshot(dir.path()).await;
        let path = dir.path().join(crate::store::snapshot_file::SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).expect("file");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");

        let current = sm
            .get_current_snapshot()
            .await
            .expect("no error")
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id, built.meta.last_log_id);
        assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
        let (meta, data) = sm
            .db
            .snapshot
            .read()
            .expect("readable again")
            .expect("stored");
        assert_eq!(meta.last_log_id, built.meta.last_log_id);
        assert_eq!(&data, built.snapshot.get_ref());
        sm.db.close().await;
    }

    /// The snapshot encoded while the rows are read is, byte for byte, the encoding of the
    /// tables read whole: cells of every kind (text, integer, real, blob, null).
    #[tokio::test]
    async fn a_snapshot_encoded_as_it_is_read_is_the_encoding_of_the_tables_read_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut sm) = super::super::open_pair(dir.path()).await.expect("open");
        let (a, submit_a) = submission("许昌禹州信用核验接口甲");
        let (_, submit_b) = submission("长葛市交通流量数据乙");
        let approve_a = approval(&a);
        sm.apply(vec![
            entry(1, vec![submit_a, submit_b]),
            entry(2, vec![approve_a]),
        ])
        .await
        .expect("apply");
        // A real and a blob, which the catalog's own rows do not hold (a throw-away copy).
        let path = sm.db.catalog_path.clone();
        let raw = rusqlite::Connection::open(&path).expect("open catalog");
        raw.busy_timeout(std::time::Duration::from_secs(10))
            .expect("busy timeout");
        raw.execute_batch(
            "UPDATE listings SET version = 1.5 WHERE rowid = (SELECT min(rowid) FROM listings);
             UPDATE listing_history SET detail = x'00ff10' \
             WHERE rowid = (SELECT min(rowid) FROM listing_history);",
        )
        .expect("update");
        drop(raw);

        let whole = to_cbor(&dump_file(&path).expect("dump")).expect("encode");
        let streamed = encode_file(&path).expect("encode as read");
        assert_eq!(streamed.data, whole);
        assert!(streamed.rows > 0);
        assert_eq!(streamed.last_applied.map(|id| id.index), Some(2));
        let kinds: std::collections::BTreeSet<&str> = from_cbor::<SnapshotPayload>(&whole)
            .expect("decode")
            .tables
            .iter()
            .flat_map(|t| t.rows.iter().flatten())
            .map(|c| match c {
                Cell::Null => "null",
                Cell::Int(_) => "int",
                Cell::Real(_) => "real",
                Cell::Text(_) => "text",
                Cell::Blob(_) => "blob",
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        sm.db.close().await;
    }

    #[tokio::test]
    async fn listings_of_every_batch_kind_are_searchable_and_stay_so_through_a_snapshot() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (_, mut sm) = super::super::open_pair(dirs[0].path()).await.expect("open");
        let (a, submit_a) = submission("许昌禹州信用核验接口甲");
        let (_, submit_b) = submission("许昌禹州信用核验接口乙");
        let (_, submit_c) = submission("长葛市交通流量数据丙");
        let approve_a = approval(&a);
        // A batch of submissions only (written in one hand-off), then a mixed one.
        let responses = sm
            .apply(vec![
                entry(1, vec![submit_a.clone(), submit_b]),
                entry(2, vec![approve_a, submit_c, submit_a]),
            ])
            .await
            .expect("apply");
        let ok: Vec<Vec<bool>> = responses
            .iter()
            .map(|b| b.iter().map(Result::is_ok).collect())
            .collect();
        assert_eq!(ok, [vec![true, true], vec![true, true, true]]);
        assert_eq!(found(&sm, "禹州信用核验").await, 2);
        assert_eq!(found(&sm, "交通流量").await, 1);

        // A new member restored from a snapshot finds the same.
        let snapshot = sm.build_snapshot().await.expect("snapshot");
        let (_, mut fresh) = super::super::open_pair(dirs[1].path()).await.expect("open");
        fresh
            .install_snapshot(&snapshot.meta, snapshot.snapshot.clone())
            .await
            .expect("install");
        assert_eq!(found(&fresh, "禹州信用核验").await, 2);
        assert_eq!(found(&fresh, "交通流量").await, 1);
        let (applied, _) = fresh.applied_state().await.expect("state");
        assert_eq!(applied.map(|id| id.index), Some(2));
        // Both keep it as their current snapshot, in their snapshot files.
        for node in [&mut sm, &mut fresh] {
            let current = node
                .get_current_snapshot()
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(current.meta, snapshot.meta);
            assert_eq!(current.snapshot.get_ref(), snapshot.snapshot.get_ref());
        }

        // The snapshot a zone still holds right after upgrading to schema v4 is format 1, whose
        // history rows have no listing_seq: restored, they hang off the right listings.
        let mut payload: SnapshotPayload = from_cbor(snapshot.snapshot.get_ref()).expect("payload");
        payload.format = 1;
        let history = payload
            .tables
            .iter_mut()
            .find(|t| t.name == "listing_history")
            .expect("history dump");
        let at = history
            .columns
            .iter()
            .position(|c| c == "listing_seq")
            .expect("listing_seq");
        history.columns.remove(at);
        for row in &mut history.rows {
            row.remove(at);
        }
        let old = to_cbor(&payload).expect("encode");
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut upgraded) = super::super::open_pair(dir.path()).await.expect("open");
        upgraded
            .install_snapshot(&snapshot.meta, Box::new(Cursor::new(old)))
            .await
            .expect("install format 1");
        let linked: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT h.listing_seq, l.seq FROM listing_history h JOIN listings l ON l.id = h.listing_id",
        )
        .fetch_all(&upgraded.db.read)
        .await
        .expect("history");
        assert_eq!(
            linked.len(),
            4,
            "two submissions, the approval, the third submission"
        );
        assert!(linked.iter().all(|(h, l)| h == l), "{linked:?}");
        assert_eq!(found(&upgraded, "禹州信用核验").await, 2);
        sm.db.close().await;
        fresh.db.close().await;
        upgraded.db.close().await;
    }
}
