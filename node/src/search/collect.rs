//! Collecting a search's matches: the page (the best `keep` after the cursor), the exact total,
//! and every facet's counts, in one pass over the matches reading one packed value each.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};
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

fn bump(counts: &mut Vec<u64>, code: usize) {
    if code >= counts.len() {
        counts.resize(code + 1, 0);
    }
    counts[code] += 1;
}

impl Counts {
    /// Counts `p` under the facets whose bits are in `which`.
    #[inline]
    fn count(&mut self, p: Packed, which: u8) {
        if which & STATE != 0 {
            self.state[p.state()] += 1;
        }
        if which & CLASS != 0 {
            self.classification[p.classification()] += 1;
        }
        if which & MODE != 0 {
            let mut modes = p.modes();
            while modes != 0 {
                let bit = modes.trailing_zeros() as usize;
                self.modes[bit] += 1;
                modes &= modes - 1;
            }
        }
        if which & CATEGORY != 0 {
            bump(&mut self.category, p.category());
        }
        if which & ORIGIN != 0 {
            bump(&mut self.origin, p.origin());
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

/// What a search collects.
pub struct Collect {
    /// The facet filters.
    pub filter: Filter,
    /// Order by score (else by `seq`).
    pub scored: bool,
    /// Only matches after this key go on the page.
    pub after: Option<Key>,
    /// How many to keep: the page and one more.
    pub keep: usize,
    /// The fast field names.
    pub seq: &'static str,
    /// The packed facets' field.
    pub packed: &'static str,
}

/// What it found.
#[derive(Debug, Default)]
pub struct Hits {
    /// The best matches after the cursor, best first, at most `keep`.
    pub top: Vec<Key>,
    /// Matches passing every filter.
    pub total: u64,
    /// Of those, after the cursor.
    pub after_cursor: u64,
    /// Facet counts.
    pub counts: Counts,
}

pub struct SegmentCollect {
    filter: Filter,
    scored: bool,
    after: Option<Key>,
    keep: usize,
    seq: std::sync::Arc<dyn ColumnValues<u64>>,
    packed: std::sync::Arc<dyn ColumnValues<u64>>,
    heap: BinaryHeap<Reverse<Key>>,
    total: u64,
    after_cursor: u64,
    counts: Counts,
}

impl Collector for Collect {
    type Fruit = Hits;
    type Child = SegmentCollect;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentCollect> {
        let fast = reader.fast_fields();
        Ok(SegmentCollect {
            filter: self.filter.clone(),
            scored: self.scored,
            after: self.after,
            keep: self.keep,
            seq: fast.u64(self.seq)?.first_or_default_col(0),
            packed: fast.u64(self.packed)?.first_or_default_col(0),
            heap: BinaryHeap::with_capacity(self.keep + 1),
            total: 0,
            after_cursor: 0,
            counts: Counts::default(),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<Hits>) -> tantivy::Result<Hits> {
        let mut all = Hits::default();
        let mut top = Vec::new();
        for f in fruits {
            all.total += f.total;
            all.after_cursor += f.after_cursor;
            all.counts.merge(&f.counts);
            top.extend(f.top);
        }
        top.sort_unstable_by(|a, b| b.cmp(a));
        top.truncate(self.keep);
        all.top = top;
        Ok(all)
    }
}

impl SegmentCollector for SegmentCollect {
    type Fruit = Hits;

    #[inline]
    fn collect(&mut self, doc: DocId, score: Score) {
        let p = Packed(self.packed.get_val(doc));
        self.take(doc, score, p);
    }

    /// Unscored matches come in blocks: their packed values are read in one call.
    fn collect_block(&mut self, docs: &[DocId]) {
        let mut values = [0u64; 64];
        for chunk in docs.chunks(values.len()) {
            let values = &mut values[..chunk.len()];
            self.packed.get_vals(chunk, values);
            for (doc, value) in chunk.iter().zip(values.iter()) {
                self.take(*doc, 0.0, Packed(*value));
            }
        }
    }

    fn harvest(self) -> Hits {
        let mut top: Vec<Key> = self.heap.into_iter().map(|Reverse(k)| k).collect();
        top.sort_unstable_by(|a, b| b.cmp(a));
        Hits {
            top,
            total: self.total,
            after_cursor: self.after_cursor,
            counts: self.counts,
        }
    }
}

impl SegmentCollect {
    /// Counts match `doc` (score `score`, facets `p`) and keeps it if it is among the best.
    #[inline]
    fn take(&mut self, doc: DocId, score: Score, p: Packed) {
        let fails = self.filter.fails(p);
        if fails == 0 {
            self.counts.count(p, u8::MAX);
            self.total += 1;
            let key = Key {
                score: if self.scored { sortable(score) } else { 0 },
                seq: self.seq.get_val(doc),
            };
            if self.after.is_some_and(|after| key >= after) {
                return;
            }
            self.after_cursor += 1;
            if self.heap.len() < self.keep {
                self.heap.push(Reverse(key));
            } else if self.heap.peek().is_some_and(|Reverse(min)| key > *min) {
                self.heap.pop();
                self.heap.push(Reverse(key));
            }
        } else if fails.is_power_of_two() {
            // Failing one filter only: counted under that facet, whose other values show what
            // choosing them would find.
            self.counts.count(p, fails);
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
    fn scores_sort_as_numbers() {
        let mut s = [3.5f32, 0.0, 10.25, 0.001, 7.0];
        let mut keys: Vec<u32> = s.iter().map(|x| sortable(*x)).collect();
        keys.sort_unstable();
        s.sort_by(f32::total_cmp);
        assert_eq!(keys, s.iter().map(|x| sortable(*x)).collect::<Vec<_>>());
    }
}
