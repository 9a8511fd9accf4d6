//! The search index: listings by word (BM25 relevance, phrases by position) and by facet, kept
//! in its own files (`<data dir>/search/`, tantivy) and derived from the applied catalog off
//! the Raft apply path.
//!
//! Every change of a listings row takes the next number of the member's listing clock
//! (`catalog::tables::listings::Clock`). The indexer ([`SearchIndex::run`]) reads the rows
//! changed since the number its last commit covers, indexes them and commits, with the number
//! it reached and the clock's epoch in the commit: after a crash, a restart or a failed commit
//! it starts again from there, and when the epoch differs (a snapshot replaced the rows) or the
//! index is ahead of the catalog (a catalog that lost its last commits with the machine's
//! power) it starts over. A search that must see every write committed before it waits until
//! the index covers the clock as its read point left it ([`SearchIndex::wait_covers`]).
//!
//! Facets are packed into one 64-bit column per listing ([`Packed`]) so that counting every
//! facet of a million matches reads one value per match.

mod collect;
pub mod words;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tantivy::query::{BooleanQuery, EnableScoring, Occur, PhraseQuery, Query, TermQuery};
use tantivy::schema::document::{ReferenceValue, ReferenceValueLeaf, Value};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, Schema, TextFieldIndexing, TextOptions,
};
use tantivy::tokenizer::{PreTokenizedString, Token};
use tantivy::{
    Document, Index, IndexReader, IndexSettings, IndexSortByField, IndexWriter, Order,
    ReloadPolicy, Term,
};
use tokio::sync::{Notify, watch};
use xchg_protocol::{Listing, ZoneId};

use crate::catalog::ListingState;
use crate::catalog::query::{DEFAULT_PAGE, Facets, MAX_PAGE, Page, Search, Sort};
use crate::catalog::tables::listings::{self, Changed, Clock};
use crate::store::Db;

pub use collect::Packed;
use collect::{Filter, Key};

/// The index's directory inside the data directory.
pub const INDEX_DIR: &str = "search";

/// Rows read from the catalog per indexing step.
const STEP: u32 = 5_000;
/// Indexing memory (tantivy's writer arena, one thread).
const WRITER_BYTES: usize = 64 << 20;
/// Least time between two commits while the index follows the writes (less than a step behind)
/// and no search waits. Every commit writes and syncs a new segment, which merges then write
/// again: at 100 ms the three members of a zone under write load spent over a third of the
/// machine's processor time in tantivy and took half as many writes/s (perf and
/// `scripts/bench-vs-etcd`, bench/RESULTS.md). Searches lose nothing by it: one that needs the
/// newest writes has the indexer commit at once (so a steady stream of searches beside steady
/// writes brings the commit rate back up).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
/// How long a search waits for the index to take in its read point.
pub const COVER_WAIT: Duration = Duration::from_secs(10);
/// How long a `consistency=local` search waits for the index to take in what this node's
/// catalog holds before answering from the index as it is.
pub const LOCAL_WAIT: Duration = Duration::from_secs(1);
/// Times the title's words are indexed, so that a word found in the title weighs more than
/// one found in the rest of the text (BM25 over one field, whose scorers tantivy prunes).
const TITLE_COPIES: usize = 3;
/// A listing holding the query's words together and in order (a phrase) scores this many times
/// what its words score apart. A factor rather than an added score: the pruning threshold
/// stays the least score kept divided by it, and the phrase is checked only for candidates.
const PHRASE_FACTOR: f32 = 1.5;
/// Positions left between the parts of a listing's text so that no phrase spans two.
const PART_GAP: usize = 8;

/// Names of the values packed into [`Packed`]: the order is the stored code, so new names
/// only go at the end.
pub const STATES: &[&str] = &[
    "submitted",
    "listed",
    "rejected",
    "delisted",
    "recognised",
    "revoked",
    "suspended",
];
/// Classification names, in code order.
pub const CLASSIFICATIONS: &[&str] = &["public", "general", "important", "core"];
/// Delivery mode names, in bit order.
pub const MODES: &[&str] = &[
    "file",
    "api",
    "sandbox",
    "privacy_computing",
    "model_output",
    "verification",
];

/// Why the index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The index's files.
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    /// The catalog.
    #[error("catalog: {0}")]
    Catalog(#[from] sqlx::Error),
    /// A `cursor` this index did not write (or from another query).
    #[error("{0}")]
    Cursor(String),
    /// The index did not take in the read point in time.
    #[error("the search index is {lag} listing changes behind this node's catalog")]
    Behind {
        /// Changes not yet indexed.
        lag: u64,
    },
    /// The indexing thread stopped.
    #[error("the search index stopped")]
    Stopped,
}

/// What the index has taken in: every change up to `change` of the clock's `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Covered {
    /// The clock's epoch.
    pub epoch: i64,
    /// The latest change taken in.
    pub change: i64,
}

impl Covered {
    /// Whether every change up to `clock` is in.
    pub fn covers(&self, clock: Clock) -> bool {
        self.epoch == clock.epoch && self.change >= clock.change
    }

    /// How many changes of `clock` are not in.
    pub fn lag(&self, clock: Clock) -> u64 {
        if self.epoch == clock.epoch {
            clock.change.saturating_sub(self.change).unsigned_abs()
        } else {
            clock.change.unsigned_abs()
        }
    }
}

/// Category and origin names by code, stored with each commit (codes only grow).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Names {
    categories: Vec<String>,
    origins: Vec<String>,
    #[serde(skip)]
    category_codes: HashMap<String, u32>,
    #[serde(skip)]
    origin_codes: HashMap<String, u32>,
}

impl Names {
    fn reindex(&mut self) {
        self.category_codes = code_map(&self.categories);
        self.origin_codes = code_map(&self.origins);
    }

    fn category(&mut self, name: &str) -> u32 {
        code_of(&mut self.categories, &mut self.category_codes, name)
    }

    fn origin(&mut self, name: &str) -> u32 {
        code_of(&mut self.origins, &mut self.origin_codes, name)
    }
}

fn code_map(names: &[String]) -> HashMap<String, u32> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
        .collect()
}

fn code_of(names: &mut Vec<String>, codes: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(code) = codes.get(name) {
        return *code;
    }
    let code = u32::try_from(names.len()).unwrap_or(u32::MAX);
    names.push(name.to_owned());
    codes.insert(name.to_owned(), code);
    code
}

/// The commit's payload: what it covers and the names its codes stand for.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    covered: Covered,
    names: Names,
}

#[derive(Clone, Copy)]
struct Fields {
    seq: Field,
    packed: Field,
    /// The title's words ([`TITLE_COPIES`] times) and the rest of the text's, with
    /// frequencies and positions.
    words: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        seq: b.add_u64_field("seq", INDEXED | FAST),
        packed: b.add_u64_field("packed", FAST),
        words: b.add_text_field(
            "words",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            ),
        ),
    };
    (b.build(), fields)
}

/// Every segment holds its documents newest first (highest `seq`), so that of the matches
/// sharing a score the first met is the one the recency tie-break keeps: relevance order can
/// then skip every block whose best score only ties the least kept ([`collect::best`]).
fn settings() -> IndexSettings {
    IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: "seq".into(),
            order: Order::Desc,
        }),
        ..IndexSettings::default()
    }
}

struct Inner {
    dir: PathBuf,
    reader: IndexReader,
    fields: Fields,
    names: RwLock<Names>,
    writer: Mutex<Option<IndexWriter<Doc>>>,
    covered: watch::Sender<Covered>,
    /// Woken by a search waiting for the index: commit now rather than at the next interval.
    hurry: Notify,
    /// What the searcher's segments hold, in memory.
    facts: collect::Facts,
}

/// The search index of one node (cheap to clone).
#[derive(Clone)]
pub struct SearchIndex(Arc<Inner>);

/// How far a catch-up has come, for progress reports.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Changes taken in by this catch-up.
    pub done: u64,
    /// Changes there were to take in when it started (more may have come since).
    pub behind: u64,
    /// Since it started.
    pub elapsed: Duration,
}

impl SearchIndex {
    /// Opens (or creates) the index in `data_dir`, given the catalog's clock now (before any
    /// further apply): an index of another epoch, or ahead of the catalog, starts over; an
    /// index whose files do not open is deleted and rebuilt from the catalog (it holds nothing
    /// else).
    ///
    /// # Errors
    /// The index's files cannot be created.
    pub fn open(data_dir: &Path, clock: Clock) -> Result<SearchIndex, SearchError> {
        words::warm_up();
        let dir = data_dir.join(INDEX_DIR);
        let (schema, fields) = schema();
        let index = match open_dir(&dir, &schema) {
            Ok(index) => index,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e,
                    "the search index does not open; rebuilding it from the catalog");
                let _ = std::fs::remove_dir_all(&dir);
                open_dir(&dir, &schema)?
            }
        };
        let payload: Option<Payload> = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str(&p).ok());
        let (mut covered, mut names) = payload.map_or_else(
            || (Covered::default(), Names::default()),
            |p| (p.covered, p.names),
        );
        names.reindex();
        if covered.epoch != clock.epoch || covered.change > clock.change {
            // Start over: a (random) epoch of 0 does not name this catalog's numbering.
            covered = Covered {
                epoch: clock.epoch.wrapping_add(1),
                change: 0,
            };
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let facts = collect::Facts::default();
        facts.warm(&reader.searcher())?;
        // The writer's lock: a node stopped in this process a moment ago (tests, simulations)
        // may still be letting go of it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let writer = loop {
            match index.writer_with_num_threads(1, WRITER_BYTES) {
                Err(tantivy::TantivyError::LockFailure(..)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        Ok(SearchIndex(Arc::new(Inner {
            dir,

            reader,
            fields,
            names: RwLock::new(names),
            writer: Mutex::new(Some(writer)),
            covered: watch::Sender::new(covered),
            hurry: Notify::new(),
            facts,
        })))
    }

    /// What the index has taken in so far.
    pub fn covered(&self) -> Covered {
        *self.0.covered.borrow()
    }

    /// Waits until the index covers `clock` (a read point of this node's catalog), asking the
    /// indexer to commit at once.
    ///
    /// # Errors
    /// [`SearchError::Behind`] after `wait`.
    pub async fn wait_covers(&self, clock: Clock, wait: Duration) -> Result<(), SearchError> {
        let mut rx = self.0.covered.subscribe();
        if rx.borrow_and_update().covers(clock) {
            return Ok(());
        }
        let waited = tokio::time::timeout(wait, async {
            // Asked once, and again after each commit that fell short (a permit is kept until
            // the indexer takes it, so none is lost while it works).
            loop {
                self.0.hurry.notify_one();
                rx.changed().await?;
                if rx.borrow_and_update().covers(clock) {
                    return Ok::<_, watch::error::RecvError>(());
                }
            }
        })
        .await;
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(SearchError::Stopped),
            Err(_) => Err(SearchError::Behind {
                lag: self.covered().lag(clock),
            }),
        }
    }

    /// Follows the catalog until `stop`: indexes what changed, commits at most every
    /// [`COMMIT_EVERY`] unless a search waits or it is a whole step behind (then it goes on at
    /// once), logs progress while far behind.
    pub async fn run(self, db: Db, mut stop: watch::Receiver<bool>) {
        let mut applied = db.subscribe_applied();
        let mut report = Reporter::default();
        loop {
            if *stop.borrow() {
                break;
            }
            // Seen before the clock is read: a batch applied from here on wakes the wait below.
            applied.borrow_and_update();
            match self.step(&db, &mut report, Some(&stop)).await {
                // A whole step: further behind than one step, go on at once.
                Ok(Some(n)) if n >= STEP as usize => {}
                Ok(Some(_)) => {
                    // Following the writes: the next commit no sooner than COMMIT_EVERY after
                    // this one, unless a search waits.
                    tokio::select! {
                        () = tokio::time::sleep(COMMIT_EVERY) => {}
                        () = self.0.hurry.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
                Ok(None) => {
                    // Nothing new: wait for the next applied batch (or a search that waits, or
                    // a second, whichever comes first: writes to the catalog from outside the
                    // state machine, such as `xchg bench search`'s loader, are found too).
                    tokio::select! {
                        _ = applied.changed() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = self.0.hurry.notified() => {}
                        _ = stop.changed() => {}
                    }
                }
                // Told to stop mid-step: what the step took in was not committed.
                Err(SearchError::Stopped) if *stop.borrow() => break,
                Err(e) => {
                    tracing::warn!(error = %e, "search index: indexing failed; trying again");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        self.close().await;
    }

    /// Lets go of the index's writer (and its lock).
    pub async fn close(&self) {
        let inner = self.0.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let writer = inner.writer.lock().ok().and_then(|mut w| w.take());
            // Dropped, not waited for: merges in progress are abandoned (their files are
            // collected next time), so a node stops promptly whatever the index is doing.
            drop(writer);
            tighten(&inner.dir);
        })
        .await;
    }

    /// Takes in everything the catalog holds now, reporting progress to `progress` (the
    /// `xchg index rebuild` command and tests).
    ///
    /// # Errors
    /// The catalog or the index.
    pub async fn catch_up(
        &self,
        db: &Db,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(), SearchError> {
        let mut report = Reporter::default();
        while self.step(db, &mut report, None).await?.is_some() {
            progress(report.progress());
        }
        Ok(())
    }

    /// One indexing step: starts over if the epoch changed, then takes in up to [`STEP`]
    /// changed rows and commits. Returns how many rows it took in, `None` when there was
    /// nothing to take in.
    async fn step(
        &self,
        db: &Db,
        report: &mut Reporter,
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<Option<usize>, SearchError> {
        let (clock, after, rows) = {
            let mut conn = db.reader().await?;
            let clock = listings::clock(&mut conn).await?;
            let covered = self.covered();
            if covered.covers(clock) {
                report.caught_up();
                return Ok(None);
            }
            // Another epoch: every row was numbered anew, the index starts over.
            let after = (covered.epoch == clock.epoch).then_some(covered.change);
            let rows = listings::changed_since(&mut conn, after.unwrap_or(0), STEP).await?;
            (clock, after, rows)
        };
        report.start(self.covered().lag(clock));
        let this = self.clone();
        let n = rows.len();
        let stop = stop.cloned();
        tokio::task::spawn_blocking(move || this.take_in(clock, after, &rows, stop.as_ref()))
            .await
            .map_err(|_| SearchError::Stopped)??;
        report.add(n as u64);
        if self.covered().covers(clock) {
            report.caught_up();
        }
        Ok(Some(n))
    }

    /// Indexes `rows` (the rows of `clock`'s epoch changed after `after`, in change order;
    /// `None`: all of them, the index starting over) and commits. Once `stop` is set it gives
    /// up before the next row, committing nothing ([`SearchError::Stopped`]): a stopping node
    /// does not wait for a step of a rebuild.
    fn take_in(
        &self,
        clock: Clock,
        after: Option<i64>,
        rows: &[Changed],
        stop: Option<&watch::Receiver<bool>>,
    ) -> Result<(), SearchError> {
        let inner = &*self.0;
        let mut guard = inner.writer.lock().map_err(|_| SearchError::Stopped)?;
        let writer = guard.as_mut().ok_or(SearchError::Stopped)?;
        let mut names = inner
            .names
            .read()
            .map_err(|_| SearchError::Stopped)?
            .clone();
        names.reindex();
        if after.is_none() {
            writer.delete_all_documents()?;
        }
        let mut reached = after.unwrap_or(0);
        for row in rows {
            if stop.is_some_and(|stop| *stop.borrow()) {
                // Uncommitted: dropped with the writer when the node closes the index.
                return Err(SearchError::Stopped);
            }
            let seq = row.seq.unsigned_abs();
            writer.delete_term(Term::from_field_u64(inner.fields.seq, seq));
            reached = reached.max(row.change);
            match row.listing() {
                Ok(listing) => {
                    writer.add_document(document(inner.fields, &mut names, row, &listing))?;
                }
                // The state machine wrote it, so this is a bug or a damaged file: the row is
                // left out of search rather than holding the index back behind it.
                Err(e) => tracing::error!(seq = row.seq, error = %e,
                    "search index: a listing does not decode; left out of search"),
            }
        }
        if rows.is_empty() {
            // Nothing changed after what the index holds (a new epoch of an empty catalog).
            reached = reached.max(clock.change);
        }
        let covered = Covered {
            epoch: clock.epoch,
            change: reached,
        };
        let payload = serde_json::to_string(&Payload {
            covered,
            names: names.clone(),
        })
        .map_err(|e| SearchError::Index(tantivy::TantivyError::InternalError(e.to_string())))?;
        // Codes are published before the documents that use them become visible.
        *inner.names.write().map_err(|_| SearchError::Stopped)? = names;
        let mut commit = writer.prepare_commit()?;
        commit.set_payload(&payload);
        commit.commit()?;
        tighten(&inner.dir);
        inner.reader.reload()?;
        inner.facts.warm(&inner.reader.searcher())?;
        inner.covered.send_replace(covered);
        Ok(())
    }

    /// Runs `search` against the index (blocking: call from a blocking thread); `own` is this
    /// node's zone. Returns the page's `seq`s in order, the cursor of the next page, the total
    /// and the facets.
    ///
    /// # Errors
    /// A malformed cursor; the index's errors.
    pub fn find(&self, search: &Search, own: &ZoneId) -> Result<Found, SearchError> {
        let inner = &*self.0;
        let covered = self.covered();
        let searcher = inner.reader.searcher();
        let names = inner
            .names
            .read()
            .map_err(|_| SearchError::Stopped)?
            .clone();
        let limit = search.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE) as usize;
        let filter = Filter::of(search, own, &names);
        let text = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        // Without words every match is as relevant as the next: newest first.
        let relevance = search.sort == Sort::Relevance && text.is_some();
        let order = if relevance {
            Sort::Relevance
        } else {
            Sort::Newest
        };
        let cursor = search
            .cursor
            .as_deref()
            .map(|c| Cursor::parse(c, order))
            .transpose()?;
        // The statistics the first page scored with, so that later pages score alike while
        // listings come and go.
        let stats: Stats = cursor
            .as_ref()
            .and_then(|c| c.stats.clone())
            .unwrap_or_default();
        let mut stats = FrozenStats::new(&searcher, inner.fields, stats);
        // The words, all required (counted without scoring, then scored), and the phrase that
        // multiplies the score of those holding them in order.
        let queries = match text {
            Some(q) => self.text_query(q, &mut stats)?,
            None => None,
        };
        let unscored = EnableScoring::disabled_from_searcher(&searcher);
        let counting = match (&queries, text) {
            (Some(queries), _) => queries.words.weight(unscored)?,
            // Nothing in the query is a word: it matches nothing.
            (None, Some(_)) => tantivy::query::EmptyQuery.weight(unscored)?,
            (None, None) => tantivy::query::AllQuery.weight(unscored)?,
        };
        let after = cursor.map(|c| c.after);
        let keep = limit + 1;
        let newest = (!relevance).then_some((after, keep));
        let (total, counts, mut top) = collect::count(
            &searcher,
            &inner.facts,
            collect::Counting {
                everything: text.is_none(),
                weight: &*counting,
                filter: &filter,
                newest,
            },
        )?;
        if relevance && let Some(queries) = &queries {
            let scoring = queries
                .words
                .weight(EnableScoring::enabled_from_statistics_provider(
                    &stats, &searcher,
                ))?;
            let phrase = queries
                .phrase
                .as_ref()
                .map(|p| p.weight(unscored))
                .transpose()?;
            top = collect::best(
                &searcher,
                &inner.facts,
                collect::Scoring {
                    weight: &*scoring,
                    phrase: phrase.as_deref().map(|p| (p, PHRASE_FACTOR)),
                    filter: &filter,
                    after,
                    keep,
                },
            )?;
        }
        let more = top.len() > limit;
        let page: Vec<Key> = top.into_iter().take(limit).collect();
        let next_cursor = if more {
            page.last().map(|k| {
                Cursor {
                    after: *k,
                    stats: relevance.then(|| stats.frozen()),
                }
                .encode(order)
            })
        } else {
            None
        };
        Ok(Found {
            seqs: page
                .iter()
                .map(|k| i64::try_from(k.seq).unwrap_or(i64::MAX))
                .collect(),
            next_cursor,
            total,
            facets: counts.facets(&names),
            sort: order,
            covered,
        })
    }

    /// The queries of free text `q`: every word must be found (a word the index does not hold
    /// by its pieces), scored BM25 together (one term scorer, or an intersection of them, which
    /// tantivy prunes by block maxima), and, when `q` has several words, the phrase of them
    /// in order, checked for the candidates only. `None` if `q` holds no word.
    fn text_query(
        &self,
        q: &str,
        stats: &mut FrozenStats<'_>,
    ) -> Result<Option<TextQueries>, SearchError> {
        let f = self.0.fields;
        let mut required: Vec<String> = Vec::new();
        let mut in_order: Vec<String> = Vec::new();
        for term in q.split_whitespace() {
            for (word, pieces) in words::query_words(term) {
                if stats.doc_freq_of(&word)? > 0 || pieces.is_empty() {
                    required.push(word.clone());
                    in_order.push(word);
                } else {
                    for piece in pieces {
                        stats.doc_freq_of(&piece)?;
                        required.push(piece);
                    }
                }
            }
        }
        // A word twice is one requirement (the phrase keeps both).
        required.sort();
        required.dedup();
        // With scoring disabled (counting) tantivy reads the terms' documents only.
        let mut terms: Vec<Box<dyn Query>> = required
            .iter()
            .map(|w| -> Box<dyn Query> {
                Box::new(TermQuery::new(
                    Term::from_field_text(f.words, w),
                    IndexRecordOption::WithFreqs,
                ))
            })
            .collect();
        let words = match terms.len() {
            0 => return Ok(None),
            1 => terms.remove(0),
            _ => Box::new(BooleanQuery::new(
                terms.into_iter().map(|q| (Occur::Must, q)).collect(),
            )),
        };
        let phrase = (in_order.len() >= 2).then(|| {
            PhraseQuery::new(
                in_order
                    .iter()
                    .map(|w| Term::from_field_text(f.words, w))
                    .collect(),
            )
        });
        Ok(Some(TextQueries { words, phrase }))
    }

    /// The index's size on disk, in bytes.
    pub fn bytes(&self) -> u64 {
        dir_bytes(&self.0.dir)
    }
}

/// A text query: its words, every one required (counted, and scored with their frequencies),
/// and the phrase of its words in order, if several.
struct TextQueries {
    words: Box<dyn Query>,
    phrase: Option<PhraseQuery>,
}

/// What [`SearchIndex::find`] found: the page's listings by `seq`, to be read from the catalog.
#[derive(Debug, Clone)]
pub struct Found {
    /// The page's `seq`s, in order.
    pub seqs: Vec<i64>,
    /// The next page's cursor.
    pub next_cursor: Option<String>,
    /// Matches in all.
    pub total: u64,
    /// Facet counts.
    pub facets: Facets,
    /// The order used.
    pub sort: Sort,
    /// What the index covered when it was read.
    pub covered: Covered,
}

/// Runs `search` on `index` and reads the page's listings from the catalog; `clock` is the
/// catalog's clock at the read point (for `index_lag`).
///
/// # Errors
/// As [`SearchIndex::find`]; the catalog's errors.
pub async fn search(
    index: &SearchIndex,
    db: &Db,
    search: Search,
    own: ZoneId,
    clock: Clock,
) -> Result<Page, SearchError> {
    let this = index.clone();
    let found = tokio::task::spawn_blocking(move || this.find(&search, &own))
        .await
        .map_err(|_| SearchError::Stopped)??;
    let mut conn = db.reader().await?;
    let items = listings::views_by_seq(&mut conn, &found.seqs).await?;
    Ok(Page {
        items,
        next_cursor: found.next_cursor,
        total: found.total,
        sort: found.sort,
        facets: found.facets,
        index_lag: found.covered.lag(clock),
    })
}

fn open_dir(dir: &Path, schema: &Schema) -> Result<Index, tantivy::TantivyError> {
    // Private like the rest of the data directory: 0700, its files 0600 ([`tighten`]).
    crate::store::files::prepare_dir(dir)?;
    let directory = tantivy::directory::MmapDirectory::open(dir)?;
    let index = Index::builder()
        .schema(schema.clone())
        .settings(settings())
        .open_or_create(directory)?;
    if index.schema() != *schema || index.settings().sort_by_field != settings().sort_by_field {
        return Err(tantivy::TantivyError::SchemaError(
            "the index was written with another schema or document order".into(),
        ));
    }
    Ok(index)
}

/// Brings the index's files to mode 0600 (tantivy creates them as the umask allows; the
/// directory is 0700 throughout, so no one else reaches them meanwhile). `xchg run` and `xchg up`
/// also set the umask to 077.
fn tighten(dir: &Path) {
    if let Err(e) = crate::store::files::prepare_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "search index: could not make its files private");
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The index document of a listings row.
fn document(f: Fields, names: &mut Names, row: &Changed, l: &Listing) -> Doc {
    let state = ListingState::parse(&row.state).map_or(u64::MAX, |s| {
        STATES
            .iter()
            .position(|n| *n == s.as_str())
            .map_or(u64::MAX, |p| p as u64)
    });
    let classification = code(
        CLASSIFICATIONS,
        &crate::catalog::tables::enum_name(&l.classification),
    );
    let mut modes = 0u64;
    for m in &l.delivery_modes {
        let name = crate::catalog::tables::enum_name(m);
        if let Some(bit) = MODES.iter().position(|n| *n == name) {
            modes |= 1 << bit;
        }
    }
    let packed = Packed::pack(
        state,
        classification,
        modes,
        u64::from(names.category(&l.category)),
        u64::from(names.origin(&l.origin.to_string())),
    );
    let mut parts: Vec<&str> = vec![&l.description, &l.provider.name];
    parts.extend(l.keywords.iter().map(String::as_str));
    parts.extend(l.scenarios.iter().map(String::as_str));
    Doc {
        fields: f,
        seq: row.seq.unsigned_abs(),
        packed: packed.0,
        words: Mutex::new(tokens(&l.title, &parts)),
    }
}

/// A listing as the index takes it in, its words already found. Handed to tantivy as it is:
/// tantivy's own document type keeps pre-tokenised text as JSON, written when the document is
/// built and parsed again in tantivy's indexing thread, which cost a zone under write load
/// some 15 % of its processor time (perf, `scripts/bench-vs-etcd` at 64 clients).
struct Doc {
    fields: Fields,
    seq: u64,
    packed: u64,
    /// Taken out by tantivy's one read of the field (it is neither stored nor fast, so only
    /// the inverted index reads it): tantivy wants the words by value, and copying them for
    /// it, then dropping both copies, cost a member 3 % of the machine under write load.
    words: Mutex<PreTokenizedString>,
}

/// One value of a [`Doc`].
#[derive(Debug, Clone, Copy)]
enum DocValue<'a> {
    Number(u64),
    Words(&'a Mutex<PreTokenizedString>),
}

impl<'a> Value<'a> for DocValue<'a> {
    type ArrayIter = std::iter::Empty<Self>;
    type ObjectIter = std::iter::Empty<(&'a str, Self)>;

    fn as_value(&self) -> ReferenceValue<'a, Self> {
        ReferenceValue::Leaf(match *self {
            DocValue::Number(n) => ReferenceValueLeaf::U64(n),
            // Tantivy takes the words by value (and copies them once more to index them).
            DocValue::Words(w) => ReferenceValueLeaf::PreTokStr(Box::new(std::mem::replace(
                &mut *w.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
                PreTokenizedString {
                    text: String::new(),
                    tokens: Vec::new(),
                },
            ))),
        })
    }
}

impl Document for Doc {
    type Value<'a> = DocValue<'a>;
    type FieldsValuesIter<'a> = std::array::IntoIter<(Field, DocValue<'a>), 3>;

    fn iter_fields_and_values(&self) -> Self::FieldsValuesIter<'_> {
        let f = self.fields;
        [
            (f.seq, DocValue::Number(self.seq)),
            (f.packed, DocValue::Number(self.packed)),
            (f.words, DocValue::Words(&self.words)),
        ]
        .into_iter()
    }
}

fn code(names: &[&str], name: &str) -> u64 {
    names
        .iter()
        .position(|n| *n == name)
        .map_or(u64::MAX, |p| p as u64)
}

/// The words of a listing as one pre-tokenised text: the title's [`TITLE_COPIES`] times, then
/// those of each of `parts`, a gap of positions between any two so that no phrase spans them.
/// Offsets are not kept (nothing is highlighted).
fn tokens(title: &str, parts: &[&str]) -> PreTokenizedString {
    let token = |w: words::Word, shift: usize| Token {
        offset_from: 0,
        offset_to: 0,
        position: w.position + shift,
        text: w.text,
        position_length: 1,
    };
    let mut found = Vec::new();
    let end = words::index_words(title, 0, &mut found);
    let mut out = Vec::with_capacity(found.len() * TITLE_COPIES + 64);
    let mut position = 0;
    for copy in 0..TITLE_COPIES {
        position = copy * (end + PART_GAP);
        out.extend(found.iter().map(|w| token(w.clone(), position)));
    }
    position += end + PART_GAP;
    for part in parts {
        found.clear();
        let next = words::index_words(part, position, &mut found);
        out.extend(found.drain(..).map(|w| token(w, 0)));
        position = next + PART_GAP;
    }
    PreTokenizedString {
        text: String::new(),
        tokens: out,
    }
}

/// BM25 statistics, either taken from the searcher (first page) or carried by a cursor.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stats {
    /// Documents.
    n: u64,
    /// Tokens in the words field.
    t: u64,
    /// Document frequency per word.
    d: Vec<(String, u64)>,
}

struct FrozenStats<'a> {
    searcher: &'a tantivy::Searcher,
    fields: Fields,
    stats: Stats,
    fresh: bool,
}

impl<'a> FrozenStats<'a> {
    fn new(searcher: &'a tantivy::Searcher, fields: Fields, stats: Stats) -> Self {
        let fresh = stats.n == 0 && stats.d.is_empty();
        let mut this = FrozenStats {
            searcher,
            fields,
            stats,
            fresh,
        };
        if fresh {
            // Documents deleted but not yet merged away still count in a word's document
            // frequency, so the count of documents counts them too (BM25 needs n >= df).
            this.stats.n = searcher
                .segment_readers()
                .iter()
                .map(|r| u64::from(r.max_doc()))
                .sum();
            this.stats.t =
                tantivy::query::Bm25StatisticsProvider::total_num_tokens(searcher, fields.words)
                    .unwrap_or(0);
        }
        this
    }

    fn doc_freq_of(&mut self, word: &str) -> Result<u64, SearchError> {
        if let Some((_, df)) = self.stats.d.iter().find(|(w, _)| w == word) {
            return Ok(*df);
        }
        let df = self
            .searcher
            .doc_freq(&Term::from_field_text(self.fields.words, word))?
            .min(self.stats.n);
        if self.fresh {
            self.stats.d.push((word.to_owned(), df));
        }
        Ok(df)
    }

    fn frozen(&self) -> Stats {
        self.stats.clone()
    }
}

impl tantivy::query::Bm25StatisticsProvider for FrozenStats<'_> {
    fn total_num_tokens(&self, _field: Field) -> tantivy::Result<u64> {
        Ok(self.stats.t.max(1))
    }

    fn total_num_docs(&self) -> tantivy::Result<u64> {
        Ok(self.stats.n.max(1))
    }

    fn doc_freq(&self, term: &Term) -> tantivy::Result<u64> {
        let value = term.value();
        let word = value.as_str().unwrap_or_default();
        match self.stats.d.iter().find(|(w, _)| w == word) {
            Some((_, df)) => Ok((*df).min(self.stats.n.max(1))),
            // Never above the count of documents, whatever a cursor carried.
            None => Ok(self.searcher.doc_freq(term)?.min(self.stats.n.max(1))),
        }
    }
}

/// A page's cursor: where the next page starts and, in relevance order, the statistics the
/// first page scored with. Newest-first cursors are the last `seq` (a decimal number, as
/// before); relevance cursors are `r.` and URL-safe base64 of JSON.
#[derive(Debug, Clone)]
struct Cursor {
    after: Key,
    stats: Option<Stats>,
}

#[derive(Serialize, Deserialize)]
struct RelevanceCursor {
    s: u32,
    q: u64,
    #[serde(flatten)]
    stats: Stats,
}

/// Longest cursor accepted, in bytes.
pub const CURSOR_MAX: usize = 4096;

impl Cursor {
    fn encode(&self, sort: Sort) -> String {
        match (sort, &self.stats) {
            (Sort::Relevance, Some(stats)) => {
                let json = serde_json::to_vec(&RelevanceCursor {
                    s: self.after.score,
                    q: self.after.seq,
                    stats: stats.clone(),
                })
                .unwrap_or_default();
                format!(
                    "r.{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
                )
            }
            _ => self.after.seq.to_string(),
        }
    }

    fn parse(text: &str, sort: Sort) -> Result<Cursor, SearchError> {
        let bad = |why: &str| SearchError::Cursor(format!("cursor: {why}"));
        if text.len() > CURSOR_MAX {
            return Err(bad("longer than any cursor this node writes"));
        }
        if let Some(b64) = text.strip_prefix("r.") {
            if sort != Sort::Relevance {
                return Err(bad("a relevance cursor, given with sort=newest"));
            }
            let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|_| bad("not a cursor this node wrote"))?;
            let c: RelevanceCursor =
                serde_json::from_slice(&json).map_err(|_| bad("not a cursor this node wrote"))?;
            let plausible =
                c.stats.d.len() <= 512 && c.stats.d.iter().all(|(_, df)| *df <= c.stats.n);
            if !plausible {
                return Err(bad("not a cursor this node wrote"));
            }
            return Ok(Cursor {
                after: Key {
                    score: c.s,
                    seq: c.q,
                },
                stats: Some(c.stats),
            });
        }
        if sort == Sort::Relevance {
            return Err(bad(
                "a newest-first cursor, given to a search in relevance order",
            ));
        }
        let seq: u64 = text
            .parse()
            .map_err(|_| bad("expected the next_cursor of the previous page"))?;
        Ok(Cursor {
            after: Key { score: 0, seq },
            stats: None,
        })
    }
}

/// Progress of a catch-up, logged at a steady rate while far behind.
#[derive(Default)]
struct Reporter {
    started: Option<Instant>,
    behind: u64,
    done: u64,
    last_log: Option<Instant>,
    /// How long the last catch-up took, once it is over.
    took: Duration,
}

/// Behind by more than this many changes, the indexer logs its progress.
const LOG_BEHIND: u64 = 20_000;
/// Every so often.
const LOG_EVERY: Duration = Duration::from_secs(5);

impl Reporter {
    fn start(&mut self, behind: u64) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.behind = behind;
            self.done = 0;
            if behind > LOG_BEHIND {
                tracing::info!(behind, "search index: catching up with the catalog");
                self.last_log = Some(Instant::now());
            }
        }
    }

    /// The index holds everything up to the clock its last step read: a catch-up under way is
    /// over (the rows taken in may be fewer than the changes it was behind by: a listing
    /// changed twice is one row, a deleted one none).
    fn caught_up(&mut self) {
        if self.started.is_none() {
            return;
        }
        if self.behind > LOG_BEHIND {
            let p = self.progress();
            tracing::info!(
                indexed = p.done,
                seconds = p.elapsed.as_secs_f64(),
                "search index: caught up with the catalog"
            );
        }
        self.took = self.started.take().map(|t| t.elapsed()).unwrap_or_default();
    }

    fn add(&mut self, n: u64) {
        self.done += n;
        if self.done >= self.behind {
            self.caught_up();
            return;
        }
        if self.behind > LOG_BEHIND && self.last_log.is_some_and(|t| t.elapsed() >= LOG_EVERY) {
            let p = self.progress();
            let rate = p.done as f64 / p.elapsed.as_secs_f64().max(0.001);
            tracing::info!(
                indexed = p.done,
                of = p.behind,
                per_second = rate.round(),
                "search index: catching up"
            );
            self.last_log = Some(Instant::now());
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            done: self.done,
            behind: self.behind,
            elapsed: self.started.map_or(self.took, |t| t.elapsed()),
        }
    }
}

#[cfg(test)]
mod tests;
