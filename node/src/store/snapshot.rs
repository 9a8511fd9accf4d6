//! Snapshots of the catalog: the dump of the replicated tables into one CBOR payload, and its
//! restore. The dump and the restore are generic over the tables (rows of cells), so a new
//! table only needs adding to [`REPLICATED_TABLES`]; this is the one place that writes SQL
//! naming any table of that list, and only through that list.
//!
//! A snapshot is dumped on a read-only connection of its own, in a thread of its own at the
//! lowest priority (see [`build_file`]), and restored on the catalog's writer in one
//! transaction ([`restore`]).

use std::time::Instant;

use openraft::{AnyError, StorageIOError};
use serde::{Deserialize, Serialize};

use super::raft_types::{LogId, SnapshotMeta, StorageError, StoredMembership};
use super::sm_meta;
use super::snapshot_file::SnapshotFile;
use crate::catalog::tables::REPLICATED_TABLES;

/// A value of one SQLite cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(serde_bytes::ByteBuf),
}

/// One table's rows.
#[cfg(test)]
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct TableDump {
    pub(super) name: String,
    pub(super) columns: Vec<String>,
    pub(super) rows: Vec<Vec<Cell>>,
}

/// What a snapshot holds: the position, the membership and the replicated tables. Restored
/// as it is read ([`restore`]); as a value only in tests.
#[cfg(test)]
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SnapshotPayload {
    pub(super) format: u32,
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: StoredMembership,
    pub(super) tables: Vec<TableDump>,
}

/// The format written. 2 since catalog schema v4: `listing_history` rows carry `listing_seq`.
/// A node before v4 refuses these by number; this node still restores format 1 (the
/// snapshot a zone holds right after upgrading), deriving the column, see [`insert_sql`].
/// 3 since catalog schema v22: listings rows no longer carry copies of their text, which a
/// node before v22 requires; this node restores formats 1 and 2 without them.
/// 4 since catalog schema v23: listings bodies may be packed (`catalog::tables::packed`),
/// which a node before v23 would take for canonical bytes; the columns v23 dropped (a
/// listing's content id, delivery modes and times, a history entry's listing id) are left out
/// when an older format is restored, and its plain bodies are read as they are.
const SNAPSHOT_FORMAT: u32 = 4;
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

/// The INSERT for one row of table `name` with values for `columns`, in order. With
/// `listing_seq_by_id`, one more value follows them: a listing id, whose listing's `seq` is the
/// row's `listing_seq` (history rows of a format-1 snapshot have none; the listings are
/// restored before the history).
fn insert_sql(name: &str, columns: &[String], listing_seq_by_id: bool) -> String {
    let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    if listing_seq_by_id {
        format!(
            "INSERT INTO {name} (listing_seq, {}) \
             VALUES ((SELECT seq FROM listings WHERE id = ?{}), {})",
            columns.join(", "),
            columns.len() + 1,
            marks.join(", ")
        )
    } else {
        format!(
            "INSERT INTO {name} ({}) VALUES ({})",
            columns.join(", "),
            marks.join(", ")
        )
    }
}

fn sm_read(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_state_machine(AnyError::new(e)).into()
}

fn snap_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

/// Refuses a payload format this node does not read.
fn readable_format(format: u32) -> std::io::Result<()> {
    if (FIRST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&format) {
        return Ok(());
    }
    Err(std::io::Error::other(format!(
        "snapshot format {format} is not one this node reads ({FIRST_SNAPSHOT_FORMAT} to \
         {SNAPSHOT_FORMAT}); it was made by a newer xchg"
    )))
}

/// What [`check_streamed`] found in a snapshot's data.
pub(super) struct Checked {
    /// The position it was taken at.
    pub(super) last_applied: Option<LogId>,
    /// The zone's membership then.
    pub(super) membership: StoredMembership,
    /// Rows of every table it holds.
    pub(super) rows: u64,
}

/// Decodes a snapshot's data from `data` as [`restore`] does, with the same rules (the format
/// first, a table's name and columns before its rows, every row as wide as its columns), one
/// row at a time and without keeping any: a check that it is whole and of a format this node
/// reads, in memory for one row, whatever the size of the catalog.
///
/// # Errors
/// The data does not decode, breaks one of those rules, or is of a newer format.
pub(super) fn check_streamed(data: &mut dyn std::io::BufRead) -> std::io::Result<Checked> {
    use serde::de::DeserializeSeed as _;
    let rows = std::cell::Cell::new(0u64);
    let failed = std::cell::RefCell::new(None);
    let mut de = cbor4ii::serde::Deserializer::new(cbor4ii::core::utils::IoReader::new(data));
    let head = PayloadSeed {
        db: None,
        rows: &rows,
        failed: &failed,
    }
    .deserialize(&mut de)
    .map_err(|e| std::io::Error::other(format!("snapshot data: {e}")))?;
    Ok(Checked {
        last_applied: head.last_applied,
        membership: head.membership,
        rows: rows.get(),
    })
}

/// Replaces the replicated tables with those of the snapshot data `data` (a [`SnapshotPayload`]
/// in CBOR) and records `meta`'s position, inside the caller's transaction on the catalog's
/// writer. The data is read and inserted one row at a time, never held whole: memory does not
/// grow with the catalog. Returns the rows inserted.
///
/// # Errors
/// SQLite's error, or the data does not decode or is of a format this node does not read
/// (the caller's transaction then rolls back whatever was inserted).
pub(super) fn restore(
    db: &rusqlite::Connection,
    data: &mut dyn std::io::BufRead,
    meta: &SnapshotMeta,
) -> rusqlite::Result<u64> {
    use serde::de::DeserializeSeed as _;
    for name in REPLICATED_TABLES.iter().rev() {
        db.execute(&format!("DELETE FROM {name}"), [])?;
    }
    let failed = std::cell::RefCell::new(None);
    let rows = std::cell::Cell::new(0u64);
    let mut de = cbor4ii::serde::Deserializer::new(cbor4ii::core::utils::IoReader::new(data));
    let decoded = PayloadSeed {
        db: Some(db),
        rows: &rows,
        failed: &failed,
    }
    .deserialize(&mut de);
    if let Some(e) = failed.into_inner() {
        return Err(e);
    }
    decoded.map_err(|e| crate::sqlite::undecodable(format!("snapshot data: {e}")))?;
    crate::catalog::tables::listings::new_clock_epoch(db)?;
    crate::catalog::tables::certificate_feed::rebuild(db)?;
    crate::catalog::tables::demands_across::rebuild_feed(db)?;
    crate::audit::rebuild_tree(db)?;
    sm_meta::set_position(db, &meta.last_log_id, Some(&meta.last_membership))?;
    Ok(rows.get())
}

/// What the visitors of [`restore`] and [`check_streamed`] share: the writer (none for a
/// check, which inserts nothing), the rows gone through so far, and the first SQLite error met
/// (a decoding error can only carry text; this keeps the error itself).
#[derive(Clone, Copy)]
struct PayloadSeed<'a> {
    db: Option<&'a rusqlite::Connection>,
    rows: &'a std::cell::Cell<u64>,
    failed: &'a std::cell::RefCell<Option<rusqlite::Error>>,
}

impl PayloadSeed<'_> {
    /// `e` kept for [`restore`], and an error that stops the decoding.
    fn fail<E: serde::de::Error>(self, e: rusqlite::Error) -> E {
        let said = E::custom(&e);
        self.failed.borrow_mut().get_or_insert(e);
        said
    }
}

const PAYLOAD_FIELDS: &[&str] = &["format", "last_applied", "membership", "tables"];
const TABLE_FIELDS: &[&str] = &["name", "columns", "rows"];

/// A payload's fields other than its tables.
struct PayloadHead {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl<'de> serde::de::DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = PayloadHead;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<PayloadHead, D::Error> {
        d.deserialize_struct("SnapshotPayload", PAYLOAD_FIELDS, self)
    }
}

impl<'de> serde::de::Visitor<'de> for PayloadSeed<'_> {
    type Value = PayloadHead;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a snapshot payload")
    }

    /// The fields in the order they are written: the format is known before any table.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PayloadHead, A::Error> {
        use serde::de::Error;
        let (mut format, mut last_applied, mut membership, mut tables) = (None, None, None, false);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    let f: u32 = map.next_value()?;
                    readable_format(f).map_err(A::Error::custom)?;
                    format = Some(f);
                }
                "last_applied" => last_applied = map.next_value()?,
                "membership" => membership = Some(map.next_value()?),
                "tables" if format.is_none() => {
                    return Err(A::Error::custom("the tables come before the format"));
                }
                "tables" => {
                    map.next_value_seed(TablesSeed(self))?;
                    tables = true;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        format.ok_or_else(|| A::Error::missing_field("format"))?;
        if !tables {
            return Err(A::Error::missing_field("tables"));
        }
        Ok(PayloadHead {
            last_applied,
            membership: membership.ok_or_else(|| A::Error::missing_field("membership"))?,
        })
    }
}

/// The payload's tables, each inserted as it is read.
struct TablesSeed<'a>(PayloadSeed<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for TablesSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for TablesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence of tables")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(TableSeed(self.0))?.is_some() {}
        Ok(())
    }
}

/// One table: its name and columns, then its rows, inserted as they are read.
struct TableSeed<'a>(PayloadSeed<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for TableSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("TableDump", TABLE_FIELDS, self)
    }
}

impl<'de> serde::de::Visitor<'de> for TableSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a table")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let (mut name, mut columns) = (None::<String>, None::<Vec<String>>);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "name" => name = Some(map.next_value()?),
                "columns" => columns = Some(map.next_value()?),
                "rows" => {
                    let (Some(name), Some(columns)) = (&name, &columns) else {
                        return Err(A::Error::custom("a table's rows come before its name"));
                    };
                    // A table this node does not replicate (it was dropped) is skipped.
                    if !REPLICATED_TABLES.contains(&name.as_str()) {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    }
                    map.next_value_seed(RowsSeed {
                        seed: self.0,
                        insert: None,
                        table: name,
                        columns,
                    })?;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The INSERT of one table's rows, and which of a row's cells go into it.
struct TableInsert<'c> {
    statement: rusqlite::CachedStatement<'c>,
    /// The cells kept, by position in the row: those of the columns this schema still has
    /// (columns a later schema dropped are left out: see [`SNAPSHOT_FORMAT`]), then, for
    /// history rows of a format-1 snapshot, the listing id its `listing_seq` is found by.
    cells: Vec<usize>,
}

impl<'c> TableInsert<'c> {
    fn prepare(
        db: &'c rusqlite::Connection,
        name: &str,
        columns: &[String],
    ) -> rusqlite::Result<Self> {
        let held: Vec<String> = db
            .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let kept: Vec<usize> = (0..columns.len())
            .filter(|&i| held.contains(&columns[i]))
            .collect();
        let names: Vec<String> = kept.iter().map(|&i| columns[i].clone()).collect();
        let listing_id = (name == "listing_history" && !columns.iter().any(|c| c == "listing_seq"))
            .then(|| columns.iter().position(|c| c == "listing_id"))
            .flatten();
        let statement = db.prepare_cached(&insert_sql(name, &names, listing_id.is_some()))?;
        Ok(TableInsert {
            statement,
            cells: kept.into_iter().chain(listing_id).collect(),
        })
    }
}

/// A table's rows, each checked as wide as the table's columns, inserted (unless checking) as
/// it is decoded, and then dropped.
struct RowsSeed<'a> {
    seed: PayloadSeed<'a>,
    /// Prepared at the first row (a table without rows is not looked at).
    insert: Option<TableInsert<'a>>,
    table: &'a str,
    columns: &'a [String],
}

impl<'de> serde::de::DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the rows of table {}", self.table)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        while let Some(row) = seq.next_element::<Vec<Cell>>()? {
            if row.len() != self.columns.len() {
                return Err(A::Error::custom(format!(
                    "a row of table {} has {} cells for its {} columns",
                    self.table,
                    row.len(),
                    self.columns.len()
                )));
            }
            if let Some(db) = self.seed.db {
                if self.insert.is_none() {
                    let prepared = TableInsert::prepare(db, self.table, self.columns)
                        .map_err(|e| self.seed.fail::<A::Error>(e))?;
                    self.insert = Some(prepared);
                }
                if let Some(insert) = &mut self.insert {
                    insert
                        .statement
                        .execute(rusqlite::params_from_iter(
                            insert.cells.iter().map(|&i| &row[i]),
                        ))
                        .map_err(|e| self.seed.fail::<A::Error>(e))?;
                }
            }
            self.seed.rows.set(self.seed.rows.get() + 1);
        }
        Ok(())
    }
}

/// How often a long snapshot install logs how far it has come.
pub(super) const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Reports of a long piece of work, at most one per period.
pub(super) struct Progress {
    every: std::time::Duration,
    last: Instant,
}

impl Progress {
    pub(super) fn new(every: std::time::Duration) -> Self {
        Progress {
            every,
            last: Instant::now(),
        }
    }

    /// Whether a report is due now; if so, the next one is a period away.
    pub(super) fn due(&mut self) -> bool {
        if self.last.elapsed() < self.every {
            return false;
        }
        self.last = Instant::now();
        true
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19) short of idle scheduling; best
/// effort (an error leaves it as it was). Linux gives each thread an id of its own, which
/// `setpriority` takes in place of a process id.
pub(super) fn lower_this_threads_priority() {
    let this_thread = rustix::thread::gettid();
    if rustix::process::setpriority_process(Some(this_thread), 19).is_err() {
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

/// A snapshot encoded straight from the catalog's rows ([`encode_file`]).
#[cfg(test)]
pub(super) struct Encoded {
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: StoredMembership,
    pub(super) data: Vec<u8>,
    pub(super) rows: u64,
}

/// Reads the replicated tables and the position of the catalog at `path` in one read
/// transaction ([`open_for_dump`]) and encodes them as a [`SnapshotPayload`] as they are read,
/// in the calling (blocking) thread: each cell goes from SQLite's row into the CBOR output
/// without a copy of the table in between (measured: the copy took about twice the encoded
/// size in extra memory, 449 against 231 MiB peak for a 115 MB snapshot, and a quarter of the
/// time). Only tests keep the result in memory; nodes spool it ([`build_file`]).
#[cfg(test)]
pub(super) fn encode_file(path: &std::path::Path) -> std::io::Result<Encoded> {
    let mut data = Vec::new();
    let dumped = encode_file_into(path, &mut data)?;
    Ok(Encoded {
        last_applied: dumped.last_applied,
        membership: dumped.membership,
        data,
        rows: dumped.rows,
    })
}

/// What [`encode_file_into`] wrote out.
pub(super) struct Dumped {
    pub(super) last_applied: Option<LogId>,
    pub(super) membership: StoredMembership,
    pub(super) rows: u64,
}

/// As [`encode_file`], written into `out` as it is encoded instead of kept (a backup spooled to
/// a file).
pub(super) fn encode_file_into(
    path: &std::path::Path,
    out: &mut dyn std::io::Write,
) -> std::io::Result<Dumped> {
    let db = open_for_dump(path).map_err(std::io::Error::other)?;
    let (last_applied, membership) = sm_meta::position(&db).map_err(std::io::Error::other)?;
    let rows = std::cell::Cell::new(0);
    cbor4ii::serde::to_writer(
        out,
        &StreamedPayload {
            format: SNAPSHOT_FORMAT,
            last_applied,
            membership: &membership,
            tables: StreamedTables {
                db: &db,
                rows: &rows,
            },
        },
    )
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    db.execute_batch("COMMIT").map_err(std::io::Error::other)?;
    Ok(Dumped {
        last_applied,
        membership,
        rows: rows.get(),
    })
}

/// As [`encode_file_into`], written to an unnamed temporary file in `dir` (it goes when it is
/// closed, or with the process): what was dumped, the file (positioned at its end) and the
/// length of what it holds. Memory does not grow with the catalog. Blocking.
///
/// # Errors
/// The catalog cannot be read, or the file cannot be written (a full disk).
pub(super) fn encode_file_spooled(
    path: &std::path::Path,
    dir: &std::path::Path,
) -> std::io::Result<(Dumped, std::fs::File, u64)> {
    use std::io::{Seek as _, Write as _};
    let mut spool = tempfile::tempfile_in(dir)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, &mut spool);
    let dumped = encode_file_into(path, &mut out)?;
    out.flush()?;
    drop(out);
    let len = spool.stream_position()?;
    Ok((dumped, spool, len))
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
pub(super) fn dump_file(path: &std::path::Path) -> rusqlite::Result<SnapshotPayload> {
    use rusqlite::types::ValueRef;
    let db = open_for_dump(path)?;
    let (last_applied, membership) = sm_meta::position(&db)?;
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

/// Dumps the catalog at `path`, encodes it into an unnamed file in the snapshot's directory as
/// it is read, and stores that in `file`, in the calling (blocking) thread. Memory does not grow
/// with the catalog.
pub(super) fn build_file(
    path: &std::path::Path,
    file: &SnapshotFile,
) -> Result<SnapshotMeta, StorageError> {
    let started = Instant::now();
    let (dumped, mut spool, data_len) =
        encode_file_spooled(path, file.dir()).map_err(|e| sm_read(&e))?;
    let encoded = started.elapsed();
    let snapshot_id = match dumped.last_applied {
        Some(id) => format!("{}-{}-{data_len}", id.leader_id.term, id.index),
        None => format!("empty-{data_len}"),
    };
    let meta = SnapshotMeta {
        last_log_id: dumped.last_applied,
        last_membership: dumped.membership,
        snapshot_id,
    };
    let stored = file
        .store_from(&meta, &mut spool, 0)
        .map_err(|e| snap_err(&e))?;
    tracing::info!(
        snapshot = %meta.snapshot_id,
        rows = dumped.rows,
        bytes = data_len,
        stored,
        encode_ms = encoded.as_millis(),
        store_ms = (started.elapsed() - encoded).as_millis(),
        "snapshot built"
    );
    Ok(meta)
}

#[cfg(test)]
mod progress_tests {
    use super::Progress;
    use std::time::Duration;

    #[test]
    fn a_long_install_reports_once_per_period() {
        let mut always = Progress::new(Duration::ZERO);
        assert!(always.due() && always.due());
        let mut hourly = Progress::new(Duration::from_secs(3_600));
        assert!((0..1_000).all(|_| !hourly.due()));
    }
}
