//! The catalog state machine in SQLite (openraft `RaftStateMachine`).
//!
//! A batch of entries is applied in one transaction on the catalog's writer together with the
//! new last-applied log id, so the tables and the recorded position never disagree. Snapshots
//! (the dump of the replicated tables, and its restore) are in [`super::snapshot`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};

use super::raft_types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use super::snapshot;
use super::snapshot_bytes::SnapshotBytes;
use super::{BatchObserver, Db, WriteError, blocking, sm_meta};
use crate::audit;
use crate::catalog::apply::apply_batch;
use crate::catalog::{BatchResponse, CatalogCommand, ZoneFacts};
use crate::sqlite::in_transaction;

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

fn sm_write(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_state_machine(AnyError::new(e)).into()
}

fn snap_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::write_snapshot(None, AnyError::new(e)).into()
}

fn snap_read(e: &(impl std::error::Error + 'static)) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::new(e)).into()
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
        let membership = self.membership_changed.then_some(&self.membership);
        sm_meta::set_position(db, &self.last_applied, membership)
    }
}

impl StateMachine {
    /// Loads the last applied position and membership from the database.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn new(db: Db, zone: ZoneFacts) -> Result<Self, WriteError> {
        let (last_applied, membership) = {
            let writer = db.sm_writer.lock().await?;
            sm_meta::position(&writer)?
        };
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
            let path = sm.db.snapshot.path().to_owned();
            let meta = blocking(move || super::snapshot_file::read_meta(&path))
                .await
                .map_err(io_err)?;
            tracing::info!(
                snapshot = %meta.snapshot_id,
                "the catalog is behind the stored snapshot; restoring it"
            );
            sm.restore(&meta, None).await.map_err(|e| {
                WriteError::StoredSnapshot(format!(
                    "the stored snapshot {} ({}) does not install into the catalog: {e}; \
                     nothing of it was kept. If this data directory was restored from a \
                     backup, the backup is damaged or not of this xchg: stop, empty the \
                     directory and restore another backup (or add the node again as a new \
                     member)",
                    meta.snapshot_id,
                    super::snapshot_file::SNAPSHOT_FILE,
                ))
            })?;
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
    async fn build(&self) -> Result<SnapshotMeta, StorageError> {
        let path = self.db.catalog_path.clone();
        let file = self.db.snapshot.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("xchg-snapshot".into())
            .spawn(move || {
                snapshot::lower_this_threads_priority();
                let _ = done.send(snapshot::build_file(&path, &file));
            })
            .map_err(|e| snap_err(&e))?;
        result
            .await
            .map_err(|e| snap_err(&std::io::Error::other(e)))?
    }

    /// Replaces the replicated tables with the snapshot `meta` describes: the one `received`
    /// holds (a file and where its data starts in it), or else the stored one.
    ///
    /// A snapshot from the leader is checked (it decodes whole, in a format this node reads)
    /// and stored in the snapshot file, in a blocking thread, before the tables are replaced: a
    /// crash in between leaves the stored snapshot ahead of the tables, and
    /// [`StateMachine::new`] restores from it at the next start. (The other order could leave
    /// the tables ahead of a stored snapshot older than the purged log, which this node could
    /// then not serve to a lagging member.) The tables are then filled from the stored file
    /// (from the received one if a newer snapshot was stored meanwhile), one row at a time:
    /// nothing of the snapshot is held whole in memory.
    async fn restore(
        &mut self,
        meta: &SnapshotMeta,
        received: Option<(std::fs::File, u64)>,
    ) -> Result<(), StorageError> {
        let file = self.db.snapshot.clone();
        let stored_meta = meta.clone();
        // The received file, when it is not the stored one.
        let unstored = match received {
            None => None,
            Some((mut data, base)) => tokio::task::spawn_blocking(move || {
                let mut report = logged_progress("checking the snapshot received");
                let mut reader = data_reader(&mut data, base, &mut report)?;
                tracing::info!(
                    snapshot = %stored_meta.snapshot_id,
                    bytes = reader.get_ref().total,
                    "snapshot received; checking and storing it before it is installed"
                );
                snapshot::check_streamed(&mut reader)?;
                drop(reader);
                let stored = file.store_from(&stored_meta, &mut data, base)?;
                Ok::<_, std::io::Error>((!stored).then_some((data, base)))
            })
            .await
            .map_err(|e| snap_err(&std::io::Error::other(e)))?
            .map_err(|e| snap_err(&e))?,
        };
        let path = self.db.snapshot.path().to_owned();
        let writer = self.db.sm_writer.lock().await.map_err(|e| sm_write(&e))?;
        let mut report = logged_progress("installing a snapshot");
        // Every row in one transaction (a snapshot holds every listing of the zone): seconds
        // for a large catalog, so the runtime is told to move its other tasks away.
        let rows = long_blocking(|| {
            in_transaction(&writer, || match unstored {
                Some((mut data, base)) => {
                    let mut reader =
                        data_reader(&mut data, base, &mut report).map_err(undecodable)?;
                    snapshot::restore(&writer, &mut reader, meta)
                }
                None => {
                    // SQLite's own error (a full disk) is kept as it is, not as undecodable
                    // data; a damaged file's error wins, as it is what made SQLite fail.
                    let mut sqlite_error = None;
                    let read = super::snapshot_file::read_streamed(&path, &mut report, |data| {
                        snapshot::restore(&writer, data, meta).map_err(|e| {
                            let said = std::io::Error::other(e.to_string());
                            sqlite_error = Some(e);
                            said
                        })
                    });
                    let read = match (read, sqlite_error) {
                        (Ok(read), _) => read,
                        (Err(e), Some(sqlite)) if e.kind() != std::io::ErrorKind::InvalidData => {
                            return Err(sqlite);
                        }
                        (Err(e), _) => return Err(undecodable(e)),
                    };
                    if read.meta.last_log_id != meta.last_log_id {
                        return Err(undecodable(format!(
                            "the stored snapshot is {}, not {}",
                            read.meta.snapshot_id, meta.snapshot_id
                        )));
                    }
                    Ok(read.value)
                }
            })
        })
        .map_err(|e| sm_write(&e))?;
        drop(writer);
        tracing::info!(snapshot = %meta.snapshot_id, rows, "snapshot installed");
        self.set_applied(meta.last_log_id);
        self.membership = meta.last_membership.clone();
        self.chain = None;
        self.signals.tokens.fetch_add(1, Ordering::Release);
        self.signals.revocations.fetch_add(1, Ordering::Release);
        self.signals.outbox.notify_one();
        Ok(())
    }
}

/// A report of a long piece of work on a snapshot's bytes: `WHAT: N%` in the log, at most every
/// [`snapshot::PROGRESS_EVERY`].
fn logged_progress(what: &'static str) -> impl FnMut(u64, u64) {
    let mut progress = snapshot::Progress::new(snapshot::PROGRESS_EVERY);
    move |done, total| {
        if progress.due() {
            tracing::info!(
                bytes = done,
                of = total,
                "{what}: {}%",
                done * 100 / total.max(1)
            );
        }
    }
}

/// A buffered reader of `data` from `base` to its end, telling `report` how far it has come.
fn data_reader<'a>(
    data: &'a mut std::fs::File,
    base: u64,
    report: &'a mut dyn FnMut(u64, u64),
) -> std::io::Result<std::io::BufReader<Counted<'a, &'a mut std::fs::File>>> {
    use std::io::{Seek as _, SeekFrom};
    let total = data.metadata()?.len().saturating_sub(base);
    data.seek(SeekFrom::Start(base))?;
    Ok(std::io::BufReader::with_capacity(
        1 << 20,
        Counted {
            inner: data,
            done: 0,
            total,
            report,
        },
    ))
}

/// A reader that tells `report` how many of `total` bytes have passed through it.
struct Counted<'r, R> {
    inner: R,
    done: u64,
    total: u64,
    report: &'r mut dyn FnMut(u64, u64),
}

impl<R: std::io::Read> std::io::Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done, self.total);
        Ok(n)
    }
}

fn undecodable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> rusqlite::Error {
    crate::sqlite::undecodable(e)
}

/// An I/O error as the error [`StateMachine::new`] returns.
fn io_err(e: std::io::Error) -> WriteError {
    WriteError::Sqlite(crate::sqlite::undecodable(e))
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

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    /// Builds a snapshot and returns the stored one: the one just built, or a newer one an
    /// install stored meanwhile.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let meta = self.build().await?;
        let file = self.db.snapshot.clone();
        match blocking(move || file.open_data(false)).await {
            Ok(Some((meta, data, base))) => Ok(Snapshot {
                meta,
                snapshot: Box::new(SnapshotBytes::new(data, base)),
            }),
            Ok(None) => Err(snap_read(&std::io::Error::other(format!(
                "snapshot {} was built but is not stored",
                meta.snapshot_id
            )))),
            Err(e) => Err(snap_read(&e)),
        }
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
        let writer = self.db.sm_writer.lock().await.map_err(|e| sm_write(&e))?;
        let chain = match self.chain.take() {
            Some(c) => c,
            None => audit::Chain::load(&writer).map_err(|e| sm_write(&e))?,
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
        // The whole batch in one transaction, with nothing awaited between its BEGIN and its
        // COMMIT or ROLLBACK (see `crate::sqlite`).
        let written = in_transaction(&writer, || {
            for entry in &entries {
                if let Some(commands) = batch.enter(entry) {
                    let index = entry.log_id.index;
                    let r = apply_batch(&writer, &mut batch.chain, &self.zone, index, commands)?;
                    batch.responses.push(r);
                }
            }
            batch.finish(&writer)
        });
        drop(writer);
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

    /// An unnamed file in the data directory: a snapshot is received on disk, not in memory.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBytes>, StorageError> {
        let dir = self.db.snapshot.dir().to_owned();
        blocking(move || SnapshotBytes::receive_in(&dir))
            .await
            .map(Box::new)
            .map_err(|e| snap_err(&e))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<SnapshotBytes>,
    ) -> Result<(), StorageError> {
        let received = snapshot.into_file().await;
        self.restore(meta, Some(received)).await
    }

    /// The stored snapshot, its hash checked (read through once, not kept), open for openraft
    /// to read in chunks.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let file = self.db.snapshot.clone();
        let stored = match blocking(move || file.open_data(true)).await {
            Ok(stored) => stored,
            // A damaged file is no snapshot: a new one is built in its place (a leader asks
            // for the current snapshot to send it, and would stop on an error).
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!(error = %e, "the stored snapshot is damaged; building a new one");
                return self.build_snapshot().await.map(Some);
            }
            Err(e) => return Err(snap_read(&e)),
        };
        Ok(stored.map(|(meta, data, base)| Snapshot {
            meta,
            snapshot: Box::new(SnapshotBytes::new(data, base)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;
    use xchg_federation_config::Role;
    use xchg_protocol::{Listing, Timestamp};

    use super::*;
    use crate::catalog::tables::{listings, tokens};
    use crate::catalog::{Actor, Batch, Refusal, Review};
    use crate::store::snapshot::{Cell, SnapshotPayload};
    use crate::store::{from_cbor, to_cbor};

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
        assert_eq!(held(&sm).await.len(), 1);
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
        let mut reader = sm.db.reader().await.expect("reader");
        let audit: Vec<String> = audit::range(&mut reader, 1, 100)
            .await
            .expect("audit")
            .into_iter()
            .map(|r| r.content.result)
            .collect();
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
        let mut states: Vec<String> = held(&sm).await.into_iter().map(|l| l.state).collect();
        states.sort();
        assert_eq!(states, ["delisted", "submitted"]);
        let mut reader = sm.db.reader().await.expect("reader");
        let token = tokens::lookup(&mut reader, &"ab".repeat(32))
            .await
            .expect("tokens");
        assert_eq!(token.map(|t| t.role), Some(Role::Buyer));
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

    /// How many listings held have `text` in their title (the search index, derived from
    /// these rows off the apply path, has its own tests in `crate::search`).
    async fn found(sm: &StateMachine, text: &str) -> i64 {
        let mut reader = sm.db.reader().await.expect("reader");
        let held = listings::newest(&mut reader, 10_000)
            .await
            .expect("listings");
        held.iter()
            .filter(|l| l.listing.title.contains(text))
            .count() as i64
    }

    /// Every listing the replica holds, newest first, with its history.
    async fn held(sm: &StateMachine) -> Vec<crate::catalog::query::ListingView> {
        let mut reader = sm.db.reader().await.expect("reader");
        let items = listings::newest(&mut reader, crate::catalog::query::MAX_PAGE)
            .await
            .expect("listings");
        let mut out = Vec::new();
        for l in items {
            let whole = listings::with_history(&mut reader, &l.id)
                .await
                .expect("listing")
                .expect("held");
            out.push(whole);
        }
        out
    }

    /// A whole trade (fee schedule, order, deliveries, settlement, dispute, reversal) reaches a
    /// member restored from a snapshot as it is on the member that built it.
    #[tokio::test]
    async fn a_trade_travels_whole_in_a_snapshot() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (_, mut sm) = super::super::open_pair(dirs[0].path()).await.expect("open");
        let answers = sm
            .apply(vec![entry(1, crate::catalog::trades::whole_trade())])
            .await
            .expect("apply");
        assert!(answers.iter().flatten().all(Result::is_ok), "{answers:?}");
        // Installed from the builder's own handle, whose data starts after the stored file's
        // header, as openraft's storage suite does it.
        let snapshot = sm.build_snapshot().await.expect("snapshot");
        let (_, mut fresh) = super::super::open_pair(dirs[1].path()).await.expect("open");
        fresh
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .expect("install");
        let mut views = Vec::new();
        for node in [&sm, &fresh] {
            let mut reader = node.db.reader().await.expect("reader");
            let order = crate::catalog::tables::trades::order_read(&mut reader, 1)
                .await
                .expect("read")
                .expect("order 1");
            let fees = crate::catalog::tables::trades::fee_schedules_read(&mut reader)
                .await
                .expect("read");
            views.push((order, fees));
        }
        assert_eq!(views[0], views[1]);
        let (order, fees) = &views[1];
        assert_eq!(order.state, crate::catalog::trades::OrderState::Reversed);
        let kinds: Vec<&str> = order.settlements.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["settlement", "reversal"]);
        // 60 × 0.50 = 30.00; 5% fee 1.50; of 28.50 the operator 2.85, the provider 25.65.
        let s = &order.settlements[0];
        assert_eq!(
            (
                s.amount.as_str(),
                s.fees.as_str(),
                s.split.operator.as_str()
            ),
            ("30.00", "1.50", "2.85")
        );
        assert_eq!(s.split.provider, "25.65");
        assert_eq!(order.deliveries.as_ref().map(Vec::len), Some(2));
        assert_eq!((order.disputes.len(), fees.len()), (1, 1));
        sm.db.close().await;
        fresh.db.close().await;
    }

    /// A snapshot from the leader is stored before the tables are replaced. After a crash in
    /// between, the next start restores the catalog from the stored file.
    #[tokio::test]
    async fn a_catalog_behind_its_stored_snapshot_is_restored_from_it_at_start() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (sm, mut snapshot) = one_listing_and_a_snapshot(dirs[0].path()).await;
        sm.db.close().await;

        // The crash: the file is stored, the tables are not replaced.
        let db = Db::open(dirs[1].path()).await.expect("open");
        assert!(
            db.snapshot
                .store(&snapshot.meta, &snapshot.snapshot.read_all().await)
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

    /// A snapshot received cut short (or otherwise undecodable) is refused before it is stored:
    /// the member keeps its tables, its position and its stored snapshot.
    #[tokio::test]
    async fn a_received_snapshot_that_does_not_decode_is_refused_and_changes_nothing() {
        let dirs = [
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        ];
        let (sent, mut snapshot) = one_listing_and_a_snapshot(dirs[0].path()).await;
        let data = snapshot.snapshot.read_all().await;
        sent.db.close().await;

        let (_, mut member) = super::super::open_pair(dirs[1].path()).await.expect("open");
        let (_, other) = submission("长葛市交通流量数据乙");
        member
            .apply(vec![entry(1, vec![other])])
            .await
            .expect("apply");
        let own = member.build_snapshot().await.expect("snapshot").meta;
        let mut newer = snapshot.meta.clone();
        newer.last_log_id = Some(LogId::new(CommittedLeaderId::new(2, 1), 9));
        newer.snapshot_id = "2-9-cut".into();
        let cut = &data[..data.len() - 3];
        member
            .install_snapshot(&newer, Box::new(SnapshotBytes::holding(cut)))
            .await
            .expect_err("a cut snapshot");

        let (applied, _) = member.applied_state().await.expect("state");
        assert_eq!(applied, own.last_log_id);
        assert_eq!(found(&member, "交通流量").await, 1);
        assert_eq!(found(&member, "禹州信用核验").await, 0);
        let current = member
            .get_current_snapshot()
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(current.meta, own);
        member.db.close().await;
    }

    /// A leader asks for its current snapshot to send it: a damaged file is replaced by a new
    /// snapshot rather than failing the request (which would stop Raft).
    #[tokio::test]
    async fn a_damaged_snapshot_file_is_rebuilt_when_the_snapshot_is_asked_for() {
        let dir = tempfile::tempdir().expect("dir");
        let (mut sm, mut built) = one_listing_and_a_snapshot(dir.path()).await;
        let built_data = built.snapshot.read_all().await;
        let path = dir.path().join(crate::store::snapshot_file::SNAPSHOT_FILE);
        let mut bytes = std::fs::read(&path).expect("file");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");

        let mut current = sm
            .get_current_snapshot()
            .await
            .expect("no error")
            .expect("a snapshot");
        assert_eq!(current.meta.last_log_id, built.meta.last_log_id);
        assert_eq!(current.snapshot.read_all().await, built_data);
        let (meta, data) = sm
            .db
            .snapshot
            .read()
            .expect("readable again")
            .expect("stored");
        assert_eq!(meta.last_log_id, built.meta.last_log_id);
        assert_eq!(data, built_data);
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

        let whole = to_cbor(&snapshot::dump_file(&path).expect("dump")).expect("encode");
        let streamed = snapshot::encode_file(&path).expect("encode as read");
        assert_eq!(streamed.data, whole);
        assert!(streamed.rows > 0);
        assert_eq!(streamed.last_applied.map(|id| id.index), Some(2));
        let kinds: std::collections::BTreeSet<&str> = from_cbor::<SnapshotPayload>(&whole)
            .expect("decode")
            .tables
            .iter()
            .flat_map(|t| t.rows.iter().flatten())
            .map(|c| match c {
                snapshot::Cell::Null => "null",
                snapshot::Cell::Int(_) => "int",
                snapshot::Cell::Real(_) => "real",
                snapshot::Cell::Text(_) => "text",
                snapshot::Cell::Blob(_) => "blob",
            })
            .collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");

        // Checked one row at a time (a restore's check), it counts what the dump holds.
        let checked = snapshot::check_streamed(&mut &whole[..]).expect("check");
        assert_eq!(checked.rows, streamed.rows);
        assert_eq!(checked.last_applied, streamed.last_applied);
        assert_eq!(checked.membership, streamed.membership);
        // Cut short, or of a newer format: refused.
        assert!(snapshot::check_streamed(&mut &whole[..whole.len() - 3]).is_err());
        let mut newer: SnapshotPayload = from_cbor(&whole).expect("decode");
        newer.format = 99;
        let e = snapshot::check_streamed(&mut &to_cbor(&newer).expect("encode")[..])
            .err()
            .expect("a newer format");
        assert!(e.to_string().contains("snapshot format 99"), "{e}");
        // The check keeps the restore's rules (found by review: it accepted what the restore
        // then refused, after the snapshot was stored): a row narrower than its table's
        // columns, and tables before the format, are refused.
        let mut narrow: SnapshotPayload = from_cbor(&whole).expect("decode");
        let listings = narrow
            .tables
            .iter_mut()
            .find(|t| t.name == "listings")
            .expect("listings");
        listings.rows[0].pop();
        let e = snapshot::check_streamed(&mut &to_cbor(&narrow).expect("encode")[..])
            .err()
            .expect("a narrow row");
        assert!(e.to_string().contains("cells for its"), "{e}");
        #[derive(serde::Serialize)]
        #[serde(rename = "SnapshotPayload")]
        struct TablesFirst<'a> {
            tables: &'a [snapshot::TableDump],
            format: u32,
            last_applied: Option<LogId>,
            membership: &'a StoredMembership,
        }
        let whole_payload: SnapshotPayload = from_cbor(&whole).expect("decode");
        let reordered = to_cbor(&TablesFirst {
            tables: &whole_payload.tables,
            format: whole_payload.format,
            last_applied: whole_payload.last_applied,
            membership: &whole_payload.membership,
        })
        .expect("encode");
        let e = snapshot::check_streamed(&mut &reordered[..])
            .err()
            .expect("tables first");
        assert!(e.to_string().contains("before the format"), "{e}");

        // A backup spooled to a file is the backup encoded in memory, byte for byte.
        let in_memory = super::super::backup::encode(&path).expect("encode");
        let mut spooled = super::super::backup::spool(&path, dir.path()).expect("spool");
        let mut spooled_data = Vec::new();
        std::io::Read::read_to_end(&mut spooled.data, &mut spooled_data).expect("read");
        assert_eq!(spooled.data_len, spooled_data.len() as u64);
        assert_eq!(spooled_data, in_memory.data);
        assert_eq!(spooled.head, in_memory.head().expect("head"));
        assert_eq!(spooled.rows, in_memory.rows);
        sm.db.close().await;
    }

    /// A backup file replaced between the restore's check and its copy is refused, and the
    /// directory is left as it was (no snapshot, no marker): it can be restored into again.
    #[tokio::test]
    async fn a_backup_replaced_between_check_and_copy_is_refused_and_leaves_nothing() {
        use super::super::backup::{self, BackupError, RestoreStep};
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut sm) = super::super::open_pair(dir.path()).await.expect("open");
        let (_, submit_a) = submission("许昌禹州信用核验接口甲");
        sm.apply(vec![entry(1, vec![submit_a])])
            .await
            .expect("apply");
        let path = sm.db.catalog_path.clone();
        let files = tempfile::tempdir().expect("files");
        let write = |name: &str| {
            let out = files.path().join(name);
            backup::encode(&path).expect("encode").write_to(&out);
            out
        };
        let first = write("first.backup");
        let (_, submit_b) = submission("长葛市交通流量数据乙");
        sm.apply(vec![entry(2, vec![submit_b])])
            .await
            .expect("apply");
        let second = write("second.backup");
        sm.db.close().await;

        let target = files.path().join("restored");
        let mut swapped = false;
        let refused = backup::restore(&first, &target, None, &mut |step, done, total| {
            if step == RestoreStep::Checking && done == total && !swapped {
                // Another whole, valid backup takes the checked one's name.
                let moved = files.path().join("moving");
                std::fs::copy(&second, &moved).expect("copy");
                std::fs::rename(&moved, &first).expect("rename");
                swapped = true;
            }
        });
        assert!(swapped);
        match refused {
            Err(BackupError::Unusable { source, .. }) => assert!(
                source.to_string().contains("changed since it was checked"),
                "{source}"
            ),
            other => panic!("not refused as changed: {other:?}"),
        }
        let left: Vec<_> = std::fs::read_dir(&target)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .filter(|n| n != super::super::files::LOCK_FILE)
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        let restored = backup::restore(&second, &target, None, &mut |_, _, _| {})
            .expect("restored into the same directory again");
        assert_eq!(restored.position.map(|id| id.index), Some(2));
    }

    /// A backup, in memory, of a catalog that applied one submitted listing at log index 1
    /// and no membership.
    async fn one_listing_backup() -> super::super::backup::Backup {
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut sm) = super::super::open_pair(dir.path()).await.expect("open");
        let (_, submit) = submission("许昌禹州信用核验接口甲");
        sm.apply(vec![entry(1, vec![submit])]).await.expect("apply");
        let b = super::super::backup::encode(&sm.db.catalog_path).expect("encode");
        sm.db.close().await;
        b
    }

    /// A backup whose hash and format hold but whose rows this build's catalog does not take
    /// (a listing without a version, which the schema declares NOT NULL; a file made by another
    /// tool, or altered and hashed again) is refused by the restore before anything is written.
    /// Before, the restore took it and the node failed at its first start.
    #[tokio::test]
    async fn a_backup_whose_rows_do_not_load_is_refused_before_anything_is_written() {
        use super::super::backup::{self, BackupError, RestoreStep};
        let mut b = one_listing_backup().await;
        let mut payload: SnapshotPayload = cbor4ii::serde::from_slice(&b.data).expect("decode");
        let listings = payload
            .tables
            .iter_mut()
            .find(|t| t.name == "listings")
            .expect("the listings table");
        let version = listings
            .columns
            .iter()
            .position(|c| c == "version")
            .expect("a version column");
        listings.rows[0][version] = Cell::Null;
        b.data = cbor4ii::serde::to_vec(Vec::new(), &payload).expect("encode");
        let files = tempfile::tempdir().expect("files");
        let altered = files.path().join("altered.backup");
        b.write_to(&altered);

        let target = files.path().join("restored");
        let mut steps = Vec::new();
        let refused = backup::restore(&altered, &target, None, &mut |step, _, _| {
            if steps.last() != Some(&step) {
                steps.push(step);
            }
        });
        match refused {
            Err(BackupError::Unusable { source, .. }) => {
                let said = source.to_string();
                assert!(
                    said.contains("do not load") && said.contains("NOT NULL"),
                    "{said}"
                );
            }
            other => panic!("not refused as rows that do not load: {other:?}"),
        }
        assert_eq!(steps, [RestoreStep::Checking, RestoreStep::Loading]);
        let left: Vec<_> = std::fs::read_dir(&target)
            .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter().all(|n| n == super::super::files::LOCK_FILE),
            "left behind: {left:?}"
        );
    }

    /// A backup of a catalog that never applied a zone's membership (a benchmark's, say) is of
    /// no zone: checked against one, it is refused before anything is written. Before, it was
    /// taken to fit any zone, and its rows would have sat under a log that never wrote them.
    #[tokio::test]
    async fn a_backup_with_no_membership_is_refused_for_a_zone() {
        use super::super::backup::{self, BackupError};
        use super::super::raft_types::{MemberNode, NodeId};
        let b = one_listing_backup().await;
        assert_eq!(b.meta.last_membership.membership().nodes().count(), 0);
        let files = tempfile::tempdir().expect("files");
        let file = files.path().join("no-zone.backup");
        b.write_to(&file);
        let zone: std::collections::BTreeMap<NodeId, MemberNode> = [(
            7,
            MemberNode {
                name: "municipal-1".into(),
                raft_addr: "127.0.0.1:7101".into(),
                api_url: "http://127.0.0.1:7100".into(),
                public_key: vec![7; 32],
            },
        )]
        .into();
        let target = files.path().join("restored");
        match backup::restore(&file, &target, Some(&zone), &mut |_, _, _| {}) {
            Err(BackupError::Foreign(e)) => {
                assert!(e.to_string().contains("a backup of no zone"), "{e}");
            }
            other => panic!("not refused as of no zone: {other:?}"),
        }
        assert!(!target.exists(), "the directory was touched");
        // Without a zone to check against, it is restored as it is.
        backup::restore(&file, &target, None, &mut |_, _, _| {}).expect("restored");
    }

    /// A target that is a file, or a link to nothing, is named as no directory (it got the
    /// raw "Not a directory (os error 20)" and "File exists (os error 17)"), and left as it is.
    #[tokio::test]
    async fn a_restore_into_a_file_or_a_dangling_link_says_it_is_no_directory() {
        use super::super::backup;
        let b = one_listing_backup().await;
        let files = tempfile::tempdir().expect("files");
        let file = files.path().join("one.backup");
        b.write_to(&file);
        let plain = files.path().join("a-file");
        std::fs::write(&plain, b"kept").expect("file");
        let link = files.path().join("a-link");
        std::os::unix::fs::symlink(files.path().join("nowhere"), &link).expect("link");
        for target in [&plain, &link] {
            let e =
                backup::restore(&file, target, None, &mut |_, _, _| {}).expect_err("no directory");
            assert!(e.to_string().contains("not a directory"), "{e}");
        }
        assert_eq!(std::fs::read(&plain).expect("read"), b"kept");
        assert!(!files.path().join("nowhere").exists());
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
        // A batch of submissions only (written together), then a mixed one.
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
        let mut snapshot = sm.build_snapshot().await.expect("snapshot");
        let data = snapshot.snapshot.read_all().await;
        let (_, mut fresh) = super::super::open_pair(dirs[1].path()).await.expect("open");
        fresh
            .install_snapshot(&snapshot.meta, Box::new(SnapshotBytes::holding(&data)))
            .await
            .expect("install");
        assert_eq!(found(&fresh, "禹州信用核验").await, 2);
        assert_eq!(found(&fresh, "交通流量").await, 1);
        let (applied, _) = fresh.applied_state().await.expect("state");
        assert_eq!(applied.map(|id| id.index), Some(2));
        // Both keep it as their current snapshot, in their snapshot files.
        for node in [&mut sm, &mut fresh] {
            let mut current = node
                .get_current_snapshot()
                .await
                .expect("read")
                .expect("kept");
            assert_eq!(current.meta, snapshot.meta);
            assert_eq!(current.snapshot.read_all().await, data);
        }

        // The snapshot a zone still holds right after upgrading to schema v4 is format 1, whose
        // history rows have no listing_seq but the listing's id: restored, they hang off the
        // right listings.
        let mut payload: SnapshotPayload = from_cbor(&data).expect("payload");
        payload.format = 1;
        let ids: std::collections::HashMap<i64, String> = {
            let listings = payload
                .tables
                .iter()
                .find(|t| t.name == "listings")
                .expect("listings dump");
            let column = |name: &str| {
                listings
                    .columns
                    .iter()
                    .position(|c| c == name)
                    .expect("column")
            };
            let (seq, id) = (column("seq"), column("id"));
            listings
                .rows
                .iter()
                .map(|row| match (&row[seq], &row[id]) {
                    (Cell::Int(seq), Cell::Text(id)) => (*seq, id.clone()),
                    other => panic!("a listings row's seq and id: {other:?}"),
                })
                .collect()
        };
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
        history.columns[at] = "listing_id".to_owned();
        for row in &mut history.rows {
            let Cell::Int(seq) = row[at] else {
                panic!("a listing_seq: {:?}", row[at])
            };
            row[at] = Cell::Text(ids[&seq].clone());
        }
        let old = to_cbor(&payload).expect("encode");
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut upgraded) = super::super::open_pair(dir.path()).await.expect("open");
        upgraded
            .install_snapshot(&snapshot.meta, Box::new(SnapshotBytes::holding(&old)))
            .await
            .expect("install format 1");
        // A listing's history is read by the listing's seq: every entry is found there.
        let linked: usize = held(&upgraded)
            .await
            .iter()
            .map(|l| l.history.as_ref().map_or(0, Vec::len))
            .sum();
        assert_eq!(
            linked, 4,
            "two submissions, the approval, the third submission"
        );
        assert_eq!(found(&upgraded, "禹州信用核验").await, 2);

        // A format-3 snapshot (schema v22) still has the columns v23 dropped, and plain bodies:
        // restored without those columns, its listings read as they did.
        let mut payload: SnapshotPayload = from_cbor(&data).expect("payload");
        payload.format = 3;
        let expected = held(&upgraded).await;
        for table in &mut payload.tables {
            let (columns, value): (&[&str], Cell) = match table.name.as_str() {
                "listings" => (
                    &["content_id", "delivery_modes", "created_at", "updated_at"],
                    Cell::Text("dropped in v23".into()),
                ),
                "listing_history" => (&["listing_id"], Cell::Text("dropped in v23".into())),
                _ => continue,
            };
            for column in columns {
                table.columns.push((*column).to_owned());
                for row in &mut table.rows {
                    row.push(value.clone());
                }
            }
            if table.name == "listings" {
                let body = table
                    .columns
                    .iter()
                    .position(|c| c == "body")
                    .expect("body");
                for row in &mut table.rows {
                    let Cell::Blob(stored) = &row[body] else {
                        panic!("a body: {:?}", row[body])
                    };
                    let plain = crate::catalog::tables::packed::unpack(stored)
                        .expect("unpacks")
                        .into_owned();
                    row[body] = Cell::Blob(plain.into());
                }
            }
        }
        let old = to_cbor(&payload).expect("encode");
        let dir = tempfile::tempdir().expect("dir");
        let (_, mut from_v22) = super::super::open_pair(dir.path()).await.expect("open");
        from_v22
            .install_snapshot(&snapshot.meta, Box::new(SnapshotBytes::holding(&old)))
            .await
            .expect("install format 3");
        let restored = held(&from_v22).await;
        assert_eq!(restored.len(), expected.len());
        for (r, e) in restored.iter().zip(&expected) {
            assert_eq!(
                (&r.id, &r.content_id, &r.state, &r.listing),
                (&e.id, &e.content_id, &e.state, &e.listing)
            );
            assert_eq!(
                r.history.as_ref().map(Vec::len),
                e.history.as_ref().map(Vec::len)
            );
        }
        sm.db.close().await;
        fresh.db.close().await;
        upgraded.db.close().await;
        from_v22.db.close().await;
    }
}
