//! Collecting a search's matches: the exact total and every facet's counts in one pass that
//! tallies each match's facet combination ([`count`]; without words, the tallies kept per
//! segment answer alone), and the page (the best `keep` after the cursor): newest first in that
//! same pass, by relevance in a pass of its own whose scorers skip what cannot make the page
//! ([`best`]). What a segment's documents hold is read into memory once ([`Facts`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tantivy::index::SegmentId;
use tantivy::query::{Scorer, Weight};
use tantivy::{DocId, DocSet, Score, Searcher, SeekDangerResult, SegmentReader};
use xchg_protocol::ZoneId;

use super::{CLASSIFICATIONS, MODES, STATES};
use crate::catalog::query::{Facets, Search};

/// A listing's facets in one value: state (bits 0–3), classification (4–7), delivery modes
/// (one bit each, 8–15), category code (16–39), origin code (40–63). Codes are the index's
/// names (`Names`), 2^24 of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packed(pub u64);

const CODE_BITS: u32 = 24;
const CODE_MASK: u64 = (1 << CODE_BITS) - 1;

impl Packed {
    /// Packs the codes (an out-of-range code is stored as the highest, never a name).
    pub fn pack(state: u64, classification: u64, modes: u64, category: u64, origin: u64) -> Self {
        Packed(
            state.min(15)
                | classification.min(15) << 4
                | (modes & 0xff) << 8
                | category.min(CODE_MASK) << 16
                | origin.min(CODE_MASK) << 40,
        )
    }

    fn state(self) -> usize {
        (self.0 & 0xf) as usize
    }

    fn classification(self) -> usize {
        (self.0 >> 4 & 0xf) as usize
    }

    fn modes(self) -> u64 {
        self.0 >> 8 & 0xff
    }

    fn category(self) -> usize {
        (self.0 >> 16 & CODE_MASK) as usize
    }

    fn origin(self) -> usize {
        (self.0 >> 40 & CODE_MASK) as usize
    }
}

/// Where a listing sorts: higher first. Relevance: the score's bits made to sort as unsigned,
/// then the most recently held; newest: `seq` alone (`score` 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The score, sortable.
    pub score: u32,
    /// Order of first appearance.
    pub seq: u64,
}

fn unsortable(key: u32) -> Score {
    Score::from_bits(if key >> 31 == 1 {
        key & !(1 << 31)
    } else {
        !key
    })
}

fn sortable(score: Score) -> u32 {
    let bits = score.to_bits();
    if bits >> 31 == 1 {
        !bits
    } else {
        bits | 1 << 31
    }
}

/// The facet filters of a search, as codes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    state: Option<usize>,
    classification: Option<usize>,
    mode: Option<u64>,
    /// Accepted category codes (`None`: no filter; an empty set: a name the index never saw).
    category: Option<Vec<bool>>,
    origin: Option<Vec<bool>>,
}

/// Bit of each facet in a failure mask.
const STATE: u8 = 1;
const CLASS: u8 = 2;
const MODE: u8 = 4;
const CATEGORY: u8 = 8;
const ORIGIN: u8 = 16;

impl Filter {
    /// The filters of `s` over the index's names; `own` is this node's zone.
    pub fn of(s: &Search, own: &ZoneId, names: &super::Names) -> Filter {
        let position = |list: &[&str], v: &Option<String>| {
            v.as_ref()
                .map(|v| list.iter().position(|n| n == v).unwrap_or(usize::MAX))
        };
        let own = own.to_string();
        let origin = s.origin.as_deref().map(|o| {
            names
                .origins
                .iter()
                .map(|zone| match o {
                    "local" => *zone == own,
                    "external" => *zone != own,
                    o if o.contains('/') => zone == o,
                    exchange => zone
                        .strip_prefix(exchange)
                        .is_some_and(|rest| rest.starts_with('/')),
                })
                .collect()
        });
        Filter {
            state: position(STATES, &s.state),
            classification: position(CLASSIFICATIONS, &s.classification),
            mode: s
                .delivery_mode
                .as_ref()
                .map(|m| MODES.iter().position(|n| n == m).map_or(0, |bit| 1 << bit)),
            category: s
                .category
                .as_ref()
                .map(|c| names.categories.iter().map(|name| name == c).collect()),
            origin,
        }
    }

    /// Which filters `p` fails, one bit per facet.
    #[inline]
    fn fails(&self, p: Packed) -> u8 {
        let mut mask = 0;
        if self.state.is_some_and(|s| s != p.state()) {
            mask |= STATE;
        }
        if self.classification.is_some_and(|c| c != p.classification()) {
            mask |= CLASS;
        }
        if self.mode.is_some_and(|m| p.modes() & m == 0) {
            mask |= MODE;
        }
        if let Some(ok) = &self.category
            && !ok.get(p.category()).copied().unwrap_or(false)
        {
            mask |= CATEGORY;
        }
        if let Some(ok) = &self.origin
            && !ok.get(p.origin()).copied().unwrap_or(false)
        {
            mask |= ORIGIN;
        }
        mask
    }
}

/// Counts per code of each facet.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    state: [u64; 16],
    classification: [u64; 16],
    modes: [u64; 8],
    category: Vec<u64>,
    origin: Vec<u64>,
}

fn bump(counts: &mut Vec<u64>, code: usize, n: u64) {
    if code >= counts.len() {
        counts.resize(code + 1, 0);
    }
    counts[code] += n;
}

impl Counts {
    /// Counts `n` matches of `p` under the facets whose bits are in `which`.
    #[inline]
    fn count(&mut self, p: Packed, which: u8, n: u64) {
        if which & STATE != 0 {
            self.state[p.state()] += n;
        }
        if which & CLASS != 0 {
            self.classification[p.classification()] += n;
        }
        if which & MODE != 0 {
            let mut modes = p.modes();
            while modes != 0 {
                let bit = modes.trailing_zeros() as usize;
                self.modes[bit] += n;
                modes &= modes - 1;
            }
        }
        if which & CATEGORY != 0 {
            bump(&mut self.category, p.category(), n);
        }
        if which & ORIGIN != 0 {
            bump(&mut self.origin, p.origin(), n);
        }
    }

    fn merge(&mut self, other: &Counts) {
        for (a, b) in self.state.iter_mut().zip(other.state) {
            *a += b;
        }
        for (a, b) in self.classification.iter_mut().zip(other.classification) {
            *a += b;
        }
        for (a, b) in self.modes.iter_mut().zip(other.modes) {
            *a += b;
        }
        for (list, theirs) in [
            (&mut self.category, &other.category),
            (&mut self.origin, &other.origin),
        ] {
            if list.len() < theirs.len() {
                list.resize(theirs.len(), 0);
            }
            for (a, b) in list.iter_mut().zip(theirs) {
                *a += b;
            }
        }
    }

    /// The counts by name, values with no match left out.
    pub fn facets(&self, names: &super::Names) -> Facets {
        let fixed = |list: &[&str], counts: &[u64]| {
            list.iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(name, n)| ((*name).to_owned(), *n))
                .collect()
        };
        let named = |list: &[String], counts: &[u64]| {
            list.iter()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(name, n)| (name.clone(), *n))
                .collect()
        };
        Facets {
            state: fixed(STATES, &self.state),
            classification: fixed(CLASSIFICATIONS, &self.classification),
            delivery_mode: fixed(MODES, &self.modes),
            category: named(&names.categories, &self.category),
            origin: named(&names.origins, &self.origin),
        }
    }
}

/// The best matches passing the filters, after the cursor. Keys above the least kept are
/// appended to a buffer that is cut back to the best `keep` when it reaches four times that:
/// constant time per key even when every key beats the last (a newest-first search meets the
/// listings roughly oldest first).
struct Best {
    after: Option<Key>,
    keep: usize,
    buffer: Vec<Key>,
    least: Option<Key>,
}

impl Best {
    fn new(after: Option<Key>, keep: usize) -> Self {
        Best {
            after,
            keep,
            buffer: Vec::with_capacity(keep * 4 + 1),
            least: None,
        }
    }

    /// Offers `key`.
    #[inline]
    fn offer(&mut self, key: Key) {
        if self.after.is_some_and(|after| key >= after)
            || self.least.is_some_and(|least| key <= least)
        {
            return;
        }
        self.buffer.push(key);
        if self.buffer.len() >= (self.keep * 4).max(64) {
            self.cut();
        }
    }

    /// Keeps the best `keep`, and from then on only keys above the least of them.
    fn cut(&mut self) {
        if self.buffer.len() > self.keep {
            self.buffer
                .select_nth_unstable_by(self.keep - 1, |a, b| b.cmp(a));
            self.buffer.truncate(self.keep);
        }
        if self.buffer.len() == self.keep {
            self.least = self.buffer.iter().min().copied();
        }
    }

    /// The least key kept, once `keep` are.
    fn least(&self) -> Option<Key> {
        self.least
    }

    /// Takes in what another kept.
    fn absorb(&mut self, other: Best) {
        for key in other.buffer {
            self.offer(key);
        }
    }

    fn sorted(mut self) -> Vec<Key> {
        self.buffer.sort_unstable_by(|a, b| b.cmp(a));
        self.buffer.truncate(self.keep);
        self.buffer
    }
}

/// What the documents of one segment hold, read once from its fast fields and kept in memory
/// while the segment lives: each document's facet combination (a dense code into `table`), its
/// `seq`, and the order of the documents by `seq`. A search then reads two arrays per match instead of
/// two compressed columns, and counts matches per combination (a small table, a few thousand
/// entries) rather than per facet.
struct SegmentFacts {
    /// Per document: its combination.
    combo: Vec<u32>,
    /// Per combination: the packed facets.
    table: Vec<Packed>,
    /// Per document: its `seq`.
    seq: Vec<u64>,
    /// The documents, highest `seq` first (dead ones included: check the alive bitset); `None`
    /// when that is the order of their ids (the index sorts its segments so).
    order: Option<Vec<DocId>>,
    /// Live documents per combination, for the segment's deletes as of `deletes`.
    live: Mutex<Option<LiveCounts>>,
}

/// Live documents per combination, and the delete stamp they were counted at.
type LiveCounts = (Option<u64>, Arc<Vec<u64>>);

impl SegmentFacts {
    fn read(reader: &SegmentReader) -> tantivy::Result<Self> {
        let fast = reader.fast_fields();
        let packed = fast.u64("packed")?.first_or_default_col(0);
        let seqs = fast.u64("seq")?.first_or_default_col(0);
        let n = reader.max_doc() as usize;
        let mut combo = Vec::with_capacity(n);
        let mut seq = vec![0u64; n];
        let mut table = Vec::new();
        let mut codes: HashMap<u64, u32> = HashMap::new();
        let mut values = [0u64; 256];
        let docs: Vec<DocId> = (0..reader.max_doc()).collect();
        for (chunk, seq) in docs.chunks(values.len()).zip(seq.chunks_mut(values.len())) {
            let values = &mut values[..chunk.len()];
            packed.get_vals(chunk, values);
            seqs.get_vals(chunk, seq);
            for value in values.iter() {
                let code = *codes.entry(*value).or_insert_with(|| {
                    table.push(Packed(*value));
                    u32::try_from(table.len() - 1).unwrap_or(u32::MAX)
                });
                combo.push(code);
            }
        }
        let order = order_of(&seq);
        Ok(SegmentFacts {
            combo,
            table,
            seq,
            order,
            live: Mutex::new(None),
        })
    }

    /// Whether the documents' ids are in `seq` order, highest first.
    #[inline]
    fn newest_first(&self) -> bool {
        self.order.is_none()
    }

    /// The documents with a `seq` below `after` (all without it), highest `seq` first.
    fn newest_from(&self, after: Option<u64>) -> impl Iterator<Item = DocId> + '_ {
        let older = |seq: u64| after.is_none_or(|after| seq < after);
        let (ids, listed) = match &self.order {
            None => {
                let start = self.seq.partition_point(|s| !older(*s));
                (start as DocId..self.seq.len() as DocId, &[][..])
            }
            Some(order) => {
                let start = order.partition_point(|d| !older(self.seq[*d as usize]));
                (0..0, &order[start..])
            }
        };
        ids.chain(listed.iter().copied())
    }

    /// The highest `seq` of the segment.
    fn newest_seq(&self) -> Option<u64> {
        self.newest_from(None).next().map(|d| self.seq[d as usize])
    }

    /// Live documents per combination under `reader`'s deletes.
    fn live(&self, reader: &SegmentReader) -> Arc<Vec<u64>> {
        let deletes = reader.delete_opstamp();
        let mut guard = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, live)) = guard.as_ref()
            && *at == deletes
        {
            return live.clone();
        }
        let mut live = vec![0u64; self.table.len()];
        match reader.alive_bitset() {
            Some(bits) => {
                for (doc, c) in self.combo.iter().enumerate() {
                    if bits.is_alive(doc as DocId) {
                        live[*c as usize] += 1;
                    }
                }
            }
            None => {
                for c in &self.combo {
                    live[*c as usize] += 1;
                }
            }
        }
        let live = Arc::new(live);
        *guard = Some((deletes, live.clone()));
        live
    }
}

/// The documents of `seq` (per document) highest `seq` first, `None` when their ids are in
/// that order already.
fn order_of(seq: &[u64]) -> Option<Vec<DocId>> {
    (!seq.windows(2).all(|w| w[0] >= w[1])).then(|| {
        let mut order: Vec<DocId> = (0..seq.len() as DocId).collect();
        order.sort_unstable_by_key(|d| std::cmp::Reverse(seq[*d as usize]));
        order
    })
}

/// The in-memory facts of the segments of the index's current searchers.
#[derive(Default)]
pub struct Facts(Mutex<HashMap<SegmentId, Arc<SegmentFacts>>>);

impl Facts {
    /// The facts of `reader`'s segment, read now if not yet.
    fn of(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentFacts>> {
        let id = reader.segment_id();
        if let Some(facts) = self.lock().get(&id) {
            return Ok(facts.clone());
        }
        let facts = Arc::new(SegmentFacts::read(reader)?);
        self.lock().insert(id, facts.clone());
        Ok(facts)
    }

    /// Reads what `searcher`'s segments hold (so that searches need not) and forgets segments
    /// it no longer has.
    ///
    /// # Errors
    /// The index's errors.
    pub fn warm(&self, searcher: &Searcher) -> tantivy::Result<()> {
        let readers = searcher.segment_readers();
        let ids: HashSet<SegmentId> = readers.iter().map(SegmentReader::segment_id).collect();
        self.lock().retain(|id, _| ids.contains(id));
        for reader in readers {
            self.of(reader)?.live(reader);
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SegmentId, Arc<SegmentFacts>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a search asks of [`count`].
#[derive(Clone, Copy)]
pub struct Counting<'a> {
    /// Matches every document (no words): counts come from the per-combination tallies.
    pub everything: bool,
    /// The weight whose matches are counted (built without scoring).
    pub weight: &'a dyn Weight,
    /// The facet filters.
    pub filter: &'a Filter,
    /// Keep the `.1` most recent passing matches after `.0`.
    pub newest: Option<(Option<Key>, usize)>,
}

/// Counts every match by facet, the exact total of those passing every filter, and when
/// `newest`, keeps the most recent of those after the cursor. The segments are split between
/// this thread and one more when the index is large (the machine this was measured on has two
/// cores).
///
/// # Errors
/// The index's errors.
pub fn count(
    searcher: &Searcher,
    facts: &Facts,
    ask: Counting<'_>,
) -> tantivy::Result<(u64, Counts, Vec<Key>)> {
    let readers = searcher.segment_readers();
    let docs: u64 = readers.iter().map(|r| u64::from(r.max_doc())).sum();
    let (mine, theirs) = if docs >= PARALLEL_DOCS && readers.len() >= 2 && !ask.everything {
        split(readers)
    } else {
        (readers.iter().collect(), Vec::new())
    };
    let (a, b) = std::thread::scope(|scope| {
        let other = (!theirs.is_empty()).then(|| scope.spawn(|| count_in(&theirs, facts, ask)));
        let a = count_in(&mine, facts, ask);
        let b = other.map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(tantivy::TantivyError::InternalError(
                    "a counting thread panicked".into(),
                ))
            })
        });
        (a, b)
    });
    let mut a = a?;
    if let Some(b) = b {
        let b = b?;
        a.0 += b.0;
        a.1.merge(&b.1);
        if let (Some(x), Some(y)) = (a.2.as_mut(), b.2) {
            x.absorb(y);
        }
    }
    Ok((a.0, a.1, a.2.map(Best::sorted).unwrap_or_default()))
}

/// Below this many documents one thread counts.
const PARALLEL_DOCS: u64 = 100_000;

/// The segments in two groups of about equal size.
fn split(readers: &[SegmentReader]) -> (Vec<&SegmentReader>, Vec<&SegmentReader>) {
    let mut sorted: Vec<&SegmentReader> = readers.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.max_doc()));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut na, mut nb) = (0u64, 0u64);
    for r in sorted {
        if na <= nb {
            na += u64::from(r.max_doc());
            a.push(r);
        } else {
            nb += u64::from(r.max_doc());
            b.push(r);
        }
    }
    (a, b)
}

/// [`count`] over some segments.
fn count_in(
    readers: &[&SegmentReader],
    facts: &Facts,
    ask: Counting<'_>,
) -> tantivy::Result<(u64, Counts, Option<Best>)> {
    let mut counts = Counts::default();
    let mut total = 0u64;
    let mut best = ask.newest.map(|(after, keep)| Best::new(after, keep));
    for reader in readers {
        let facts = facts.of(reader)?;
        let alive = reader.alive_bitset();
        let fails: Vec<u8> = facts.table.iter().map(|p| ask.filter.fails(*p)).collect();
        let hits = if ask.everything {
            if let Some(best) = best.as_mut() {
                newest_of_all(&facts, alive, &fails, best);
            }
            facts.live(reader)
        } else {
            let mut hits = vec![0u64; facts.table.len()];
            ask.weight
                .for_each_no_score(reader, &mut |docs: &[DocId]| {
                    for &d in docs {
                        if alive.is_some_and(|bits| !bits.is_alive(d)) {
                            continue;
                        }
                        let c = facts.combo[d as usize] as usize;
                        hits[c] += 1;
                        if fails[c] == 0
                            && let Some(best) = best.as_mut()
                        {
                            best.offer(Key {
                                score: 0,
                                seq: facts.seq[d as usize],
                            });
                        }
                    }
                })?;
            Arc::new(hits)
        };
        for (c, n) in hits.iter().enumerate() {
            if *n == 0 {
                continue;
            }
            let p = facts.table[c];
            match fails[c] {
                0 => {
                    total += n;
                    counts.count(p, u8::MAX, *n);
                }
                one if one.is_power_of_two() => counts.count(p, one, *n),
                _ => {}
            }
        }
    }
    Ok((total, counts, best))
}

/// Offers `best` the segment's newest live documents passing the filters, in `seq` order from
/// the cursor on, until it holds as many as it keeps.
fn newest_of_all(
    facts: &SegmentFacts,
    alive: Option<&tantivy::fastfield::AliveBitSet>,
    fails: &[u8],
    best: &mut Best,
) {
    let mut offered = 0;
    for d in facts.newest_from(best.after.map(|after| after.seq)) {
        if offered == best.keep {
            break;
        }
        if alive.is_some_and(|bits| !bits.is_alive(d))
            || fails[facts.combo[d as usize] as usize] != 0
        {
            continue;
        }
        best.offer(Key {
            score: 0,
            seq: facts.seq[d as usize],
        });
        offered += 1;
    }
}

/// What a search in relevance order asks of [`best`].
#[derive(Clone, Copy)]
pub struct Scoring<'a> {
    /// The weight whose matches are scored (BM25).
    pub weight: &'a dyn Weight,
    /// A phrase (built without scoring) and the factor a match holding it has its score
    /// multiplied by.
    pub phrase: Option<(&'a dyn Weight, Score)>,
    /// The facet filters.
    pub filter: &'a Filter,
    /// Keep only keys below this (the cursor).
    pub after: Option<Key>,
    /// Keep this many.
    pub keep: usize,
}

/// The `keep` best matches of the scoring weight passing the filters, after the cursor: the
/// scorers skip blocks that cannot beat the least kept (block-max WAND), so a common word
/// costs far less than its number of matches.
///
/// Equal scores go to the most recent (highest `seq`). A segment whose documents are newest
/// first (the index is sorted so) meets the most recent of any score first: once the documents
/// still to come in it are older than the least kept, a score that only ties it cannot win,
/// and whole blocks whose best score ties it are skipped. A segment found in any other order
/// (none should be) is read with ties competing throughout.
///
/// # Errors
/// The index's errors.
pub fn best(searcher: &Searcher, facts: &Facts, ask: Scoring<'_>) -> tantivy::Result<Vec<Key>> {
    let mut best = Best::new(ask.after, ask.keep);
    let factor = ask.phrase.map_or(1.0, |(_, factor)| factor.max(1.0));
    // Scores at or below the threshold are skipped; `older` bounds the `seq` of every document
    // still to come in the segment (u64::MAX: unknown).
    let threshold = |best: &Best, older: u64| {
        let Some(least) = best.least() else {
            return Score::MIN;
        };
        let score = unsortable(least.score);
        let beaten = if older <= least.seq {
            score
        } else if score > 0.0 {
            Score::from_bits(score.to_bits() - 1)
        } else {
            return Score::MIN;
        };
        if factor > 1.0 {
            // A candidate's score may yet be multiplied by the phrase's factor; a little lower
            // still, for the rounding of that product.
            beaten / factor * (1.0 - 1e-5)
        } else {
            beaten
        }
    };
    // The segments holding the most recent listings first: their best set the threshold that
    // the older segments' ties cannot pass.
    let mut segments = searcher
        .segment_readers()
        .iter()
        .map(|reader| Ok((reader, facts.of(reader)?)))
        .collect::<tantivy::Result<Vec<_>>>()?;
    segments.sort_by_key(|(_, facts)| std::cmp::Reverse(facts.newest_seq()));
    for (reader, facts) in segments {
        let fails: Vec<u8> = facts.table.iter().map(|p| ask.filter.fails(*p)).collect();
        let alive = reader.alive_bitset();
        // What the documents still to come are older than (or not: u64::MAX).
        let bound = |seq: Option<u64>| match seq {
            Some(seq) if facts.newest_first() => seq,
            _ => u64::MAX,
        };
        let mut phrase = ask.phrase.map(|(weight, _)| Phrase::new(weight, reader));
        ask.weight.for_each_pruning(
            threshold(&best, bound(facts.newest_seq())),
            reader,
            &mut |doc, score| {
                let seq = facts.seq[doc as usize];
                let dead = alive.is_some_and(|bits| !bits.is_alive(doc));
                if !dead && fails[facts.combo[doc as usize] as usize] == 0 {
                    let held = phrase.as_mut().is_some_and(|p| p.holds(doc));
                    best.offer(Key {
                        score: sortable(if held { score * factor } else { score }),
                        seq,
                    });
                }
                threshold(&best, bound(Some(seq)))
            },
        )?;
        if let Some(e) = phrase.and_then(|p| p.failed) {
            return Err(e);
        }
    }
    Ok(best.sorted())
}

/// Whether the documents of a segment hold a phrase, asked in increasing document order. The
/// phrase's scorer is opened at the first document asked about: opened before, it would look
/// for its first match at once, reading the positions of every document holding the words
/// until one holds them in order.
struct Phrase<'a> {
    weight: &'a dyn Weight,
    reader: &'a SegmentReader,
    scorer: Option<Box<dyn Scorer>>,
    /// The first document the phrase may still be found in.
    from: DocId,
    /// Why the scorer could not be opened (the pruning callback cannot return it).
    failed: Option<tantivy::TantivyError>,
}

impl<'a> Phrase<'a> {
    fn new(weight: &'a dyn Weight, reader: &'a SegmentReader) -> Self {
        Phrase {
            weight,
            reader,
            scorer: None,
            from: 0,
            failed: None,
        }
    }

    /// Whether `doc` (above any document asked before) holds the phrase.
    fn holds(&mut self, doc: DocId) -> bool {
        if doc < self.from || self.failed.is_some() {
            return false;
        }
        let found = match self.scorer.as_mut() {
            Some(scorer) => scorer.seek_danger(doc),
            None => match self.weight.scorer_danger(self.reader, doc, 1.0) {
                Ok((found, scorer)) => {
                    self.scorer = Some(scorer);
                    found
                }
                Err(e) => {
                    self.failed = Some(e);
                    return false;
                }
            },
        };
        match found {
            SeekDangerResult::Found => {
                self.from = doc + 1;
                true
            }
            SeekDangerResult::SeekLowerBound(next) => {
                self.from = next;
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_read_back_and_out_of_range_codes_saturate() {
        let p = Packed::pack(6, 3, 0b10_0101, 1234, 77);
        assert_eq!(
            (
                p.state(),
                p.classification(),
                p.modes(),
                p.category(),
                p.origin()
            ),
            (6, 3, 0b10_0101, 1234, 77)
        );
        let p = Packed::pack(u64::MAX, u64::MAX, 0, u64::MAX, u64::MAX);
        assert_eq!((p.state(), p.category()), (15, CODE_MASK as usize));
    }

    #[test]
    fn the_best_keys_are_kept_whatever_order_they_come_in() {
        for keys in [
            (0..1_000u64).collect::<Vec<_>>(),
            (0..1_000u64).rev().collect(),
            (0..1_000u64).map(|i| i * 7_919 % 1_000).collect(),
        ] {
            let mut best = Best::new(Some(Key { score: 0, seq: 990 }), 21);
            for seq in keys {
                best.offer(Key { score: 0, seq });
            }
            let kept: Vec<u64> = best.sorted().iter().map(|k| k.seq).collect();
            assert_eq!(kept, (969..990).rev().collect::<Vec<_>>());
        }
    }

    /// The index sorts its segments newest first; a segment found in another order is read
    /// through its own order, with the same answers.
    #[test]
    fn a_segment_in_either_order_gives_its_newest_documents_alike() {
        let facts = |seq: Vec<u64>| SegmentFacts {
            combo: vec![0; seq.len()],
            table: vec![Packed(0)],
            order: order_of(&seq),
            seq,
            live: Mutex::new(None),
        };
        let sorted = facts(vec![9, 7, 5, 3, 1]);
        let shuffled = facts(vec![3, 9, 1, 7, 5]);
        assert!(sorted.newest_first() && !shuffled.newest_first());
        for after in [None, Some(10), Some(7), Some(6), Some(1)] {
            let seqs = |f: &SegmentFacts| -> Vec<u64> {
                f.newest_from(after).map(|d| f.seq[d as usize]).collect()
            };
            assert_eq!(seqs(&sorted), seqs(&shuffled), "after {after:?}");
            let expected: Vec<u64> = [9, 7, 5, 3, 1]
                .into_iter()
                .filter(|s| after.is_none_or(|a| *s < a))
                .collect();
            assert_eq!(seqs(&sorted), expected, "after {after:?}");
        }
        assert_eq!(
            (sorted.newest_seq(), shuffled.newest_seq()),
            (Some(9), Some(9))
        );
        assert_eq!(facts(Vec::new()).newest_seq(), None);
    }

    #[test]
    fn scores_sort_as_numbers_and_come_back() {
        for x in [0.0f32, 0.001, 3.5, 1e9] {
            assert_eq!(unsortable(sortable(x)), x);
        }
        let mut s = [3.5f32, 0.0, 10.25, 0.001, 7.0];
        let mut keys: Vec<u32> = s.iter().map(|x| sortable(*x)).collect();
        keys.sort_unstable();
        s.sort_by(f32::total_cmp);
        assert_eq!(keys, s.iter().map(|x| sortable(*x)).collect::<Vec<_>>());
    }
}
